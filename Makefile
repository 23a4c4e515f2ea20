# Two commands matter: `make run` (the whole stack on http://127.0.0.1:5000) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint mlflow-versions bench screenshots install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/mlflow-gateway dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The MLflow releases the route table is tested with besides the pinned one, laid over the
# virtualenv (tests/mlflow_versions.py; installed once, from the package index).
mlflow-versions: $(STAMP)
	$(BIN)/python -m tests.mlflow_versions install

# Parallel workers (TEST_WORKERS=0: one process), each running whole test files, so that a
# module's fixtures (a gateway, its world) are made once; the attack catalogue's setups are two files.
TEST_WORKERS ?= 2

test: lint mlflow-versions
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The console's pictures in docs/images/, taken by the browser tests against a real stack.
screenshots: $(STAMP)
	GATEWAY_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/e2e/test_console.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
