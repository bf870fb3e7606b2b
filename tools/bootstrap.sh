#!/usr/bin/env bash
# Builds .venv/ from requirements.lock with a checked Python 3.10, once per
# lock: a stamp keyed on the hash of the lock and setup.py skips the work when
# nothing changed. An interrupted or failed first build leaves no .venv behind.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
LOCK=requirements.lock

say() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

is_py310() {
  [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1
}

# An explicit PYTHON that does not work is an error even when the
# environment is already built: the user asked for that interpreter.
if [ -n "${PYTHON:-}" ] && ! is_py310 "$PYTHON"; then
  die "PYTHON=$PYTHON is not a working Python 3.10 interpreter; point PYTHON at one (TFX 1.16 needs 3.10)."
fi

key=$(cat "$LOCK" setup.py | sha256sum | cut -c1-16)
stamp="$VENV/.installed-$key"
[ -f "$stamp" ] && exit 0

find_python() {
  # An explicit PYTHON is the user's choice: use it or fail, never fall back.
  if [ -n "${PYTHON:-}" ]; then
    is_py310 "$PYTHON" && { echo "$PYTHON"; return; }
    die "PYTHON=$PYTHON is not a working Python 3.10 interpreter; point PYTHON at one (TFX 1.16 needs 3.10)."
  fi
  local cand
  for cand in python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if is_py310 "$cand"; then command -v "$cand"; return; fi
  done
  # pyenv installs a python3.10 shim that fails unless PYENV_VERSION is set.
  if command -v pyenv >/dev/null 2>&1; then
    for cand in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      if is_py310 "$cand"; then echo "$cand"; return; fi
    done
  fi
  die "no Python 3.10 found (tried \$PYTHON, python3.10, pyenv); install CPython 3.10 (e.g. 'pyenv install 3.10') or set PYTHON=/path/to/python3.10."
}

fresh=0
if [ -d "$VENV" ] && { [ ! -f "$VENV/.complete" ] || ! is_py310 "$VENV/bin/python"; }; then
  say "removing an incomplete $VENV from an earlier interrupted build"
  rm -rf "$VENV"
fi
if [ ! -d "$VENV" ]; then
  python=$(find_python)
  fresh=1
  # From here on, a failure must not leave a half-built environment behind.
  trap 'rc=$?; if [ $rc -ne 0 ]; then rm -rf "$VENV"; fi' EXIT
  trap 'exit 130' INT TERM
  say "creating $VENV with $python"
  "$python" -m venv "$VENV"
fi

log=$(mktemp -t taxi-demand-install.XXXXXX)
say "installing the locked environment from $LOCK (about 3.3 GB, ~1 min with uv, ~4 min with pip; log: $log)"
start=$SECONDS
# uv (the lock's own pin) installs the ~250 wheels in parallel: about 30 s
# against pip's 4 minutes, which is most of a fresh `make test`'s setup. If
# uv itself cannot be installed, pip does the same install. --no-deps: the
# lock already pins the whole tree, so nothing is resolved.
uv_pin=$(grep -E '^uv==' "$LOCK" | cut -d' ' -f1)
install_with_uv() {
  [ -n "$uv_pin" ] &&
    "$VENV/bin/python" -m pip install --disable-pip-version-check "$uv_pin" \
      >"$log" 2>&1 &&
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps \
      -r "$LOCK" >>"$log" 2>&1 &&
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps \
      --no-build-isolation -e . >>"$log" 2>&1
}
install_with_pip() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps \
      -r "$LOCK" >>"$log" 2>&1 &&
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps \
      --no-build-isolation -e . >>"$log" 2>&1
}
if ! install_with_uv; then
  say "uv could not install the lock (see $log); installing with pip"
  if ! install_with_pip; then
    tail -n 20 "$log" >&2
    die "installing $LOCK failed; the full log is $log"
  fi
fi
# Neither installer writes bytecode, and where PYTHONDONTWRITEBYTECODE is set
# (as in CI) no run writes it either: every process then compiles what it
# imports, about 0.3 s of each metadata command. Compile what those commands
# and the report import (pyarrow imports pandas on its first cast); all of
# site-packages (TensorFlow included) would take minutes.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
fast_path=(ml_metadata grpc google/protobuf absl attr typing_extensions.py
           numpy pyarrow pandas duckdb sqlglot matplotlib mpl_toolkits PIL
           tensorflow_metadata pyparsing dateutil pytz cloudpickle six.py
           defusedxml packaging kiwisolver cycler)
targets=()
for pkg in "${fast_path[@]}"; do
  [ -e "$site/$pkg" ] && targets+=("$site/$pkg")
done
"$VENV/bin/python" -m compileall -q -j 0 "${targets[@]}" taxi_demand pipeline \
  >>"$log" 2>&1 || say "could not precompile the fast path (see $log); commands start slower"
# A daily run imports ~7,700 modules (TensorFlow, TFX, TFMA, Beam): without
# their bytecode every run compiles them again, about 10 CPU-s of each. Import
# what a run imports once here, with bytecode writing on (~20 s).
"$VENV/bin/python" tools/precompile_pipeline.py >>"$log" 2>&1 ||
  say "could not precompile the pipeline's imports (see $log); daily runs start slower"
rm -f "$VENV"/.installed-*
touch "$VENV/.complete" "$stamp"
say "environment ready in $((SECONDS - start)) s"
