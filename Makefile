# bptwin: every target does its own set-up (virtual environment + install) on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test lint typecheck format bench model clean help

help:
	@echo "make run    - start the control room on embedded defaults with a simulated batch"
	@echo "make test   - run the whole test suite (real Postgres/Mosquitto/InfluxDB on loopback)"
	@echo "make lint   - ruff check and format check, import contracts, mypy"
	@echo "make bench  - run the benchmarks and print a table"
	@echo "make model  - rebuild the shipped OD600 model from the simulated campaign"

# uv installs the dependencies in parallel (a fresh machine in well under a minute instead of about
# three with pip); pip is the fallback where uv cannot be had. Output is one line unless it fails.
$(STAMP): pyproject.toml
	@echo "bptwin: setting up $(VENV) (first run only; about a minute on a fresh machine)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -m pip install --quiet --disable-pip-version-check uv >$(VENV)/install.log 2>&1; then \
		$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev]' >>$(VENV)/install.log 2>&1; \
	else \
		$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' >>$(VENV)/install.log 2>&1; \
	fi || { cat $(VENV)/install.log; echo "bptwin: install failed (log above, kept in $(VENV)/install.log)"; exit 1; }
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bptwin run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# CI (.ci/run) runs this before `make test`; `make test` itself stays runnable on code mid-edit.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@$(MAKE) --no-print-directory typecheck

# mypy over the installed names: link each source folder under build/typecheck/bptwin/.
TYPECHECK := build/typecheck/bptwin
typecheck: $(STAMP)
	@mkdir -p $(TYPECHECK)
	@for pair in tui:bptwin_tui screens:screens drivers:drivers twin:twin eln:eln database:database; do \
		ln -sfn "$(CURDIR)/$${pair#*:}" "$(TYPECHECK)/$${pair%%:*}"; done
	$(VENV)/bin/mypy -p bptwin

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/run.py

# Rebuilds the shipped OD600 model reproducibly (same seed and threads -> same model files).
model: $(STAMP)
	$(VENV)/bin/bptwin simulate --campaign --seed 2026 --out build/campaign --quiet
	rm -rf models/od600-sim-s2026 models/CURRENT models/HISTORY.json
	$(VENV)/bin/bptwin train build/campaign --trials 30 --seed 42 --threads 2 --jobs 2 \
		--storage memory --registry models --version od600-sim-s2026 \
		--report build/model-report --promote

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
