# Set-up is part of every target: a fresh machine needs only Python 3.11 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/riskpipe demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Lint before the tests in CI: ruff (rules and formatting) over the code and the tests, the layer
# contracts (import-linter, [tool.importlinter] in pyproject.toml) and the type checker (mypy).
lint: $(STAMP)
	$(BIN)/ruff check riskpipe flows tests
	$(BIN)/ruff format --check riskpipe flows tests
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/riskpipe bench

clean-venv:
	rm -rf $(VENV)
