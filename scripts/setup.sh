#!/usr/bin/env bash
# make setup: bring this checkout to a state where demo, test, lint and bench run.
# Idempotent and quick when nothing changed: each step keeps a stamp keyed by the
# hash of what it installs from, and does nothing when the stamp matches.
#   1. Debian packages (only when running as root and only the missing ones)
#   2. .venv at the repository root with the project and its dev extras
#   3. npm packages (configurable-http-proxy for JupyterHub)
#   4. cached test binaries (Kubernetes control plane), outside the repository
# `setup.sh runtime` (make demo) does 1-3 with only what the product runs needs: a
# fresh machine reaches the demo without building the test control plane.
set -euo pipefail
MODE=${1:-all}
case "$MODE" in all|runtime) ;; *) echo "usage: scripts/setup.sh [all|runtime]" >&2; exit 2;; esac
cd "$(dirname "$0")/.."
ROOT=$(pwd)
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- 1. Debian packages --------------------------------------------------------
# chromium: browser tests; bubblewrap+socat: the local no-egress sandbox;
# postgresql: the PostgreSQL store tests; clamav: airlock malware scanning;
# gcc, libc6-dev, python3-dev, libssl-dev: build audit/_speedups.pyx (verify's fast path).
DEB_PACKAGES=(bubblewrap socat gcc libc6-dev python3-dev libssl-dev)
[ "$MODE" = all ] && DEB_PACKAGES+=(chromium postgresql clamav clamav-daemon xxd)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The postgresql package starts a system cluster; tests start their own.
    if command -v pg_lsclusters >/dev/null; then
      pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
        pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
      done
    fi
  else
    say "missing Debian packages (run as root to install): ${missing[*]}"
  fi
fi

# --- 2. Python virtualenv ------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
# The compiled module is built by this install too: a change to it reinstalls.
# Installed under the images' constraints, so the local backend runs the versions the
# images pin (images/constraints.txt; hack/pins.py --check in make lint).
want=$(cat pyproject.toml setup.py audit/_speedups.pyx images/constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.enclave-stamp 2>/dev/null)" != "$want" ]; then
  say "installing Python packages into .venv (first time takes a few minutes)"
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' -c images/constraints.txt >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; say "pip install failed (output above)"; exit 1
  fi
  rm -f "$log"
  echo "$want" > .venv/.enclave-stamp
fi

# --- 3. npm packages -------------------------------------------------------------
want=$(cat package.json $( [ -f package-lock.json ] && echo package-lock.json ) | sha256sum | cut -c1-16)
if [ "$(cat node_modules/.enclave-stamp 2>/dev/null)" != "$want" ]; then
  say "installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
  echo "$want" > node_modules/.enclave-stamp
fi

# --- 4. cached test binaries ------------------------------------------------------
[ "$MODE" = runtime ] && { say "ready (runtime only: make test builds the test binaries)"; exit 0; }
for step in hack/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
say "ready"
