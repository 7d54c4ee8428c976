"""Browser sessions on one slow model (the demo model with every attribution slowed down, slow_server.py): the
model's background worker computes what sessions queue, once, whatever they do meanwhile, and a page never
waits for it. Before the worker (#24), a page computed in its own run: two sessions asking for one triple
computed it twice, and a stored fact could not open while another session's computation held the model."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_browser import CHROMIUM, FLAGS, ROOT, SHOTS, settle, streamlit_server

from kn_core.attribution import AttributionConfig
from kn_core.data import load_bundled
from kn_core.model.loading import load_model
from kn_core.runs.batch import run_batch
from kn_core.runs.store import ResultStore

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium missing: `apt-get install -y chromium`")
SLOW_S = 3  # per attribution: the custom triple's 3 prompts keep the worker busy ~10 s
WATCHING = "in the background"
OPEN_S = 25  # a stored fact shows this soon while the worker computes (generous: a busy 2-core machine;
# bench/bench_app.py measures the 2 s budget)


@pytest.fixture
def home(tmp_path):
    return tmp_path


def slow_server(home: Path, log: Path, slow_s: float):
    return streamlit_server([str(Path(__file__).with_name("slow_server.py"))],
                            {"KN_EXPLORER_HOME": str(home), "KN_SLOW_S": str(slow_s), "KN_SLOW_LOG": str(log),
                             "PYTHONPATH": str(ROOT)}, log=home / "server.log")


def new_tab(browser, url: str, title: str):
    tab = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
    tab.goto(url)
    settle(tab, title)
    return tab


class Console:
    """What a tab's browser says (script errors, a crash, its connection closing, its console), each line with
    the seconds since the tab was watched; ``errors``: the script errors and crashes."""

    def __init__(self, tab) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.started = time.monotonic()
        tab.on("pageerror", lambda exc: self._add(f"page error: {exc}", error=True))
        tab.on("crash", lambda _: self._add("crashed", error=True))
        tab.on("console", lambda msg: self._add(f"console {msg.type}: {msg.text}"))
        tab.on("websocket", lambda ws: ws.on("close", lambda _: self._add(f"connection closed: {ws.url}")))

    def _add(self, line: str, error: bool = False) -> None:
        line = f"{time.monotonic() - self.started:.1f} s {line}"[:500]
        self.lines.append(line)
        if error:
            self.errors.append(line)

    def __str__(self) -> str:
        return "\n".join(dict.fromkeys(self.lines[:40]))


def shown(tab) -> str:
    """What a tab shows, for a failure's message (its text, shortened)."""
    text = tab.inner_text("body")
    return text if len(text) < 3000 else text[:1500] + "\n…\n" + text[-1500:]


def test_two_sessions_share_one_computation(home):
    """A and B run the same triple: one computation of each prompt; B clicks again and reloads meanwhile, A goes
    to another page and back; both find it stored, and a third session opens it from the store."""
    log = home / "computed.log"
    with slow_server(home, log, SLOW_S) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        a, b = new_tab(browser, f"{url}/custom_triple", "Custom triple"), new_tab(browser, f"{url}/custom_triple",
                                                                                 "Custom triple")
        a.get_by_role("button", name="Run AMIG").click()
        a.get_by_text(WATCHING).first.wait_for(timeout=60_000)
        b.get_by_role("button", name="Run AMIG").click()
        b.get_by_text(WATCHING).first.wait_for(timeout=30_000)
        for _ in range(3):
            b.get_by_role("button", name="Run AMIG").click()
            b.wait_for_timeout(300)
        b.reload()
        a.goto(f"{url}/about")  # leave, and come back
        settle(a, "About KN Explorer")
        a.goto(f"{url}/custom_triple")
        settle(a, "Custom triple")
        a.get_by_role("button", name="Run AMIG").click()
        a.get_by_text("Stored:").first.wait_for(timeout=120_000)
        c = new_tab(browser, f"{url}/custom_triple", "Custom triple")
        c.get_by_role("button", name="Run AMIG").click()
        try:
            c.get_by_role("heading", name="Edit effect").wait_for(timeout=60_000)
        finally:
            SHOTS.mkdir(exist_ok=True)
            c.screenshot(path=str(SHOTS / "turns_shared_computation.png"), full_page=True)
        assert c.get_by_text("Something went wrong").count() == 0
        browser.close()
    computed = log.read_text().splitlines()
    assert len(computed) == len(set(computed)) == 3, computed


def test_a_stored_fact_opens_while_the_worker_computes(home):
    """A opens a fact that is not stored (5 prompts of SLOW_S s each); meanwhile B opens a stored fact: its
    heatmap and its edit effect (which needs the model, between two of A's prompts) show while A's fact is still
    computing, and A's page turns into the full view once its prompts are stored."""
    factset = load_bundled()
    stored, missing = factset.facts_of("P36")[:2]
    store = ResultStore(home / "store.sqlite")
    run_batch("demo-mlm", factset, ["en"], AttributionConfig(), store, relations=["P36"], max_facts=1, progress=False)
    store.close()
    with slow_server(home, home / "computed.log", 2 * SLOW_S) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 2000})
        a = context.new_page()
        a.goto(f"{url}/?relation=P36&fact={missing.id}&lang=en")
        a.get_by_text(WATCHING).first.wait_for(timeout=60_000)
        b = context.new_page()
        said = Console(b)
        started = time.monotonic()
        b.goto(f"{url}/?relation=P36&fact={stored.id}&lang=en")
        try:
            b.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
            b.get_by_text("P(object), knowledge neurons").first.wait_for(timeout=60_000)
        except playwright.TimeoutError:
            log = [line for line in (home / "server.log").read_text().splitlines() if "skipped" not in line]
            pytest.fail(f"B ({b.url}) after {time.monotonic() - started:.0f} s:\n{shown(b)}\n--- B's browser:\n{said}"
                        f"\n--- A:\n{shown(a)}\n--- server log:\n" + "\n".join(log[-60:]))
        finally:
            SHOTS.mkdir(exist_ok=True)
            b.screenshot(path=str(SHOTS / "turns_stored_fact_while_computing.png"), full_page=True)
        opened = time.monotonic() - started
        assert a.get_by_text(WATCHING).count() > 0, \
            f"the computation was over before the stored fact opened ({opened:.1f} s)"
        assert b.get_by_text(WATCHING).count() == 0 and opened < OPEN_S, opened
        assert not said.errors, said  # e.g. B's page went blank, its connection dropped (kn_core/app/fragments.py)
        a.get_by_role("heading", name="Edit effect").wait_for(timeout=180_000)  # A's fact, computed meanwhile
        assert a.get_by_text(WATCHING).count() == 0 and a.get_by_text("Something went wrong").count() == 0
        browser.close()
    lm = load_model("demo-mlm")  # the app's model here (no model in the links)
    prompts = [lm.prompt(t.text, missing.subject("en"), missing.object("en"))
               for t in factset.relations["P36"].templates_for("en")]
    # the worker took A's prompts shortest first (its first heatmap comes soonest)
    assert (home / "computed.log").read_text().splitlines() == [
        p.template for p in sorted(prompts, key=lambda p: len(p.input_ids))]
