"""Regenerate ``docs/screenshot.png``: the app's Fact browser on a real model, in Debian's chromium.

    python docs/screenshot.py                                  # SmolLM2, the showcase fact (from the atlas)
    python docs/screenshot.py --model gemma3-270m --out /tmp/shot.png

The server runs on a fresh home that links the installed models (an empty store: what it shows comes from the
atlas, as on a fresh clone), on one torch thread; the picture is taken once the heatmap is drawn.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_app import CHROMIUM, FLAGS, HEATMAP, WAIT_MS, fresh_home, start_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = fresh_home()
    log = Path(tempfile.mkdtemp()) / "server.log"
    server, url = start_server(home, 1, log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            tab = browser.new_page(viewport={"width": args.width, "height": args.height})
            tab.goto(f"{url}/?model={args.model}")
            tab.locator(HEATMAP).first.wait_for(state="visible", timeout=WAIT_MS)
            tab.wait_for_timeout(3000)  # the figures' last layout pass
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(args.out), full_page=False)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
