#!/usr/bin/env bash
# Interop tests: ferrows against real peers, both directions.
#
#   interop/run.sh [-v]      (-v prints every case's output, not only failures)
#
# Peers: Python `websockets`, Node `ws` and headless Chromium (Debian's,
# driven by playwright-core); install them with scripts/install-interop.sh.
# ferrows plays the client (crates/ferrows/examples/interop/client.rs)
# against the Python and Node echo servers, and the server (`ferrows echo`
# and crates/ferrows/examples/interop/server.rs, ws:// and wss://) for the
# Python, Node and Chromium clients; with and without permessage-deflate on
# either side, text and binary of 0 B to 16 MiB, fragmented messages both
# ways, Pings both ways and close codes both ways. The command protocol the
# peers share is described in crates/ferrows/examples/interop/common.rs.
#
# Servers listen on 127.0.0.1 port 0 (the port is read from the line they
# print); every wait is bounded; every process started here is killed on
# exit. Exit status 0 only if every case passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
verbose=""
[[ "${1:-}" == "-v" ]] && verbose=1
started=$SECONDS

# Each case gets at most this long (its own waits are bounded at 60 s each).
CASE_TIMEOUT=${INTEROP_CASE_TIMEOUT:-300}

work="$(mktemp -d "${TMPDIR:-/tmp}/ferrows-interop.XXXXXX")"
# The Chromium client (tools/test-support/chromium.mjs) notes there the pid
# of every browser it starts, each the leader of its process group, and
# makes its profiles here: what a killed client leaves is removed below.
export FERROWS_TEST_PIDFILE="$work/browser-pids"
export FERROWS_TEST_TMP="$work"
: >"$FERROWS_TEST_PIDFILE"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  while read -r pid; do
    [[ -n $pid ]] && kill -KILL -- "-$pid" 2>/dev/null
  done <"$FERROWS_TEST_PIDFILE"
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n==> %s\n' "$*"; }
die() { echo "interop: $*" >&2; exit 1; }

# --- the peers -------------------------------------------------------------
if [[ -x interop/.venv/bin/python ]]; then python=interop/.venv/bin/python; else python=python3; fi
$python -c 'import websockets' 2>/dev/null || die "Python websockets missing: run scripts/install-interop.sh"
[[ -d interop/node/node_modules/ws && -d interop/node/node_modules/playwright-core ]] ||
  die "Node packages missing: run scripts/install-interop.sh"
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing: run scripts/install-interop.sh"
command -v openssl >/dev/null || die "openssl missing: run scripts/install-interop.sh"
echo "peers: Python $($python -c 'import sys, websockets; print(sys.version.split()[0], "websockets", websockets.__version__)')," \
  "Node $(node --version) ws $(node -p 'require("./interop/node/node_modules/ws/package.json").version')," \
  "playwright-core $(node -p 'require("./interop/node/node_modules/playwright-core/package.json").version')," \
  "$(/usr/bin/chromium --version 2>/dev/null | head -n 1)"

step "building ferrows (release): the CLI and the interop examples"
cargo build --release -p ferrows-cli || die "cargo build failed"
cargo build --release -p ferrows --example interop || die "cargo build failed"
ferrows="$root/target/release/ferrows"
interop="$root/target/release/examples/interop"

step "test certificate for wss://"
cert="$work/cert.pem"
key="$work/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$key" -out "$cert" -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" 2>"$work/openssl.log" ||
  { cat "$work/openssl.log"; die "openssl failed"; }
# Chromium trusts it through --ignore-certificate-errors-spki-list.
spki="$(openssl x509 -in "$cert" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)"
echo "self-signed certificate for 127.0.0.1, SPKI sha256 $spki"

# start_server VAR COMMAND...: starts a server, waits (bounded) for its
# "listening on URL" line and stores URL in VAR.
start_server() {
  local var=$1
  shift
  local log="$work/server-$var.log"
  : >"$log"
  "$@" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local i url
  for ((i = 0; i < 300; i++)); do
    url="$(sed -n 's#^listening on \(wss\{0,1\}://[0-9.]*:[0-9]*\).*#\1#p' "$log" | head -n 1)"
    if [[ -n $url ]]; then
      printf -v "$var" '%s' "$url"
      printf '%-16s %s\n' "$var" "$url"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log"
  die "server $var ($*) did not start"
}

step "servers"
start_server FERROWS_ECHO "$ferrows" echo --port 0
start_server FERROWS_ECHO_NC "$ferrows" echo --port 0 --no-compression
start_server FERROWS_FRAGS "$interop" server --port 0 --send-frame-size 16384
start_server FERROWS_WSS "$interop" server --port 0 --cert "$cert" --key "$key"
start_server FERROWS_WSS_NC "$interop" server --port 0 --cert "$cert" --key "$key" --no-compression
start_server PYTHON "$python" interop/python/echo_server.py --port 0
start_server PYTHON_NC "$python" interop/python/echo_server.py --port 0 --no-compression
start_server PYTHON_WSS "$python" interop/python/echo_server.py --port 0 --cert "$cert" --key "$key"
start_server NODE node interop/node/echo_server.mjs --port 0
start_server NODE_NC node interop/node/echo_server.mjs --port 0 --no-compression
start_server NODE_WSS node interop/node/echo_server.mjs --port 0 --cert "$cert" --key "$key"

