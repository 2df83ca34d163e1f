#!/usr/bin/env bash
# Installs Debian's redis-server (as root), for the Redis broker's tests
# (crates/ferrows-hub/tests/redis_broker.rs start their own redis-server
# processes). Idempotent: does nothing when redis-server is on PATH already.
#
#   scripts/install-redis.sh
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "redis-server present: $(redis-server --version)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package may start a system-wide server on port 6379; the tests run
# their own on free ports, so that one is not needed.
if command -v systemctl >/dev/null 2>&1; then
  "${sudo[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
echo "redis-server installed: $(redis-server --version)"
