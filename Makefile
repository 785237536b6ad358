# alpcare: `make run` sets everything up and serves the demo; `make test` passes the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint typecheck pytest demo clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "alpcare needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The web server, a background-task worker and the scheduler, together (Procfile, honcho).
run: install
	DJANGO_DEBUG=1 $(BIN)/python manage.py migrate --no-input
	DJANGO_DEBUG=1 $(BIN)/python manage.py seed_demo --url http://$(HOST):$(PORT)/
	DJANGO_DEBUG=1 ALPCARE_RUN_ADDR=$(HOST):$(PORT) $(BIN)/honcho start -f Procfile

test: install-dev lint typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	DJANGO_DEBUG=1 $(BIN)/mypy alpcare pathways tests bench

pytest:
	DJANGO_DEBUG=1 $(BIN)/pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .mypy_cache .ruff_cache
