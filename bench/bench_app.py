"""The app's budgets in a real browser (Debian's chromium via Playwright) on the real models, the server on
``--threads`` torch threads (issue #24):

- (a) a fresh home (an empty store; the installed models and the atlas): every page's first view, once the
  model is loaded, within 3 s, showing results (nothing queued) — meaningful once the atlas holds the model;
- (b) a bundled English fact that is not stored, on SmolLM2 (5 prompts): the first heatmap within 15 s, every
  prompt within 60 s;
- (c) a Chinese fact on Gemma 3: the first heatmap within 45 s;
- (d) while the worker computes, a stored fact (the one of (b)) opens within 2 s: by its link (the browser loads
  the app again: its scripts, the connection, plotly's) and by picking a stored fact of its relation in the
  Fact browser already open (the heatmap's values change: how a user goes from fact to fact).

A page "opens" when the element that shows its results is visible (the heatmap, a metric, the model card);
"first heatmap" is the watching fragment's heatmap of the prompts stored so far. Times run from the
navigation to that moment, in a tab whose browser already loaded the app (the JavaScript is cached, as for a
user), after every model of the run was loaded (the About page). The fresh home links the installed models' folder;
the store is new, so (b)-(d) compute unless the atlas holds the fact (then another fact is taken).

    python bench/bench_app.py                       # both real models, 2 threads: several minutes
    python bench/bench_app.py --models smollm2-135m --skip a
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kn_core.data import load_bundled  # noqa: E402
from kn_core.home import home_dir  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
WATCHING = "in the background"
HEATMAP = ".js-plotly-plot"
PAGES = {  # path, what shows its results
    "fact_browser": ("", HEATMAP), "relation_overview": ("relation_overview", "[data-testid='stMetric']"),
    "neuron_search": ("neuron_search", HEATMAP), "compare_models": ("compare_models", HEATMAP),
    "languages": ("languages", HEATMAP), "fact_check": ("fact_check", "[data-testid='stMetric']"),
    "custom_triple": ("custom_triple", "h1"), "about": ("about", "pre, code")}
WAIT_MS = 600_000


@dataclass(frozen=True)
class Row:
    what: str
    seconds: float | None
    budget: float | None
    note: str = ""
    shown: bool = True  # the page showed its results (not only queued them)

    def line(self) -> str:
        shown = "—" if self.seconds is None else f"{self.seconds:.1f}"
        met = "—" if self.budget is None or self.seconds is None else (
            "yes" if self.shown and self.seconds <= self.budget else "no")
        budget = "—" if self.budget is None else f"{self.budget:g}"
        return f"| {self.what} | {shown} | {budget} | {met} | {self.note} |"


def fresh_home() -> Path:
    """An empty home whose ``models`` is the installed models' folder."""
    home = Path(tempfile.mkdtemp(prefix="kn-bench-app-"))
    (home / "models").symlink_to(home_dir() / "models", target_is_directory=True)
    return home


def start_server(home: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KN_EXPLORER_HOME": str(home), "KN_EXPLORER_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false",
                             "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the app did not start; see {log}")


def timed_open(tab, url: str, selector: str) -> tuple[float, bool]:
    """Seconds from navigating to ``url`` until ``selector`` is visible (or work was queued instead: the second
    value says so)."""
    started = time.monotonic()
    tab.goto(url)
    tab.locator(selector).or_(tab.get_by_text(WATCHING)).first.wait_for(state="visible", timeout=WAIT_MS)
    return time.monotonic() - started, tab.get_by_text(WATCHING).count() > 0


def warm(tab, url: str, model: str) -> float:
    """Load ``model`` in the server (the About page), not counted in any budget; its load time."""
    started = time.monotonic()
    tab.goto(f"{url}/about?model={model}")
    tab.get_by_role("heading", name=f"Model card: {model}").wait_for(timeout=WAIT_MS)
    return time.monotonic() - started


def first_views(tab, url: str, model: str) -> list[Row]:
    rows = []
    for name, (path, selector) in PAGES.items():
        seconds, queued = timed_open(tab, f"{url}/{path}?model={model}", selector)
        rows.append(Row(f"(a) {model}: {name}, first view", seconds, 3.0,
                        "queued: not in the atlas / store" if queued else "results shown", shown=not queued))
    return rows


def unstored_fact(tab, url: str, model: str, lang: str, skip: int = 0):
    """A bundled fact with ``lang`` labels whose page queues work (not in the atlas): from the end of the list."""
    factset = load_bundled()
    candidates = [f for f in factset.facts if lang in f.labels][::-1][skip:]
    for fact in candidates[:20]:
        link = f"{url}/?model={model}&relation={fact.relation}&fact={fact.id}&lang={lang}"
        tab.goto(link)
        tab.get_by_role("heading", name="Fact browser").first.wait_for(timeout=WAIT_MS)
        for _ in range(40):
            if tab.get_by_text(WATCHING).count() or tab.get_by_role("heading", name="Prompts").count():
                break
            tab.wait_for_timeout(250)
        if tab.get_by_text(WATCHING).count():
            tab.get_by_role("button", name="Cancel").first.click()  # measured below from a clean start
            tab.wait_for_timeout(1500)
            return fact, link
    raise SystemExit(f"no bundled {lang} fact of {model} is missing from the store")


