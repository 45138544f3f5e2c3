# hedgeflow — see README.md
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# every install comes from the locks (exact versions, hashes checked): requirements-test.lock is
# the full set (dependencies + [test]), requirements.lock its runtime part (the Dockerfile's);
# `make upgrade` is the one way to change them
LOCK   := requirements-test.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)

.PHONY: up test lint bench upgrade clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/hedgeflow up $(ARGS)

# two processes (pytest-xdist; tests/conftest.py runs the timing-sensitive modules one after
# another on one of them); PYTEST_WORKERS=0 runs the suite in this process alone
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS)) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/hedgeflow bench --quick

# re-resolve the locks within pyproject's ranges; accepted only if the gateway contract suite and
# the saved-history replay pass on them in a throw-away venv (tools/upgrade.py).
# DRY_RUN=1: report and test, never replace the locks
upgrade:
	$(PYTHON) tools/upgrade.py $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

clean:
	rm -rf $(VENV) .hedgeflow .pytest_cache
