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

# Downloads from PyPI are sometimes cut off mid-file: let pip resume a download up to 20 times
# (pip 25.1 and newer; older pips ignore the variable), and run a failed install again, up to
# three times in all, before giving up.
export PIP_RESUME_RETRIES ?= 20
retry = for attempt in 1 2 3; do $(1) && exit 0; \
	echo 'failed (attempt '$$attempt' of 3): $(1)' >&2; sleep 20; done; exit 1

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call retry,$(PY) -m pip install --quiet --upgrade pip)
	$(call retry,$(PY) -m pip install --quiet $(TORCH_SPEC))
	$(call retry,$(PY) -m pip install --quiet -e ".[all]")
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flowllm_kit.notebooks run --preset demo --run-dir $(RUN)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports  # the package's layers (pyproject.toml, docs/ARCHITECTURE.md)

# Two pytest workers (one per core); --dist loadfile keeps each test file on one worker, so the
# notebook series runs in order in one run folder.
test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
