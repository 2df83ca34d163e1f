#!/usr/bin/env bash
# End-to-end tests of the `ferrows serve` browser demo in headless Chromium
# (e2e/demo.test.mjs): two pages chatting in one room, recovery of missed
# messages across a node restart (Redis broker, two nodes), reconnection
# after a restart of a memory-broker server, each transport forced, the
# fallback through proxies that strip Upgrade or buffer, and the screenshots
# docs/demo-chat.png and docs/demo-two-pages.png.
#
#   e2e/run.sh            installs what is missing (e2e/install.sh), builds
#                         ferrows (release), runs every test
#
# Environment: E2E_WAIT_MS (bound of every single wait, default 15000),
# E2E_SCREENSHOTS (directory for the screenshots, default docs/).
# Exit status 0 only if every test passed. Every process started is killed
# on exit, also on failure or interruption.
set -uo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/ferrows-e2e.XXXXXX")"
# tools/test-support/process.mjs notes there the pid of every process it
# starts, and makes its temporary directories here.
export FERROWS_TEST_PIDFILE="$work/pids"
export FERROWS_TEST_TMP="$work"
: >"$FERROWS_TEST_PIDFILE"
runner=""
cleanup() {
  local pid
  [[ -n $runner ]] && kill -- "$runner" 2>/dev/null
  # Each process the tests started leads a process group of its own.
  while read -r pid; do
    [[ -n $pid ]] && kill -KILL -- "-$pid" 2>/dev/null
  done <"$FERROWS_TEST_PIDFILE"
  [[ -n $runner ]] && wait "$runner" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "e2e: $*" >&2; exit 1; }

ready() {
  [[ -x /usr/bin/chromium ]] && command -v redis-server >/dev/null && command -v node >/dev/null &&
    node -e 'const l = require("./e2e/package-lock.json").packages["node_modules/playwright-core"].version;
             process.exit(require("./e2e/node_modules/playwright-core/package.json").version === l ? 0 : 1)' 2>/dev/null
}
ready || e2e/install.sh || die "e2e/install.sh failed"

echo "==> building ferrows (release)"
cargo build --release -p ferrows-cli || die "cargo build failed"

echo "==> running the demo tests in $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
# In this process (no --test: no subprocess that a kill of $runner would miss).
node --test-reporter=spec e2e/demo.test.mjs &
runner=$!
wait "$runner"
status=$?
runner=""
exit "$status"
