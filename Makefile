# Grassroots Data Gateway. Needs only Python 3.11 and make; everything else is installed here.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test check lint types imports unit bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## The main job: migrate, seed and run the gateway + the civil-affairs registry on loopback.
demo: setup
	$(BIN)/grassroots demo

## Everything CI runs: static checks, then the whole test suite (PostgreSQL tests need
## GRASSROOTS_TEST_POSTGRES_URL; they are skipped without it outside CI).
test: setup check
	$(BIN)/pytest

check: lint types imports

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy

imports: setup
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
