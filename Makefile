# Two commands on a fresh machine: `make run` and `make test`. Each builds the
# locked environment first (tools/bootstrap.sh), and only when the lock changed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help venv run test test-fast lint bench notebook lock lock-airflow clean

help:
	@echo "make run        build the env if needed, train/validate/push on the embedded warehouse, write the report"
	@echo "make test       build the env if needed, lint, then run every test"
	@echo "make test-fast  the tests not marked e2e or slow"
	@echo "make lint       ruff and mypy (ruff.toml, mypy.ini); make test runs it first"
	@echo "make bench      run the bench/ scripts (JSON on stdout)"
	@echo "make notebook   execute notebooks/walkthrough.ipynb into build/walkthrough.html"
	@echo "make lock       re-resolve requirements.in into requirements.lock"
	@echo "make lock-airflow  re-resolve deploy/composer/requirements.in (the DAG test's Airflow env)"

venv:
	@tools/bootstrap.sh

# The daily run, then the report of the home it ran on (its path printed),
# also after a refused day (exit 3), which is when an operator looks.
run: venv
	@$(PY) runner_local.py; rc=$$?; \
	  if [ $$rc -eq 0 ] || [ $$rc -eq 3 ]; then \
	    $(VENV)/bin/taxi-demand report || exit 1; fi; exit $$rc

# Both cores: each test file runs whole on one worker, so a module's shared
# fixtures are built once per worker at most. Debian's Chromium (the report
# test's browser) and the Airflow environment (the Composer DAG's test,
# tools/airflow_env.sh) install while the main environment builds, and the
# lint runs while they finish; a lint failure fails `make test` (and CI)
# before the suite starts.
test:
	@tools/chromium.sh & browser=$$!; tools/airflow_env.sh & airflow=$$!; \
	  tools/bootstrap.sh || exit 1; \
	  $(MAKE) --no-print-directory lint; lint=$$?; \
	  wait $$browser || exit 1; wait $$airflow || exit 1; exit $$lint
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

test-fast: venv
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not e2e and not slow"

# ruff (under a second) and mypy (seconds with its cache in .mypy_cache/, under
# a minute without). A deliberate deferred import says `# noqa: PLC0415`;
# tools/deferred_imports.py rewrites pylint's older spelling into that.
lint: venv
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/mypy

bench: venv
	@for b in bench/*.py; do echo "== $$b" >&2; $(PY) $$b --json || exit 1; done

# The kernel is this venv's Python, registered inside the venv under its own
# name, so a user-level "python3" kernelspec cannot run the notebook elsewhere.
notebook: venv
	@mkdir -p build
	@$(PY) -m ipykernel install --sys-prefix --name taxi-demand \
	  --display-name "taxi_demand (.venv)" >/dev/null
	$(PY) -m jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=900 \
	  --ExecutePreprocessor.kernel_name=taxi-demand \
	  --output-dir build notebooks/walkthrough.ipynb

lock: venv
	$(VENV)/bin/uv pip compile --quiet --python-version 3.10 --python $(PY) \
	  --no-header --annotation-style line requirements.in -o requirements.lock

# Cloud Composer 3 runs Airflow on Python 3.11: resolve for that.
lock-airflow: venv
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --no-header \
	  --annotation-style line deploy/composer/requirements.in \
	  -o deploy/composer/requirements.lock

clean:
	rm -rf $(VENV) .venv-airflow build .pytest_cache .mypy_cache .ruff_cache
