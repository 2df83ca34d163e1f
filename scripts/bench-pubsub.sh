#!/usr/bin/env bash
# Pub/sub fan-out benchmark: `ferrows serve` beside uWebSockets' pub/sub
# server, under the same load from the same generator (`ferrows
# bench-pubsub`). SUBSCRIBERS WebSocket connections subscribe to one channel
# (uWebSockets: one topic, every connection subscribed), sit idle for HOLD
# seconds, then one publisher publishes RATE publications/s of about 40
# bytes into it for SECONDS seconds, and every subscriber checks it got
# every publication once and in order. ferrows is driven with its JSON
# protocol; uWebSockets with raw messages that it relays to every
# connection (`--protocol raw`).
#
#   scripts/bench-pubsub.sh
#   SUBSCRIBERS=10000 RATES="10 300" scripts/bench-pubsub.sh
#
# Reported for each server and rate: deliveries/s, latency p50/p99/max,
# server CPU per delivery, server RSS per subscriber (RSS after the setup
# minus before, over the subscribers), the server's CPU while every
# subscriber sits idle (pings included), missing, duplicated and
# out-of-order deliveries, and the load generator's own CPU (% of its
# core: at 300 publications/s to 10 000 subscribers of `serve`, 64 to 85%
# over 13 runs here, median 76%, while the server is at its limit: the
# figures are the server's). The servers run under `taskset -c
# $BENCH_SERVER_CPU`, the load generator under `taskset -c
# $BENCH_CLIENT_CPU`, with `ulimit -n` raised as far as allowed. The report
# goes to stdout and, in markdown, to target/bench-pubsub.md. The exit
# status is non-zero when ferrows lost, repeated or reordered a delivery
# (uWebSockets drops deliveries to subscribers that fall behind by design:
# those are reported, not failed).
#
# Environment:
#   SUBSCRIBERS       subscriber connections (default 10000)
#   RATES             publication rates, publications/s (default "10 300";
#                     RATE sets a single one)
#   SECONDS           seconds of publishing per run (default 10; read from
#                     the environment this script was started with)
#   HOLD              idle seconds before publishing (default 15: long enough
#                     for the allocator to return the setup's freed pages)
#   BENCH_PUBSUB_SERVERS  servers to run (default "ferrows uWebSockets";
#                     uWebSockets is skipped, with a line saying why, when
#                     scripts/uws-peer.sh cannot build it). Add
#                     "uWebSockets-padded" (after ferrows) to run uWebSockets
#                     again with its publications padded to the size of
#                     serve's publication push in the same run: equal bytes
#                     per delivery (serve's JSON envelope makes its frames
#                     larger, and the receiving kernel's work, charged to
#                     the sender on loopback, grows with them)
#   BENCH_PUBLISHER   ferrows' publisher: "websocket" (the `publish`
#                     command, default) or "http" (POST /api/publish)
#   BENCH_CHANNEL     channel (default bench:load)
#   BENCH_SERVER_ARGS extra `ferrows serve` arguments, e.g.
#                     "--config bench.toml" (default: none)
#   BENCH_SERVER_CPU  core for the server (default 1)
#   BENCH_CLIENT_CPU  core for the load generator (default 0)
#   BENCH_SOURCE_ADDRS local addresses of the subscribers, comma-separated
#                     (default: one loopback address per 500 subscribers,
#                     127.1.0.1 and on)
#   BENCH_NO_BUILD=1  use the binary already built
#   BENCH_SERVER_BIN  the ferrows binary that serves (default the one built;
#                     another build compares two versions under one load
#                     generator)

# Bash counts time in SECONDS; read the value given in the environment
# before anything else.
duration="$(printenv SECONDS || true)"
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

subscribers="${SUBSCRIBERS:-10000}"
read -ra rates <<<"${RATE:-${RATES:-10 300}}"
duration="${duration:-10}"
hold="${HOLD:-15}"
read -ra servers <<<"${BENCH_PUBSUB_SERVERS:-ferrows uWebSockets}"
publisher="${BENCH_PUBLISHER:-websocket}"
channel="${BENCH_CHANNEL:-bench:load}"
read -ra server_args <<<"${BENCH_SERVER_ARGS:-}"
server_cpu="${BENCH_SERVER_CPU:-1}"
client_cpu="${BENCH_CLIENT_CPU:-0}"
# 500 clients per loopback address (127.1.0.1, 127.1.0.2, ...): half of
# `serve`'s default max_connections_per_address.
loopback_addrs() {
  local n=$(( ($1 + 499) / 500 )) i out=""
  for ((i = 0; i < n; i++)); do out+="${out:+,}127.1.$((i / 250)).$((i % 250 + 1))"; done
  echo "$out"
}
source_addrs="${BENCH_SOURCE_ADDRS:-$(loopback_addrs "$subscribers")}"
addresses=$(($(tr -cd , <<<"$source_addrs" | wc -c) + 1))
report="$root/target/bench-pubsub.md"
ferrows="$root/target/release/ferrows"
api_key=bench

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v taskset >/dev/null || die "taskset (util-linux) is needed"
cpus="$(nproc --all)"
((server_cpu < cpus && client_cpu < cpus)) || die "cores $server_cpu and $client_cpu: this machine has $cpus"
[[ "$publisher" == websocket || "$publisher" == http ]] || die "BENCH_PUBLISHER must be websocket or http"
for s in "${servers[@]}"; do [[ "$s" == ferrows || "$s" == uWebSockets || "$s" == uWebSockets-padded ]] || die "unknown server '$s'"; done
if [[ " ${servers[*]} " == *" uWebSockets-padded "* && " ${servers[*]} " != *" ferrows "*"uWebSockets-padded"* ]]; then
  die "uWebSockets-padded takes its size from a ferrows run before it in BENCH_PUBSUB_SERVERS"
