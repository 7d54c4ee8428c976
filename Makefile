# One command runs the app, one runs the tests; both set up what they need first.
PYTHON ?= python3
PORT ?= 8501

.PHONY: setup setup-dev browser run test bench

setup:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt

setup-dev:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

browser:  # Debian's chromium for the browser tests (Playwright's own download does not work here)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@# CJK and emoji fonts only make the screenshots legible: best effort, never a failure
	@fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || apt-get install -y -qq fonts-noto-cjk fonts-noto-color-emoji \
	  >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fonts-noto-cjk \
	  fonts-noto-color-emoji >/dev/null 2>&1; } || echo "note: CJK fonts not installed; screenshots show boxes for Chinese"

run: setup
	$(PYTHON) -m streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: setup-dev browser
	$(PYTHON) -m pytest

bench: setup
	$(PYTHON) bench/bench_amig.py
