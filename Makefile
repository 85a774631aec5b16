# The README's two commands: `make demo` (the main job) and `make test` (the tests).
# Both create/refresh a local virtual environment first, so they work on a fresh machine.

VENV ?= .venv
PYTHON ?= python3
# The CPU build of torch lies on these machines' disk; on your own machine pick the build you
# want, e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flowllm-kit-installed
RUN ?= runs/demo

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flowllm_kit.notebooks run --preset demo --run-dir $(RUN)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Two pytest workers (one per core); --dist loadfile keeps each test file on one worker, so the
# notebook series runs in order in one run folder.
test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
