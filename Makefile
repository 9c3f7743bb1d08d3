# OpsFlow: `make run` sets up and serves; `make test` sets up and runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/opsflow init --demo
	@echo
	@echo "OpsFlow is ready. Drive it from the command line (demo password: opsflow):"
	@echo "  $(BIN)/opsflow tasks --as zhangwei"
	@echo "  $(BIN)/opsflow start <process_id> --as zhangwei --data '{\"title\": \"...\"}'"
	@echo "  $(BIN)/opsflow task <task_id>     # its form and data"
	@echo "  $(BIN)/opsflow claim <task_id> --as liuyang"
	@echo "  $(BIN)/opsflow complete <task_id> --as liuyang --data '{\"decision\": \"approve\"}'"
	@echo "  $(BIN)/opsflow show <case_id>"
	@echo "  $(BIN)/opsflow audit verify"

test: $(STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check engine tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var test-output
