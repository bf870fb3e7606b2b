#!/usr/bin/env bash
# Builds .venv-airflow/ from deploy/composer/requirements.lock with a checked
# Python 3.11, once per lock. Airflow 3 and TFX 1.16 cannot share one
# environment (TFX caps Airflow below 3 and needs Python 3.10), so the
# Composer DAG's test (tests/test_composer_dag.py) parses the DAG file in this
# one, on the Python Composer 3 runs. A stamp keyed on the hash of the lock
# skips the work when nothing changed; an interrupted or failed build leaves
# no .venv-airflow behind. `make test` runs it beside tools/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-airflow
LOCK=deploy/composer/requirements.lock
# uv's pin comes from the main lock, so both environments install with the
# same uv; the main venv may still be building when this runs.
MAIN_LOCK=requirements.lock

say() { echo "airflow_env: $*" >&2; }
die() { echo "airflow_env: error: $*" >&2; exit 1; }

is_py311() {
  [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1
}

if [ -n "${AIRFLOW_PYTHON:-}" ] && ! is_py311 "$AIRFLOW_PYTHON"; then
  die "AIRFLOW_PYTHON=$AIRFLOW_PYTHON is not a working Python 3.11 interpreter; point it at one (Cloud Composer 3 runs Airflow on 3.11)."
fi

key=$(cat "$LOCK" | sha256sum | cut -c1-16)
stamp="$VENV/.installed-$key"
[ -f "$stamp" ] && exit 0

find_python() {
  if [ -n "${AIRFLOW_PYTHON:-}" ]; then
    echo "$AIRFLOW_PYTHON"; return
  fi
  local cand
  for cand in python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11; do
    if is_py311 "$cand"; then command -v "$cand"; return; fi
  done
  # pyenv installs a python3.11 shim that fails unless PYENV_VERSION is set.
  if command -v pyenv >/dev/null 2>&1; then
    for cand in "$(pyenv root)"/versions/3.11.*/bin/python3.11; do
      if is_py311 "$cand"; then echo "$cand"; return; fi
    done
  fi
  die "no Python 3.11 found (tried \$AIRFLOW_PYTHON, python3.11, pyenv); install CPython 3.11 (e.g. 'pyenv install 3.11') or set AIRFLOW_PYTHON=/path/to/python3.11."
}

# A lock change rebuilds from scratch: an Airflow upgrade in place could keep
# files of the old version that the test would then import.
if [ -d "$VENV" ]; then
  say "removing $VENV (built from another lock, or interrupted)"
  rm -rf "$VENV"
fi
python=$(find_python)
# From here on, a failure or an interrupt must not leave a half environment.
trap 'rc=$?; if [ $rc -ne 0 ]; then rm -rf "$VENV"; fi' EXIT
trap 'exit 130' INT TERM
start=$SECONDS
log=$(mktemp -t taxi-demand-airflow.XXXXXX)
say "building $VENV with $python from $LOCK (log: $log)"
"$python" -m venv "$VENV" >"$log" 2>&1 ||
  die "creating $VENV with $python failed; the log is $log"
uv_pin=$(grep -E '^uv==' "$MAIN_LOCK" | cut -d' ' -f1)
install_with_uv() {
  [ -n "$uv_pin" ] &&
    "$VENV/bin/python" -m pip install --disable-pip-version-check "$uv_pin" \
      >>"$log" 2>&1 &&
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps \
      -r "$LOCK" >>"$log" 2>&1
}
if ! install_with_uv; then
  say "uv could not install the lock (see $log); installing with pip"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check \
      --no-deps -r "$LOCK" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "installing $LOCK failed; the full log is $log"
  fi
fi
touch "$stamp"
say "ready in $((SECONDS - start)) s"
