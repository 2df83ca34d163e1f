#!/usr/bin/env bash
# Pub/sub fan-out benchmark of `ferrows serve`: SUBSCRIBERS WebSocket
# connections subscribe to one channel, one publisher publishes RATE
# publications/s into it for SECONDS seconds (`ferrows bench-pubsub`), and
# every subscriber checks it got every publication once and in order.
#
#   scripts/bench-pubsub.sh
#   SUBSCRIBERS=10000 RATE=1000 scripts/bench-pubsub.sh
#
# The server runs under `taskset -c $BENCH_SERVER_CPU`, the load generator
# under `taskset -c $BENCH_CLIENT_CPU`, both with `ulimit -n` raised to 65536
# (or the hard limit). The report (delivered messages/s, latency p50/p99/max,
# delivery errors, CPU use of both sides) goes to stdout and, in markdown, to
# target/bench-pubsub.md. The exit status is the load generator's: non-zero
# when a delivery was missing, duplicated or out of order.
#
# Environment:
#   SUBSCRIBERS       subscriber connections (default 10000)
#   RATE              publications per second (default 100)
#   SECONDS           seconds of publishing (default 10; read from the
#                     environment this script was started with)
#   BENCH_PUBLISHER   "websocket" (the `publish` command, default) or "http"
#                     (POST /api/publish)
#   BENCH_CHANNEL     channel (default bench:load)
#   BENCH_SERVER_ARGS extra `ferrows serve` arguments, e.g.
#                     "--config bench.toml" (default: none)
#   BENCH_SERVER_CPU  core for the server (default 1)
#   BENCH_CLIENT_CPU  core for the load generator (default 0)
#   BENCH_NO_BUILD=1  use the binary already built

# Bash counts time in SECONDS; read the value given in the environment
# before anything else.
duration="$(printenv SECONDS || true)"
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

subscribers="${SUBSCRIBERS:-10000}"
rate="${RATE:-100}"
duration="${duration:-10}"
publisher="${BENCH_PUBLISHER:-websocket}"
channel="${BENCH_CHANNEL:-bench:load}"
read -ra server_args <<<"${BENCH_SERVER_ARGS:-}"
server_cpu="${BENCH_SERVER_CPU:-1}"
client_cpu="${BENCH_CLIENT_CPU:-0}"
report="$root/target/bench-pubsub.md"
ferrows="$root/target/release/ferrows"
api_key=bench

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v taskset >/dev/null || die "taskset (util-linux) is needed"
cpus="$(nproc --all)"
((server_cpu < cpus && client_cpu < cpus)) || die "cores $server_cpu and $client_cpu: this machine has $cpus"
[[ "$publisher" == websocket || "$publisher" == http ]] || die "BENCH_PUBLISHER must be websocket or http"

if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  log "building ferrows (release)"
  cargo build --release -p ferrows-cli >&2
fi
[[ -x "$ferrows" ]] || die "$ferrows is missing (build it, or unset BENCH_NO_BUILD)"

# One descriptor per subscriber on each side, plus some for the rest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited ]] && (("$(ulimit -n)" < subscribers + 100)); then
  die "open-file limit $(ulimit -n) is below SUBSCRIBERS=$subscribers + 100"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting ferrows serve on core $server_cpu"
taskset -c "$server_cpu" "$ferrows" serve --port 0 --api-key "$api_key" "${server_args[@]}" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
address=""
for _ in $(seq 100); do # 10 s at most
  address="$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$work/server.out" | head -n1)"
  [[ -n "$address" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$address" ]]; then
  cat "$work/server.err" >&2
  die "ferrows serve did not print its listening line within 10 s"
fi

client_args=(--url "ws://$address/ws" --subscribers "$subscribers" --rate "$rate" --duration "$duration"
  --channel "$channel" --server-pid "$server_pid" --json)
[[ "$publisher" == http ]] && client_args+=(--api-url "http://$address" --api-key "$api_key")
log "ferrows bench-pubsub on core $client_cpu: $subscribers subscribers, $rate publications/s for $duration s ($publisher publisher)"
load_before="$(uptime)"
status=0
line="$(taskset -c "$client_cpu" "$ferrows" bench-pubsub "${client_args[@]}")" || status=$?
load_after="$(uptime)"

server_state="running"
if ! kill -0 "$server_pid" 2>/dev/null; then
  server_state="EXITED (see its log below)"
fi
server_rss="$(awk '/^VmRSS:/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$server_pid/status" 2>/dev/null || echo '?')"

# field NAME: a number from the client's JSON line.
field() { grep -o "\"$1\":[-0-9.a-z]*" <<<"$line" | head -n1 | cut -d: -f2; }
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "") print "?"; else printf "%.0f", v }' | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

{
  echo "## ferrows pub/sub fan-out benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($cpus cores)."
  echo "\`ferrows serve --api-key ...${server_args[*]:+ ${server_args[*]}}\` (memory broker) on core $server_cpu; \`ferrows bench-pubsub\` on core $client_cpu;"
  echo "channel \`$channel\`, $publisher publisher. Load: before \`${load_before#*load average: }\`, after \`${load_after#*load average: }\`."
  echo
  if [[ -z "$line" ]]; then
    echo "**The load generator failed before its report (exit status $status).**"
  else
    echo "| subscribers | publications/s (sent) | publications | delivered | delivered msgs/s | latency p50 / p99 / max, ms | missing / duplicated / out of order | CPU % server / client |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| $(fmt_int "$(field subscribers)") | $(field rate) ($(field publish_rate)) | $(fmt_int "$(field publications)") | $(fmt_int "$(field delivered)") | $(fmt_int "$(field delivered_per_sec)") | $(field p50) / $(field p99) / $(field max) | $(field missing) / $(field duplicated) / $(field out_of_order) | $(field server_cpu_pct) / $(field client_cpu_pct) |"
    echo
    echo "Setup (connect + subscribe of every subscriber, then until the $(fmt_int "$(field setup_pushes)") join pushes it caused stopped): $(field setup_s) s. Subscribers lost: $(field subscribers_lost); publish errors: $(field publish_errors); result: $([[ $status == 0 ]] && echo ok || echo "**FAILED** (exit status $status)")."
    echo
    echo "Delivered msgs/s: first deliveries over the window from the first publication to the last delivery"
    echo "(or the 10 s drain timeout); latency: receive time - publish time; CPU: % of one core over that window."
  fi
  echo
  echo "Server after the run: $server_state, RSS $server_rss."
  echo
  echo "<details><summary>load generator output</summary>"
  echo
  echo '```'
  echo "$line"
  echo '```'
  echo
  echo "</details>"
} | tee "$report"
if [[ -s "$work/server.err" ]]; then
  log "server log (last 20 lines):"
  tail -n 20 "$work/server.err" >&2
fi
log "report written to ${report#"$root"/}"
exit "$status"
