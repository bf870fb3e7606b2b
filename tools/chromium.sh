#!/usr/bin/env bash
# Installs Debian's Chromium for the report's browser test, once: the test
# drives /usr/bin/chromium through Playwright (Playwright's own browser
# download never runs). Does nothing when it is there; otherwise needs
# apt-get and root (or sudo), and fails in one line when it cannot.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
say() { echo "chromium: $*" >&2; }

[ -x "$CHROMIUM" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  say "error: no $CHROMIUM and no apt-get here; install Chromium and set CHROMIUM=/path/to/chromium"
  exit 1
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo -n)
  else
    say "error: no $CHROMIUM, and installing it needs root: run 'sudo apt-get install chromium' once"
    exit 1
  fi
fi
log=$(mktemp -t taxi-demand-chromium.XXXXXX)
say "installing Debian's chromium for the report test (log: $log)"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
if ! "${run[@]}" apt-get install -y -q --no-install-recommends chromium >"$log" 2>&1; then
  # A fresh machine's package lists may be missing or stale.
  "${run[@]}" apt-get update -q >>"$log" 2>&1 || true
  if ! "${run[@]}" apt-get install -y -q --no-install-recommends chromium >>"$log" 2>&1; then
    tail -n 5 "$log" >&2
    say "error: installing chromium failed; the full log is $log"
    exit 1
  fi
fi
say "ready in $((SECONDS - start)) s"