passed=()
failed=()
# run_case NAME COMMAND...: one bounded case; its output is shown on failure.
run_case() {
  local name=$1
  shift
  local log="$work/case.log"
  local t0=$SECONDS
  if timeout -k 10 "$CASE_TIMEOUT" "$@" >"$log" 2>&1; then
    passed+=("$name")
    printf 'PASS %4ss  %s\n' "$((SECONDS - t0))" "$name"
    [[ -n $verbose ]] && sed 's/^/    | /' "$log"
  else
    local status=$?
    failed+=("$name")
    printf 'FAIL %4ss  %s (exit %s%s)\n' "$((SECONDS - t0))" "$name" "$status" \
      "$([[ $status == 124 ]] && echo ", over ${CASE_TIMEOUT}s")"
    echo "    \$ $*"
    tail -n 40 "$log" | sed 's/^/    | /'
  fi
}

step "ferrows as the client: interop client against Python websockets and Node ws"
for peer in PYTHON NODE; do
  plain=${!peer}
  nc_var=${peer}_NC
  wss_var=${peer}_WSS
  [[ $peer == PYTHON ]] && name="python websockets" || name="node ws"
  run_case "ferrows client -> $name server, deflate both" \
    "$interop" client "$plain" --commands --expect-compression yes
  run_case "ferrows client (no deflate) -> $name server" \
    "$interop" client "$plain" --commands --no-compression --expect-compression no
  run_case "ferrows client -> $name server (no deflate)" \
    "$interop" client "${!nc_var}" --commands --expect-compression no
  run_case "ferrows client sending 16 KiB fragments -> $name server, deflate" \
    "$interop" client "$plain" --commands --send-frame-size 16384 --expect-compression yes
  run_case "ferrows client -> $name server over wss, deflate" \
    "$interop" client "${!wss_var}" --commands --ca "$cert" --expect-compression yes
done

step "ferrows as the server: Python websockets and Node ws clients"
for peer in python node; do
  if [[ $peer == python ]]; then
    name="python websockets"
    peer_client=("$python" interop/python/client.py)
  else
    name="node ws"
    peer_client=(node interop/node/client.mjs)
  fi
  run_case "$name client -> ferrows echo, deflate both" \
    "${peer_client[@]}" "$FERROWS_ECHO" --expect-compression yes
  run_case "$name client (no deflate) -> ferrows echo" \
    "${peer_client[@]}" "$FERROWS_ECHO" --no-compression --expect-compression no
  run_case "$name client -> ferrows echo --no-compression" \
    "${peer_client[@]}" "$FERROWS_ECHO_NC" --expect-compression no
  run_case "$name client -> ferrows sending 16 KiB fragments, deflate" \
    "${peer_client[@]}" "$FERROWS_FRAGS" --commands --expect-compression yes
  run_case "$name client -> ferrows over wss, deflate" \
    "${peer_client[@]}" "$FERROWS_WSS" --commands --ca "$cert" --expect-compression yes
  run_case "$name client -> ferrows over wss (no deflate)" \
    "${peer_client[@]}" "$FERROWS_WSS_NC" --commands --ca "$cert" --expect-compression no
done

step "ferrows as the server: headless Chromium"
chrome=(node interop/node/chromium.mjs)
run_case "chromium -> ferrows echo, deflate" "${chrome[@]}" "$FERROWS_ECHO" --expect-compression yes
run_case "chromium -> ferrows echo --no-compression" "${chrome[@]}" "$FERROWS_ECHO_NC" --expect-compression no
run_case "chromium -> ferrows sending 16 KiB fragments, deflate" \
  "${chrome[@]}" "$FERROWS_FRAGS" --commands --expect-compression yes
run_case "chromium -> ferrows over wss (SPKI pin), deflate" \
  "${chrome[@]}" "$FERROWS_WSS" --commands --spki "$spki" --expect-compression yes
run_case "chromium -> ferrows over wss (SPKI pin, no deflate)" \
  "${chrome[@]}" "$FERROWS_WSS_NC" --commands --spki "$spki" --expect-compression no
run_case "chromium refuses the wss certificate without the pin" \
  "${chrome[@]}" "$FERROWS_WSS" --expect-untrusted

step "summary ($((SECONDS - started)) s)"
if ((${#failed[@]})); then
  for log in "$work"/server-*.log; do
    # What the servers said beyond their "listening" line.
    if [[ $(wc -l <"$log") -gt 1 ]]; then
      echo "-- $(basename "$log" .log):"
      tail -n 20 "$log" | sed 's/^/    | /'
    fi
  done
fi
for name in "${failed[@]}"; do echo "FAILED: $name"; done
echo "interop: ${#passed[@]} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
