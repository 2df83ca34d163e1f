#!/usr/bin/env bash
# Runs a few Autobahn server cases against `ferrows echo` again and again,
# with the CPUs kept busy, to expose timing races that one quiet run hides.
# Prints, per run, the cases that were not OK and the resets the kernel
# counted meanwhile (nstat: RSTs sent, connections aborted on close or on
# data after close).
#
#   autobahn/stress.sh [RUNS] [server|server-tls]
#
# Environment: CASES (JSON list, default the chopped-frame cases 3.*, 4.*
# and 5.15), LOAD (busy loops beside the runs, default 4).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
shared="${FERROWS_SHARED:-$root/../shared}"
runs="${1:-20}"
role="${2:-server-tls}"
cases="${CASES:-[\"3.*\",\"4.*\",\"5.15\"]}"
bin="$root/target/release/ferrows"
[[ -x "$bin" ]] || cargo build --release -p ferrows-cli --manifest-path "$root/Cargo.toml"
"$shared/autobahn/setup.sh" >/dev/null
command -v nstat >/dev/null || { echo "nstat (iproute2) is needed"; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq "${LOAD:-4}"); do
  (while :; do :; done) &
  pids+=($!)
done

tls_args=()
if [[ "$role" == server-tls ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  tls_args=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
fi

failed=0
for run in $(seq "$runs"); do
  "$bin" echo --port 0 "${tls_args[@]}" >"$work/echo.out" 2>/dev/null &
  echo_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/echo.out" 2>/dev/null && break; sleep 0.1; done
  url="$(sed -n 's/^listening on //p' "$work/echo.out")"
  rm -rf "$work/run" && mkdir "$work/run"
  cat >"$work/run/fuzzingclient.json" <<JSON
{"outdir": "./reports/servers", "servers": [{"agent": "ferrows", "url": "$url"}],
 "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
  nstat -n >/dev/null
  timeout 600 "$shared/autobahn/wstest.sh" "$work/run" -m fuzzingclient -s fuzzingclient.json >/dev/null 2>&1 || true
  resets="$(nstat -z TcpOutRsts TcpExtTCPAbortOnClose TcpExtTCPAbortOnData | tail -n +2 | awk '{printf "%s=%s ", $1, $2}')"
  kill "$echo_pid" 2>/dev/null || true
  wait "$echo_pid" 2>/dev/null || true
  verdict="$(python3 - "$work/run/reports/servers/index.json" <<'PY'
import json, sys
try:
    (agent, cases), = json.load(open(sys.argv[1])).items()
except (OSError, ValueError):
    print("no report"); sys.exit(1)
bad = {c: (r["behavior"], r["behaviorClose"]) for c, r in cases.items()
       if (r["behavior"], r["behaviorClose"]) not in {("OK", "OK"), ("INFORMATIONAL", "OK")}}
print(f"{len(cases)} cases, not OK: {bad or 'none'}")
sys.exit(1 if bad else 0)
PY
  )" || failed=$((failed + 1))
  echo "run $run: $verdict; $resets"
done
echo "$failed of $runs runs had cases that were not OK"
[[ $failed == 0 ]]
