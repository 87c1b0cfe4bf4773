# `make run` and `make test` work on a fresh clone: they build .venv first (idempotent).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp's name changes when a requirements file changes, which re-runs the install.
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements-bench.txt | cksum | cut -d' ' -f1)
EXTRAS_STAMP := $(VENV)/.extras-$(shell cat requirements-extras.txt | cksum | cut -d' ' -f1)
PORT   ?= 8501

.PHONY: setup extras run test test-fast e2e bench suite quality fusion clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# The optional extras (Ray, MLflow): the tests need them, `make run` does not.
extras: $(EXTRAS_STAMP)

$(EXTRAS_STAMP): requirements-extras.txt $(STAMP)
	$(PY) -m pip install -q -r requirements-extras.txt
	@rm -f $(VENV)/.extras-*
	@touch $@

run: setup
	@# The demo datasets are stored up front (a no-op when already there), so Data and Train show them at once.
	@for f in assets/demo/topics.csv assets/demo/shapes.zip assets/demo/spoken_words.zip; do \
		$(PY) -m lepton ingest $$f >/dev/null || exit 1; done
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --browser.gatherUsageStats false

test: setup extras
	@scripts/ensure_chromium.sh
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not integration and not e2e"

e2e: setup
	@scripts/ensure_chromium.sh
	$(PY) -m pytest -q tests/e2e

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(PY) -m pip install -q -r requirements-bench.txt
	@rm -f $(VENV)/.bench-*
	@touch $@

# The quality suite: six labelled datasets built offline (espeak-ng, fonts, scikit-image), not in git.
suite: setup $(BENCH_STAMP)
	@scripts/ensure_bench_deps.sh
	$(PY) benchmarks/suite/build.py

# Fusion of two weak modalities (rendered and spoken letters) against each alone, 3 seeds (about 10 minutes).
fusion: setup $(BENCH_STAMP)
	@scripts/ensure_bench_deps.sh
	$(PY) benchmarks/fusion.py

# Lepton's default (auto, 3-minute budget) against the classical baselines on the suite, 3 seeds (about an hour).
quality: suite
	$(PY) benchmarks/quality.py --recipe auto --minutes 3

bench: suite
	$(PY) benchmarks/run_all.py
	$(PY) benchmarks/quality.py --recipe auto --minutes 3

clean-venv:
	rm -rf $(VENV)
