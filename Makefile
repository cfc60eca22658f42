# failcast: `make serve` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install serve test lint schema bench loadtest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/failcast db upgrade
	$(BIN)/failcast train --activate --if-no-active
	$(BIN)/failcast serve

# One test file per worker process (-n auto: one per core; --dist loadfile keeps a file's
# fixtures in one process); each worker has a PostgreSQL database of its own (tests/support.py).
test: install
	$(BIN)/pytest -n auto --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

schema: install
	$(BIN)/python -m graph.export_schema graph/schema.graphql

bench: install
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench

# The full-length load test (CI runs it for 5 s): 60 s, 32 clients, SQLite and PostgreSQL.
loadtest: install
	FAILCAST_LOAD_SECONDS=60 $(BIN)/pytest tests/e2e/test_load.py -s

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
