# `make run` serves the whole stack on SQLite and local files; `make test` runs ruff, bandit,
# the import layering contracts (lint-imports) and every test.
# Both create .venv on first use; `run` installs everything the `vrp` command runs (the `[all]`
# extra; a bare `pip install .` is the instrumentation library alone), `test` adds the test
# extras. Each install is remembered by a stamp and redone when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test bench bench-contrib clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[all]'
	touch $@

$(TEST_STAMP): pyproject.toml $(RUN_STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

run: $(RUN_STAMP)
	$(VENV)/bin/vrp up

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit --quiet --configfile pyproject.toml --recursive recorder instrumentation dashboard backup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

bench: $(TEST_STAMP)
	$(VENV)/bin/python benchmarks/overhead.py

# The contrib instrumentations need SQLAlchemy < 2.1: they get their own venv, never .venv.
CONTRIB_VENV := .venv-contrib
CONTRIB_STAMP := $(CONTRIB_VENV)/.installed

$(CONTRIB_STAMP): pyproject.toml benchmarks/contrib-requirements.txt
	$(PYTHON) -m venv $(CONTRIB_VENV)
	$(CONTRIB_VENV)/bin/pip install --quiet --upgrade pip
	$(CONTRIB_VENV)/bin/pip install --quiet -e '.[all]' -r benchmarks/contrib-requirements.txt
	touch $(CONTRIB_STAMP)

bench-contrib: $(CONTRIB_STAMP)
	$(CONTRIB_VENV)/bin/python benchmarks/overhead.py --contrib

# ---- Deployment (docker/, README "Deployment") ----
# `make test-deploy` builds the images, starts docker/compose.yaml with docker/compose.ci.yaml
# (PostgreSQL, migrate, api, scheduler, dashboard), runs tests/deploy/ against it and takes it
# down (docker/test-deploy.sh). Needs a running Docker engine, docker-compose and mmdebstrap.
# The wheelhouse holds every dependency as a wheel built here, for image builds that cannot
# reach a package index.
WHEELHOUSE_STAMP := docker/wheelhouse/.built

.PHONY: wheelhouse test-deploy

$(WHEELHOUSE_STAMP): pyproject.toml $(RUN_STAMP)
	$(VENV)/bin/pip wheel --quiet --wheel-dir docker/wheelhouse '.[all]' 'setuptools>=68'
	rm -f docker/wheelhouse/voice_recorder_pro-*.whl
	touch $@

wheelhouse: $(WHEELHOUSE_STAMP)

test-deploy: $(TEST_STAMP) $(WHEELHOUSE_STAMP)
	PYTHON=$(VENV)/bin/python bash docker/test-deploy.sh
# ---- end of deployment ----

# Removes what the build made, never ./var: it holds the database, the audio and the backups.
clean:
	rm -rf $(VENV) $(CONTRIB_VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
