# Grassroots Data Gateway. Needs only Python 3.11 and make; everything else is installed here.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test check lint types imports unit bench bench-quick clean browser lock

# The releases installed are constraints.txt's (what CI ran), not whatever is newest the day of the clone.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## The main job: migrate, seed and run the gateway + the civil-affairs registry on loopback.
demo: setup
	$(BIN)/grassroots demo $(if $(ANY_HOUR),--any-hour)

## Everything CI runs: static checks, then the whole test suite (PostgreSQL tests need
## GRASSROOTS_TEST_POSTGRES_URL; they are skipped without it outside CI). Three worker processes on two
## cores: much of the suite waits on the gateway, registry and command-line processes it starts, and a third
## worker fills that idle time. --dist loadfile keeps each test file on one worker, so a module-scoped stack
## is started once, not once per worker. Bytecode is cached even where the environment says not to
## (PYTHONDONTWRITEBYTECODE): the suite starts many Python processes (gateways, registries, the CLI), and each
## compiled the gateway's own modules from source again (0.3-0.4 s of CPU per process).
test: setup check browser
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n 3 --dist loadfile

## Headless Chromium and a Chinese font for the report page tests, and poppler's pdftotext to read the
## printed report back (Debian's packages; idempotent). The font is checked on its own: Debian's chromium
## comes without one, and a machine that has the browser already may still lack it.
browser:
	@{ command -v chromium && command -v pdftotext && fc-list :lang=zh family | grep -q .; } >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk poppler-utils >/dev/null) \
	  || echo "warning: chromium, a Chinese font or pdftotext not installed; browser tests will skip outside CI"; }

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

## Benchmarks side by side with their peers (direct, nginx, other clients): writes BENCHMARKS.md and
## bench/results.json. Installs what only they need (bench/requirements.txt; nginx from Debian if missing).
bench: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -r bench/requirements.txt
	$(BIN)/python -c 'from bench.stack import ensure_nginx; ensure_nginx()'
	$(BIN)/python -m bench

bench-quick: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -r bench/requirements.txt
	$(BIN)/python -c 'from bench.stack import ensure_nginx; ensure_nginx()'
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

## Refresh constraints.txt: the newest releases pyproject.toml and bench/requirements.txt admit, resolved in a
## throwaway venv (.lock-venv, removed after). Run `make test` and the benchmarks on the result before
## committing it: a new release of a dependency lands as a reviewed change, never by surprise in a fresh clone.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]' -r bench/requirements.txt
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv
	@echo "constraints.txt refreshed; run make test before committing it (git diff constraints.txt: what changed)"
