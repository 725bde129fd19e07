# `make run` and `make test` work on a fresh machine: each builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test bench lint format clean

$(BIN)/corral-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/corral-installed
	$(BIN)/python manage.py up

# Tests use the Redis at 127.0.0.1:6379 (database 15) unless REDIS_URL says
# otherwise, and PostgreSQL when DATABASE_URL points at it (SQLite if not).
test: $(BIN)/corral-installed
	CORRAL_HOME=$(CURDIR)/.corral/test REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/corral-installed
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

lint: $(BIN)/corral-installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(BIN)/corral-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .corral/test
