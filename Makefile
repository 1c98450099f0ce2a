# Two commands do everything on a fresh machine (Python 3.11+, Node 20+):
#   make demo   set up, then run codexflow on its embedded defaults
#   make test   set up, then lint, type-check and run the whole test suite
PYTHON ?= python3
BIN := .venv/bin

.PHONY: setup demo test check bench clean

setup: .venv/.installed node_modules/.package-lock.json

.venv/.installed: pyproject.toml
	$(PYTHON) -m venv .venv
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

demo: setup
	$(BIN)/codexflow demo

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: check
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/codex_overhead.py
	$(BIN)/python bench/pipeline_overhead.py

clean:
	rm -rf .venv node_modules .codexflow
