# Everything a fresh machine needs: `make demo` (build + verify + serve the embedded sample index)
# and `make test` (the test suite; .ci/run calls it). Both create .venv and install taskgram into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TASKGRAM := $(VENV)/bin/taskgram
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,
SAMPLE_INDEX ?= indexes/sample
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo index serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

setup: $(STAMP)

index: setup
	$(TASKGRAM) build data/sample-en.jsonl.zst --output $(SAMPLE_INDEX)
	$(TASKGRAM) verify $(SAMPLE_INDEX)

demo: index
	$(TASKGRAM) serve $(SAMPLE_INDEX) --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench:
	$(MAKE) setup EXTRAS=dev,bench
	$(PY) bench/bench_build.py

clean:
	rm -rf $(VENV) indexes .pytest_cache .mypy_cache .ruff_cache
