# Customer 360: `make run` on a fresh machine sets up and serves the console; `make test` runs the suite.
VENV    ?= .venv
PY      := $(VENV)/bin/python
C360    := $(VENV)/bin/c360
# `make run PORT=5050` when 5000 is taken.
PORT    ?= 5000
PYTHON  ?= python3
VENDOR  := app/static/vendor
STAMP   := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP) $(VENDOR)/htmx.min.js

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(VENDOR)/htmx.min.js: package.json
	npm install --no-audit --no-fund --silent
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx.min.js
	cp node_modules/chart.js/dist/chart.umd.js $(VENDOR)/chart.umd.js

run: install
	$(C360) db upgrade
	$(C360) seed demo --port $(PORT)
	$(C360) serve --host 127.0.0.1 --port $(PORT)

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n 2 --dist loadfile

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules $(VENDOR) instance
