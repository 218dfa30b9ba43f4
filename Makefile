# `make run` serves the whole stack on SQLite and local files; `make test` runs every test.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-contrib clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vrp up

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/overhead.py

# The contrib instrumentations need SQLAlchemy < 2.1: they get their own venv, never .venv.
CONTRIB_VENV := .venv-contrib
CONTRIB_STAMP := $(CONTRIB_VENV)/.installed

$(CONTRIB_STAMP): pyproject.toml benchmarks/contrib-requirements.txt
	$(PYTHON) -m venv $(CONTRIB_VENV)
	$(CONTRIB_VENV)/bin/pip install --quiet --upgrade pip
	$(CONTRIB_VENV)/bin/pip install --quiet -e . -r benchmarks/contrib-requirements.txt
	touch $(CONTRIB_STAMP)

bench-contrib: $(CONTRIB_STAMP)
	$(CONTRIB_VENV)/bin/python benchmarks/overhead.py --contrib

clean:
	rm -rf $(VENV) var
