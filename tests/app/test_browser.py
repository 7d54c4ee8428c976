"""A real browser (Debian's chromium via Playwright) through every page of the running app; screenshots go
to screenshots/ (ignored by git)."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from kn_core.model.loading import DEMO_MODELS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = {  # a page URL first: opened before the entry page has ever run, it must still get app.py's navigation
    "custom_triple": ("custom_triple", "Custom triple"), "fact_browser": ("", "Fact browser"),
    "languages": ("languages", "Language comparison"), "fact_check": ("fact_check", "Fact-check"),
    "about": ("about", "About"), "relation_overview": ("relation_overview", "Relation overview"),
    "neuron_search": ("neuron_search", "Neuron search"), "compare_models": ("compare_models", "Two models, one fact")}
NO_CHART = ("about", "custom_triple", "relation_overview")  # custom triple draws once run; an empty store: no figure
XSS = "<img src=x onerror=alert(1)>"

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium missing: `apt-get install -y chromium`"),
    pytest.mark.skipif(not all((p / "config.json").is_file() for p in DEMO_MODELS.values()),
                       reason="demo models missing: run `python -m kn_core.demo train`"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str) -> None:
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail("the app did not answer /_stcore/health within 60 s")


@contextlib.contextmanager
def streamlit_server(command: list[str], env: dict[str, str], log: Path | None = None) -> Iterator[str]:
    """A Streamlit server (``python COMMAND`` plus the server flags, ``env`` on top of ours) on a free local
    port, healthy before its URL is yielded, terminated afterwards; its output goes to ``log`` if given."""
    port = free_port()
    out = open(log, "w", encoding="utf-8") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, *command, "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1"], cwd=ROOT,
                            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if log is not None:
            out.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(["-m", "streamlit", "run", "app.py"],
                          {"KN_EXPLORER_HOME": str(tmp_path_factory.mktemp("home"))}) as url:
        yield url


@pytest.fixture(scope="module")
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 2600})
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.dialogs = dialogs
        yield tab
        browser.close()


IDLE = """() => {
    const busy = document.querySelector('[data-testid="stStatusWidget"]') ||
                 document.querySelector('[data-testid="stSkeleton"]');
    if (busy) { window.__knIdle = null; return false; }
    window.__knIdle = window.__knIdle || Date.now();
    return Date.now() - window.__knIdle > 1500;
}"""


def settle(tab, title: str | None = None) -> None:
    """Wait until Streamlit has run the script to its end: the page's title is shown (when given) and no
    "running" indicator has been seen for 1.5 s (a run can start a moment after the page loads)."""
    tab.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    if title is not None:
        tab.get_by_role("heading", name=title).first.wait_for(state="visible", timeout=240_000)
    tab.evaluate("window.__knIdle = null")
    tab.wait_for_function(IDLE, polling=250, timeout=240_000)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_chart_without_exception(server, page, name):
    path, title = PAGES[name]
    page.goto(f"{server}/{path}")
    settle(page, title)
    if name not in NO_CHART:
        page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # tall viewport: the app scrolls inside
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Something went wrong").count() == 0


def shows_literally(page, text: str) -> bool:
    return page.get_by_text(text, exact=False).count() > 0 or \
        text in page.content().replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_user_text_is_escaped(server, page):
    """Hostile text as a subject (refused: the demo vocabulary cannot spell it, and the message quotes it) and
    inside a template (accepted: AMIG runs and its tables, selectors and chart labels show it): always as text."""
    page.goto(f"{server}/custom_triple")
    settle(page, "Custom triple")
    box = page.get_by_label("Subject [X]")
    box.fill(XSS)
    box.press("Enter")
    settle(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() > 0 and shows_literally(page, XSS)
    box.fill("Tanzania")
    box.press("Enter")
    settle(page)
    page.get_by_text("My own").click()
    settle(page)
    area = page.get_by_label("One template per line")
    area.fill(f"{XSS} The capital of [X] is [Y].")
    area.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run AMIG").click()
    settle(page)
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "custom_triple_xss.png"), full_page=True)
    assert page.dialogs == []
    assert page.locator("img[src='x']").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0
    assert shows_literally(page, XSS)


def test_clicking_a_neuron_in_the_heatmap_opens_its_detail(server, page):
    page.goto(server)
    settle(page, "Fact browser")
    heading = page.locator("h3", has_text=re.compile(r"^Neuron \d+:\d+$"))
    before = heading.first.inner_text()
    markers = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point")
    assert markers.count() >= 2
    markers.nth(markers.count() - 1).click(force=True)
    settle(page)
    after = heading.first.inner_text()
    assert after != before, (before, after)
    assert page.get_by_text("Something went wrong").count() == 0


@pytest.mark.parametrize("path, shows", [
    ("languages?model=demo-mlm&relation=P36&fact=P36-nigeria&p=0.5", "Nigeria → Abuja / 尼日利亚 → 阿布贾"),
    ("neuron_search?model=demo-clm&layer=2&index=7", "Neuron 2:7: a knowledge neuron in"),
    ("relation_overview?relation=P17&p=0.4", "P17 · "),
])
def test_a_shared_url_restores_its_view(server, page, path, shows):
    page.goto(f"{server}/{path}")
    settle(page)
    page.screenshot(path=str(SHOTS / f"link_{path.split('?')[0]}.png"), full_page=True)
    boxes = page.locator('[data-testid="stSelectbox"]')
    shown = page.inner_text("body") + "\n".join(boxes.all_inner_texts()) + "\n".join(
        boxes.locator("input").evaluate_all("inputs => inputs.map(i => i.value)"))
    assert shows in shown, (path, shown[-2000:])
    assert page.get_by_text("This link").count() == 0 and page.get_by_text("Something went wrong").count() == 0
    assert all(part in page.url for part in path.split("?")[1].split("&")), page.url  # the URL keeps the view


def test_a_broken_link_says_so(server, page):
    page.goto(f"{server}/?relation=P36&fact=P99-nowhere&tau=abc")
    settle(page, "Fact browser")
    assert page.get_by_text("This link has values the page cannot show").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
