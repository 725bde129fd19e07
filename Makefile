# `make run` and `make test` work on a fresh machine: each builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian's chromium package; the browser tests drive it (Playwright's download is not used).
CHROMIUM := /usr/bin/chromium
# Debian's bubblewrap package: check commands and agent sessions run in its sandbox.
BWRAP := /usr/bin/bwrap
# CORRAL_UNSANDBOXED=1 make run: the local single-user trial, which runs without it.
ifeq ($(filter 1 true yes on,$(CORRAL_UNSANDBOXED)),)
RUN_BWRAP := $(BWRAP)
endif

.PHONY: run test test-fast bench lint format clean

# `make test` without Chromium: root gets it from apt (the recipe below); anyone
# else gets one line saying what to install.
ifneq ($(filter test test-fast,$(MAKECMDGOALS)),)
ifeq ($(wildcard $(CHROMIUM)),)
ifneq ($(shell id -u),0)
$(error make $(MAKECMDGOALS) needs Chromium at $(CHROMIUM): run "sudo apt-get install chromium" (Debian's package), or make test as root)
endif
endif
endif

# `make run` or `make test` without bubblewrap: the same, root gets it from apt.
ifneq ($(filter test test-fast,$(MAKECMDGOALS))$(if $(RUN_BWRAP),$(filter run,$(MAKECMDGOALS))),)
ifeq ($(wildcard $(BWRAP)),)
ifneq ($(shell id -u),0)
$(error make $(MAKECMDGOALS) needs bubblewrap at $(BWRAP): run "sudo apt-get install bubblewrap" (Debian's package), or make as root)
endif
endif
endif

$(BIN)/corral-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
	@test -x $@ || { echo "apt-get installed chromium but there is no $@" >&2; exit 1; }

$(BWRAP):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap
	@test -x $@ || { echo "apt-get installed bubblewrap but there is no $@" >&2; exit 1; }

run: $(BIN)/corral-installed $(RUN_BWRAP)
	$(BIN)/python manage.py up

# Tests need nothing running: Redis is an embedded one that pytest starts
# (tests/embedded_redis.py) unless REDIS_URL is set, and the database SQLite
# unless DATABASE_URL points at PostgreSQL. The tests run across the cores
# (pytest-xdist): each worker has its own test database and its own Redis
# database (tests/embedded_redis.py). TEST_WORKERS=0 runs them in one process;
# PYTEST_ARGS adds to pytest's arguments, e.g. PYTEST_ARGS=tests/agents/test_lead.py.
# The run ends with its 25 slowest tests, which is where a faster run starts.
TEST_WORKERS ?= auto
PYTEST := CORRAL_HOME=$(CURDIR)/.corral/test $(BIN)/pytest -n $(TEST_WORKERS) --durations=25

test: $(BIN)/corral-installed $(CHROMIUM) $(BWRAP)
	$(PYTEST) $(PYTEST_ARGS)

# All but the scenario tests marked slow (pyproject's markers): under 2 minutes.
test-fast: $(BIN)/corral-installed $(CHROMIUM) $(BWRAP)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# One table of figures against their goals, also written to bench/results.json
# (BENCH_ARGS="--only up,lead" for some of them; BENCH_QUICK=1 runs all of them small).
bench: $(BIN)/corral-installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Formatting, lint, the layers (import-linter, pyproject's [tool.importlinter]) and types.
lint: $(BIN)/corral-installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(BIN)/corral-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .corral/test
