#!/usr/bin/env bash
# Runs Autobahn|Testsuite against ferrows in one role and compares every
# case with the expected results kept in this directory.
#
#   autobahn/run.sh server [--full]   ferrows echo server vs fuzzingclient
#   autobahn/run.sh client [--full]   ferrows autobahn-client vs fuzzingserver
#   autobahn/run.sh server-tls [--full]   the echo server over wss:// (expected
#                                     results: the same as the server's)
#
# The default run covers cases 1.* to 10.* and a sample of the compression
# cases that hits every window-bits and context-takeover variant; --full runs
# all 517 cases (12 to 60 minutes per role, depending on the machine: the
# suite compresses in Python). Reports land in
# autobahn/reports/{servers,clients}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
shared="${FERROWS_SHARED:-$root/../shared}"
role="${1:?usage: run.sh server|client [--full]}"
full="${2:-}"
bin="$root/target/release/ferrows"

if [[ "$full" == "--full" ]]; then
  cases='["*"]'
else
  # Compression sample: the smallest message size of every data set (12.x.1)
  # and of every offer/accept variant (13.x.1: context takeover, window
  # bits 9 and 15, the fallback offers of 13.7), plus auto-fragmented
  # messages (x.y.11). Larger sizes only repeat the same code paths and
  # cost minutes each in the suite's Python compressor.
  cases='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","8.*","9.*","10.*",
    "12.1.1","12.2.1","12.3.1","12.4.1","12.5.1","12.1.11",
    "13.1.1","13.2.1","13.3.1","13.4.1","13.5.1","13.6.1","13.7.1","13.1.11","13.7.11"]'
fi

[[ -x "$bin" ]] || cargo build --release -p ferrows-cli --manifest-path "$root/Cargo.toml"
"$shared/autobahn/setup.sh" >/dev/null

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "$role" in
  server|server-tls)
    tls_args=()
    if [[ "$role" == server-tls ]]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
      tls_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    fi
    "$bin" echo --port 0 "${tls_args[@]}" >"$work/echo.out" 2>"$work/echo.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q listening "$work/echo.out" 2>/dev/null && break; sleep 0.1; done
    url="$(sed -n 's/^listening on //p' "$work/echo.out")"
    [[ -n "$url" ]] || { echo "echo server did not start"; cat "$work/echo.err"; exit 1; }
    cat >"$work/fuzzingclient.json" <<JSON
{"outdir": "./reports/servers", "servers": [{"agent": "ferrows", "url": "$url"}],
 "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
    "$shared/autobahn/wstest.sh" "$work" -m fuzzingclient -s fuzzingclient.json >"$work/wstest.log" 2>&1 \
      || { tail -20 "$work/wstest.log"; exit 1; }
    index="$work/reports/servers/index.json"
    ;;
  client)
    port="$(free_port)"
    cat >"$work/fuzzingserver.json" <<JSON
{"url": "ws://127.0.0.1:$port", "outdir": "./reports/clients",
 "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
    # -u 0: no embedded web server (it would want port 8080).
    "$shared/autobahn/wstest.sh" "$work" -m fuzzingserver -s fuzzingserver.json -u 0 >"$work/wstest.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do
      ss -ltn "sport = :$port" | grep -q LISTEN && break
      kill -0 "${pids[0]}" 2>/dev/null || { echo "fuzzingserver died:"; tail -20 "$work/wstest.log"; exit 1; }
      sleep 0.2
    done
    "$bin" autobahn-client --url "ws://127.0.0.1:$port" --agent ferrows
    # wstest.sh copies the reports back when wstest ends: stop it now.
    kill -TERM "${pids[0]}"
    wait "${pids[0]}" 2>/dev/null || true
    pids=()
    index="$work/reports/clients/index.json"
    ;;
  *) echo "unknown role $role"; exit 2 ;;
esac

mkdir -p "$here/reports"
rm -rf "$here/reports/$role"
cp -r "$(dirname "$index")" "$here/reports/$role"
expected="$here/expected-${role%-tls}.json"
python3 "$here/compare.py" "$here/reports/$role/index.json" "$expected" ${full:+--full}
