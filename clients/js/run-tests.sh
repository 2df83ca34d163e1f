#!/bin/sh
# Runs the JavaScript client's tests against a real `ferrows serve`.
#   FERROWS_BIN  the ferrows binary (default: target/release/ferrows in the repo root)
#   arguments: test files (default: all) and options of `node --test`
#   (e.g. test/recovery.test.mjs, --test-name-pattern=presence)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
FERROWS_BIN=${FERROWS_BIN:-target/release/ferrows}
case $FERROWS_BIN in /*) ;; *) FERROWS_BIN="$root/$FERROWS_BIN" ;; esac
export FERROWS_BIN
if [ ! -x "$FERROWS_BIN" ]; then
    echo "run-tests.sh: no ferrows binary at $FERROWS_BIN (cargo build --release -p ferrows-cli, or set FERROWS_BIN)" >&2
    exit 1
fi
ws_flag=
if ! node -e 'if (typeof WebSocket !== "function") process.exit(1)' 2>/dev/null; then
    # Node 20.10 to 21 has the WebSocket client behind a flag; 22+ has it by default.
    if node --experimental-websocket -e 'if (typeof WebSocket !== "function") process.exit(1)' 2>/dev/null; then
        ws_flag=--experimental-websocket
    else
        echo "run-tests.sh: this Node ($(node --version)) has no WebSocket client; Node 20.10 or later is needed" >&2
        exit 1
    fi
fi
cd "$here"
# Arguments: test files (default: all of test/*.test.mjs) and `node --test`
# options (which node wants before the files).
options=
files=
for arg in "$@"; do
    case $arg in -*) options="$options $arg" ;; *) files="$files $arg" ;; esac
done
[ -n "$files" ] || files=$(echo test/*.test.mjs)
# One file at a time: each starts its own servers; a hang is cut by --test-timeout.
# shellcheck disable=SC2086 # word splitting wanted
exec node $ws_flag --no-warnings=ExperimentalWarning --test --test-concurrency=1 --test-timeout=60000 $options $files
