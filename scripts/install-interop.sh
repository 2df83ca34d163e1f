#!/usr/bin/env bash
# Installs the peers of the interop tests (interop/run.sh) on Debian, as
# root, idempotently: Chromium and openssl from Debian, Python `websockets`
# (latest) from PyPI into the system Python (or into interop/.venv where
# pip refuses an externally managed environment), and `npm ci` of
# interop/node (ws and playwright-core as locked; no browser download: the
# tests drive Debian's /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

updated=""
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  [[ -n $updated ]] || { apt-get update -qq && updated=1; }
  apt-get install -y -qq "${missing[@]}"
}

apt_install chromium openssl ca-certificates
# Python 3 and Node.js usually come with the machine (maybe not from Debian).
command -v python3 >/dev/null || apt_install python3 python3-pip python3-venv
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

if [[ -x interop/.venv/bin/python ]]; then
  interop/.venv/bin/python -m pip install -q --upgrade websockets
else
  pip_log="$(mktemp)"
  if ! python3 -m pip install -q --upgrade --root-user-action=ignore websockets 2>"$pip_log"; then
    if grep -q externally-managed "$pip_log"; then
      apt_install python3-venv
      python3 -m venv interop/.venv
      interop/.venv/bin/python -m pip install -q --upgrade websockets
    else
      cat "$pip_log" >&2
      rm -f "$pip_log"
      exit 1
    fi
  fi
  rm -f "$pip_log"
fi

(cd interop/node && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
echo "interop peers ready"
