# OpsFlow: `make run` sets up and serves; `make test` sets up and runs the whole suite.
# Everything a fresh machine lacks is installed here: the venv and Python packages, the npm
# assets served as static files, and Debian's chromium for the browser tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: run test lint bench install browser clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

browser:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi wqy; } || { \
		echo "installing Debian chromium and a CJK font for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null; }

install: $(STAMP) $(NODE_STAMP)

run: $(STAMP) $(NODE_STAMP)
	$(BIN)/opsflow init --demo
	@echo
	@echo "OpsFlow: open http://127.0.0.1:8000 and sign in as a demo user (password: opsflow),"
	@echo "e.g. zhangwei (requester) and liuyang (ops manager, approves). Ctrl-C stops it."
	$(BIN)/opsflow serve --host 127.0.0.1 --port 8000

test: $(STAMP) $(NODE_STAMP) browser
	$(BIN)/ruff check engine webui tests bench
	$(BIN)/mypy engine
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check engine webui tests bench

# Every benchmark in one run (bench/README.md): a table, and bench/results/latest.json. PostgreSQL
# (a schema of its own per part, dropped afterwards) from OPSFLOW_BENCH_DATABASE_URL, else
# OPSFLOW_TEST_DATABASE_URL, else the local server below; unreachable, every part runs on SQLite.
# BENCH_ARGS passes flags, e.g. `make bench BENCH_ARGS="--only engine,http --profile"`.
BENCH_DATABASE_URL ?= $(or $(OPSFLOW_BENCH_DATABASE_URL),$(OPSFLOW_TEST_DATABASE_URL),postgresql+psycopg://postgres@127.0.0.1:5432/test)
BENCH_ARGS ?=

bench: $(STAMP)
	OPSFLOW_BENCH_DATABASE_URL='$(BENCH_DATABASE_URL)' $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules var test-output
