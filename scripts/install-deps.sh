#!/usr/bin/env bash
# Installs everything the test suite needs on Debian (as root), idempotently:
# rustfmt and clippy, cargo-fuzz, Python 3 for the Autobahn scripts,
# Autobahn|Testsuite itself (through ../shared/autobahn/setup.sh), the
# interop peers (scripts/install-interop.sh), redis-server for the Redis
# broker's tests, the browser end-to-end tests' packages, and the JavaScript
# client's test dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${FERROWS_SHARED:-$(pwd)/../shared}"

apt_packages=(python3 curl ca-certificates openssl iproute2)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

"$shared/autobahn/setup.sh" >/dev/null
# The interop peers: Debian's chromium, Python websockets, Node ws and
# playwright-core.
scripts/install-interop.sh
scripts/install-redis.sh
e2e/install.sh
# The JavaScript client's test dependency: playwright-core (as locked) for
# its demo test in Chromium (installed above).
(cd clients/js && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
echo "dependencies ready"