HEATMAP_VALUES = ("() => { const g = document.querySelector('.js-plotly-plot');"
                  " return g && g.data ? JSON.stringify(g.data[0].z).slice(0, 400) : null; }")


def pick_fact(tab, fact, lang: str) -> tuple[float, bool]:
    """Pick ``fact`` in the open Fact browser's fact box: seconds until its heatmap is drawn (the heatmap's
    values change), or until the page queued it instead (the second value says so)."""
    before = tab.evaluate(HEATMAP_VALUES)
    tab.locator("[data-testid='stSelectbox']").filter(has_text="Fact (type to search)").click()
    tab.keyboard.type(f"{fact.subject(lang)} → {fact.object(lang)}")
    started = time.monotonic()
    tab.keyboard.press("Enter")
    while tab.evaluate(HEATMAP_VALUES) in (before, None) and not tab.get_by_text(WATCHING).count():
        if time.monotonic() - started > WAIT_MS / 1000:
            raise SystemExit(f"picking {fact.id} showed nothing in {WAIT_MS / 1000:.0f} s")
        tab.wait_for_timeout(20)
    return time.monotonic() - started, tab.get_by_text(WATCHING).count() > 0


def compute_fact(tab, link: str) -> tuple[float, float]:
    """Open an unstored fact (queued) and time its first heatmap and its full view."""
    started = time.monotonic()
    tab.goto(link)
    again = tab.get_by_role("button", name="Compute them")  # this session cancelled it while looking for it
    for _ in range(40):
        if again.count() or tab.get_by_text(WATCHING).count():
            break
        tab.wait_for_timeout(250)
    if again.count():
        started = time.monotonic()
        again.first.click()
    tab.locator(HEATMAP).first.wait_for(state="visible", timeout=WAIT_MS)
    first = time.monotonic() - started
    tab.get_by_role("heading", name="Edit effect").wait_for(timeout=WAIT_MS)
    return first, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", default="", help="budgets to skip, e.g. a or a,c")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    models, skip = args.models.split(","), set(filter(None, args.skip.split(",")))
    home = fresh_home()
    log = home / "server.log"
    proc, url = start_server(home, args.threads, log)
    rows: list[Row] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context(viewport={"width": 1400, "height": 2000})
            tab = context.new_page()
            for model in models:
                rows.append(Row(f"{model}: first load (not budgeted)", warm(tab, url, model), None))
            if "a" not in skip:
                for model in models:
                    rows += first_views(tab, url, model)
            english = next((m for m in models if m.startswith("smollm2")), models[0])
            fact, link = unstored_fact(tab, url, english, "en")
            if "b" not in skip:
                first, whole = compute_fact(tab, link)
                rows.append(Row(f"(b) {english}, {fact.id} (en, 5 prompts): first heatmap", first, 15.0))
                rows.append(Row(f"(b) {english}, {fact.id} (en): every prompt", whole, 60.0))
            chinese = next((m for m in models if m.startswith("gemma3")), None)
            if chinese is not None and not {"c", "d"} <= skip:
                zh_fact, zh_link = unstored_fact(tab, url, chinese, "zh")
                busy = context.new_page()  # another session: it queues the fact again at once
                started = time.monotonic()
                busy.goto(zh_link)
                if "d" not in skip and "b" not in skip:  # (b)'s fact is stored now
                    busy.get_by_text(WATCHING).first.wait_for(timeout=WAIT_MS)
                    seconds, queued = timed_open(tab, link, HEATMAP)
                    rows.append(Row(f"(d) stored fact by its link while {chinese} computes: heatmap", seconds, 2.0,
                                    f"{chinese} still computing: {busy.get_by_text(WATCHING).count() > 0}",
                                    shown=not queued))
                    for other in [f for f in load_bundled().facts_of(fact.relation) if f.id != fact.id][:2]:
                        seconds, queued = pick_fact(tab, other, "en")  # the atlas holds a relation's first facts
                        rows.append(Row(f"(d) {other.id} picked in the open Fact browser while {chinese} computes: "
                                        "heatmap", seconds, 2.0, f"{chinese} still computing: "
                                        f"{busy.get_by_text(WATCHING).count() > 0}; "
                                        f"{'queued: not stored' if queued else 'stored'}", shown=not queued))
                        if queued:  # not in the atlas after all: it must not compete with (c)
                            tab.get_by_role("button", name="Cancel").first.click()
                        tab.wait_for_timeout(3000)  # its measurements run meanwhile, as a user reads the page
                if "c" not in skip:
                    busy.locator(HEATMAP).first.wait_for(state="visible", timeout=WAIT_MS)
                    rows.append(Row(f"(c) {chinese}, {zh_fact.id} (zh): first heatmap", time.monotonic() - started,
                                    45.0))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"app in chromium, server on {args.threads} torch thread(s); load average {os.getloadavg()[0]:.2f}; "
          f"server log {log}")
    print("| what | seconds | budget s | met | note |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
