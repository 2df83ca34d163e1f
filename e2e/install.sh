#!/usr/bin/env bash
# Installs what the end-to-end tests of the `ferrows serve` demo need
# (e2e/run.sh), on Debian, as root, idempotently: Chromium from Debian (the
# tests drive /usr/bin/chromium; no browser download), redis-server (through
# scripts/install-redis.sh), Node.js and npm if absent, and `npm ci` of
# e2e/ (playwright-core as locked) unless node_modules already holds it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
updated=""
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  [[ -n $updated ]] || { "${sudo[@]}" apt-get update -qq && updated=1; }
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
}

[[ -x /usr/bin/chromium ]] || apt_install chromium
apt_install fonts-dejavu-core
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
scripts/install-redis.sh >/dev/null

locked="$(node -p 'require("./e2e/package-lock.json").packages["node_modules/playwright-core"].version')"
have="$(node -p 'try { require("./e2e/node_modules/playwright-core/package.json").version } catch { "" }')"
if [[ $have != "$locked" ]]; then
  (cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "e2e: ready ($(/usr/bin/chromium --version 2>/dev/null | head -n 1), $(redis-server --version | cut -d' ' -f1-3), node $(node --version), playwright-core $locked)"
