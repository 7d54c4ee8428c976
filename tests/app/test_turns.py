"""Two browser sessions on one slow model (#17): A runs, B queues and then clicks again and reloads; afterwards
a run must still go through. With the lock taken outside its ``try`` (or ``empty()`` raising before the
release), B's interrupted wait kept the model's lock forever and every later run stayed "queued"."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import CHROMIUM, FLAGS, ROOT, SHOTS, settle, streamlit_server

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium missing: `apt-get install -y chromium`")
SLOW_S = 3  # per attribution: the custom triple's 3 prompts keep A's turn ~10 s
QUEUED = "Another session is using this model"


@pytest.fixture
def slow_server(tmp_path):
    with streamlit_server([str(Path(__file__).with_name("slow_server.py"))],
                          {"KN_EXPLORER_HOME": str(tmp_path), "KN_SLOW_S": str(SLOW_S), "PYTHONPATH": str(ROOT)}) as url:
        yield url


def open_form(browser, url: str):
    tab = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
    tab.goto(f"{url}/custom_triple")
    settle(tab, "Custom triple")
    return tab


def test_an_interrupted_wait_does_not_keep_the_model(slow_server):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        a, b = open_form(browser, slow_server), open_form(browser, slow_server)
        a.get_by_role("button", name="Run AMIG").click()
        a.get_by_text("Integrating gradients").first.wait_for(timeout=60_000)  # A holds the model
        b.get_by_role("button", name="Run AMIG").click()
        b.get_by_text(QUEUED).first.wait_for(timeout=30_000)
        for _ in range(5):  # B loses patience: clicks again and again, then reloads, while A still runs
            b.get_by_role("button", name="Run AMIG").click()
            b.wait_for_timeout(300)
        b.reload()
        a.get_by_text("Stored:").first.wait_for(timeout=120_000)
        settle(a)
        c = open_form(browser, slow_server)  # a fresh session: its run must go through, not queue forever
        c.get_by_role("button", name="Run AMIG").click()
        try:
            c.get_by_role("heading", name="Edit effect").wait_for(timeout=60_000)
            settle(c)
        finally:
            SHOTS.mkdir(exist_ok=True)
            c.screenshot(path=str(SHOTS / "turns_after_interrupted_wait.png"), full_page=True)
        assert c.get_by_text(QUEUED).count() == 0
        assert c.get_by_text("Something went wrong").count() == 0
        browser.close()