fi

if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  log "building ferrows (release)"
  cargo build --release -p ferrows-cli >&2
fi
[[ -x "$ferrows" ]] || die "$ferrows is missing (build it, or unset BENCH_NO_BUILD)"
skipped=""
if [[ " ${servers[*]} " == *" uWebSockets"* ]]; then
  if uws="$("$root/scripts/uws-peer.sh")"; then
    :
  else
    skipped="uWebSockets: skipped (see the line above: its sources are needed to build it)."
    kept=()
    for s in "${servers[@]}"; do [[ "$s" != uWebSockets* ]] && kept+=("$s"); done
    servers=("${kept[@]}")
  fi
fi
((${#servers[@]} > 0)) || die "no server to run"

# One descriptor per subscriber on each side, plus some for the rest.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited ]] && (("$(ulimit -n)" < subscribers + 100)); then
  die "open-file limit $(ulimit -n) (hard limit $(ulimit -Hn)) is below SUBSCRIBERS=$subscribers + 100"
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

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server NAME: sets server_pid and url.
start_server() {
  local name="$1" port pattern
  : >"$work/server.out"
  if [[ "$name" == ferrows ]]; then
    taskset -c "$server_cpu" "${BENCH_SERVER_BIN:-$ferrows}" serve --port 0 --api-key "$api_key" "${server_args[@]}" \
      >"$work/server.out" 2>"$work/server.err" &
    pattern='s|^listening on http://\([^ ]*\).*|\1|p'
  else
    port="$(free_port)"
    taskset -c "$server_cpu" "$uws/uws-pubsub" "$port" >"$work/server.out" 2>"$work/server.err" &
    pattern='s|^uws-pubsub listening on \([^ ,]*\).*|\1|p'
  fi
  server_pid=$!
  address=""
  for _ in $(seq 100); do # 10 s at most
    address="$(sed -n "$pattern" "$work/server.out" | head -n1)"
    [[ -n "$address" ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$address" ]]; then
    cat "$work/server.err" >&2
    die "$name did not print its listening line within 10 s"
  fi
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# field NAME LINE: a number from the load generator's JSON line.
field() { grep -o "\"$1\":[-0-9.a-z]*" <<<"$2" | head -n1 | cut -d: -f2; }
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "?"; else printf "%.0f", v }' | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

rows=()
details=()
# server|rate -> "deliveries_per_sec us_per_delivery rss_per_subscriber p50"
declare -A figures=()
# rate -> size of serve's publication push, bytes (for uWebSockets-padded)
declare -A delivery_bytes=()
status=0
load_before="$(uptime)"
for rate in "${rates[@]}"; do
  for name in "${servers[@]}"; do
    start_server "$name"
    args=(--subscribers "$subscribers" --rate "$rate" --duration "$duration" --hold "$hold"
      --server-pid "$server_pid" --source-addrs "$source_addrs" --json)
    if [[ "$name" == ferrows ]]; then
      args+=(--url "ws://$address/ws" --channel "$channel")
      [[ "$publisher" == http ]] && args+=(--api-url "http://$address" --api-key "$api_key")
    else
      args+=(--url "ws://$address/" --protocol raw)
      [[ "$name" == uWebSockets-padded ]] && args+=(--raw-bytes "${delivery_bytes[$rate]:-0}")
    fi
    log "$name: $subscribers subscribers, $rate publications/s for $duration s"
    run_status=0
    line="$(taskset -c "$client_cpu" "$ferrows" bench-pubsub "${args[@]}")" || run_status=$?
    kill -0 "$server_pid" 2>/dev/null || line="${line:-}"' (server exited)'
    stop_server
    if [[ "$name" == ferrows && $run_status != 0 ]]; then status=$run_status; fi
    if [[ -z "$line" ]]; then
      rows+=("| $name | $rate | failed before its report (exit status $run_status) | | | | | | | |")
    else
      result="ok"
      ((run_status == 0)) || result="**failed**"
      [[ "$name" == uWebSockets* && "$(field missing "$line")" != 0 ]] && result="drops by design"
      rows+=("| $name | $rate ($(field publish_rate "$line")) | $(fmt_int "$(field delivered_per_sec "$line")") | $(field p50 "$line") / $(field p99 "$line") / $(field max "$line") | $(field server_cpu_us_per_delivery "$line") | $(fmt_int "$(field server_rss_per_subscriber_b "$line")") / $(fmt_int "$(field server_rss_idle_per_subscriber_b "$line")") | $(field server_idle_cpu_pct "$line") | $(fmt_int "$(field setup_per_sec "$line")") | $(fmt_int "$(field missing "$line")") / $(field duplicated "$line") / $(field out_of_order "$line") | $(field client_cpu_pct "$line") | $result |")
    fi
    details+=("- $name at $rate/s: \`$line\`")
    [[ "$name" == ferrows ]] && delivery_bytes[$rate]="$(field delivery_bytes "$line")"
    figures["$name|$rate"]="$(field delivered_per_sec "$line") $(field server_cpu_us_per_delivery "$line") $(field server_rss_idle_per_subscriber_b "$line") $(field p50 "$line")"
  done
done
load_after="$(uptime)"

{
  echo "## Pub/sub fan-out: ferrows serve and uWebSockets"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($cpus cores)."
  echo "Servers on core $server_cpu: \`ferrows serve --api-key ...${server_args[*]:+ ${server_args[*]}}\` (memory broker, defaults: presence on) and"
  echo "uWebSockets' pub/sub peer (\`../shared/peers-uws/pubsub.cpp\`$( [[ -n "${uws:-}" && -s "${uws:-}/BUILD_INFO" ]] && echo ", $(head -n1 "$uws/BUILD_INFO" | cut -c1-22)"))."
  echo "\`ferrows bench-pubsub\` on core $client_cpu: $subscribers subscribers from $addresses loopback addresses, $hold s idle, then $duration s of publications;"
  echo "ferrows' publisher: $publisher. Load: before \`${load_before#*load average: }\`, after \`${load_after#*load average: }\`."
  [[ -n "$skipped" ]] && { echo; echo "$skipped"; }
  echo
  echo "| server | publications/s (sent) | deliveries/s | latency p50 / p99 / max, ms | server CPU µs / delivery | server RSS / subscriber after the setup / after the idle hold, B | idle server CPU, % | setup, subscribers/s | missing / duplicated / out of order | load generator CPU, % | result |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Deliveries/s: first deliveries from the first publication to the last delivery (or the"
  echo "10 s drain timeout); latency: receive time - publish time; server CPU: user + system time"
  echo "over that window divided by the deliveries; load generator CPU: the same for \`bench-pubsub\`, in %"
  echo "of its core (well under 100: it keeps up, and what is measured is the server). uWebSockets relays every message to every"
  echo "connection and drops what a subscriber more than 4 MiB behind would get; ferrows queues"
  echo "and closes such a subscriber with 4004. uWebSockets-padded: its publications padded to the"
  echo "size of serve's publication push (\`delivery_bytes\` of ferrows' run), equal bytes per delivery."
  echo
  echo "<details><summary>load generator output</summary>"
  echo
  printf '%s\n' "${details[@]}"
  echo
  echo "</details>"
} | tee "$report"
log "report written to ${report#"$root"/}"

# Charts (SVG, for the README): column N of the figures of each run.
chart() {
  local column="$1" rate name
  shift
  for rate in "${rates[@]}"; do
    for name in "${servers[@]}"; do
      printf '%s publications/s\t%s\t%s\n' "$rate" "$name" "$(cut -d' ' -f"$column" <<<"${figures["$name|$rate"]:-err err err err}")"
    done
  done | python3 scripts/chart.py "$@"
}
chart 1 target/bench-pubsub-deliveries.svg "Fan-out to $subscribers subscribers: deliveries/s" "deliveries per second" --relative
chart 2 target/bench-pubsub-cpu.svg "Fan-out to $subscribers subscribers: server CPU per delivery" "µs per delivery" --relative --lower-is-better
chart 4 target/bench-pubsub-p50.svg "Fan-out to $subscribers subscribers: latency p50" "ms from publication to receipt" --relative --lower-is-better
for name in "${servers[@]}"; do
  printf 'subscribed idle connection\t%s\t%s\n' "$name" "$(cut -d' ' -f3 <<<"${figures["$name|${rates[0]}"]:-err err err err}")"
done | python3 scripts/chart.py target/bench-pubsub-memory.svg \
  "Server memory per subscriber ($subscribers subscribers)" "bytes of RSS" --lower-is-better
log "charts written to target/bench-pubsub-*.svg"
exit "$status"
