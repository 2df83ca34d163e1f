#!/usr/bin/env bash
# End-to-end echo benchmark: ferrows against uWebSockets (C++, built by
# scripts/uws-peer.sh from ../shared/peers-uws when its sources are on the
# machine, skipped with a line saying so when not), tokio-tungstenite and
# fastwebsockets (bench/peers): same client (`ferrows bench`), same
# scenarios, every server on one core (the Rust ones on a tokio
# current_thread runtime, uWebSockets on its own event loop).
#
#   scripts/bench.sh
#
# For each server: messages/s echoed for
#   (a) 100 connections x 20 B, one message in flight per connection
#   (b) 10 connections x 1 KiB, 16 in flight per connection (pipelined)
#   (c) 10 connections x 1 KiB, 50 in flight per connection
#   (d) 1 connection x 64 KiB, 4 in flight
# (binary messages, no compression), then the user-space memory of an idle
# connection: VmRSS growth of a fresh server over BENCH_IDLE connections
# opened by bench/idle_clients.py, divided by BENCH_IDLE.
#
# The server runs under `taskset -c $BENCH_SERVER_CPU`, the clients under
# `taskset -c $BENCH_CLIENT_CPU`. Runs are interleaved (each round starts
# every server afresh, in a rotated order) and each cell is the median of
# BENCH_RUNS rounds. The markdown table goes to stdout and to
# target/bench-report.md.
#
# Environment:
#   BENCH_SECONDS     measured seconds per scenario run (default 5; the
#                     client adds one second of warm-up)
#   BENCH_RUNS        rounds; each cell is their median (default 3)
#   BENCH_IDLE        idle connections for the memory row (default 10000;
#                     0 skips the row)
#   BENCH_SERVER_CPU  core for the servers (default 1)
#   BENCH_CLIENT_CPU  core for the clients (default 0)
#   BENCH_SERVERS     subset to run, e.g. "ferrows uWebSockets"
#   BENCH_NO_BUILD=1  use the binaries already built
#   BENCH_NO_PUBSUB=1 skip the pub/sub load test (scripts/bench-pubsub.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

seconds="${BENCH_SECONDS:-5}"
runs="${BENCH_RUNS:-3}"
idle="${BENCH_IDLE:-10000}"
server_cpu="${BENCH_SERVER_CPU:-1}"
client_cpu="${BENCH_CLIENT_CPU:-0}"
read -ra servers <<<"${BENCH_SERVERS:-ferrows uWebSockets tokio-tungstenite fastwebsockets}"
report="$root/target/bench-report.md"

ferrows="$root/target/release/ferrows"
peers="$root/bench/peers/target/release"
declare -A server_cmd=(
  [ferrows]="$ferrows echo --port 0 --threads 1 --no-compression"
  [tokio-tungstenite]="$peers/tungstenite-echo --port 0"
  [fastwebsockets]="$peers/fastwebsockets-echo --port 0"
  [uWebSockets]="uws-echo" # started by start_server on a free port
)
# name | ferrows bench arguments
scenarios=(
  "100 conn x 20 B|-c 100 -s 20 -p 1"
  "10 conn x 1 KiB, pipeline 16|-c 10 -s 1024 -p 16"
  "10 conn x 1 KiB, pipeline 50|-c 10 -s 1024 -p 50"
  "1 conn x 64 KiB, pipeline 4|-c 1 -s 65536 -p 4"
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for s in "${servers[@]}"; do [[ -n "${server_cmd[$s]:-}" ]] || die "unknown server '$s'"; done
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
command -v python3 >/dev/null || die "python3 is needed for the idle-connection row"
cpus="$(nproc --all)"
((server_cpu < cpus && client_cpu < cpus)) || die "cores $server_cpu and $client_cpu: this machine has $cpus"

if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  log "building ferrows (release)"
  cargo build --release -p ferrows-cli >&2
  log "building bench/peers (release)"
  (cd bench/peers && cargo build --release --locked >&2)
fi
skipped=""
if [[ " ${servers[*]} " == *" uWebSockets "* ]]; then
  if ! uws="$("$root/scripts/uws-peer.sh")"; then
    skipped="uWebSockets: skipped (scripts/uws-peer.sh could not build it here: its sources are needed)."
    kept=()
    for s in "${servers[@]}"; do [[ "$s" != uWebSockets ]] && kept+=("$s"); done
    servers=("${kept[@]}")
  fi
fi

# 10 000 sockets on each side, plus some for the rest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$idle" -gt 0 ]] && [[ "$(ulimit -n)" != unlimited ]] && (("$(ulimit -n)" < idle + 100)); then
  die "open-file limit $(ulimit -n) is below BENCH_IDLE=$idle + 100"
fi

work="$(mktemp -d)"
# The processes this script started and has not reaped yet (only those, so
# a pid the system reused is never signalled).
server_pid=""
client_pid=""
cleanup() {
  for pid in $server_pid $client_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $server_pid $client_pid; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME: sets server_pid and server_url.
start_server() {
  local name="$1" out="$work/$1.out" port=""
  : >"$out"
  if [[ "$name" == uWebSockets ]]; then
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    taskset -c "$server_cpu" "$uws/uws-echo" "$port" >"$out" 2>"$work/$name.err" &
  else
    # shellcheck disable=SC2086
    taskset -c "$server_cpu" ${server_cmd[$name]} >"$out" 2>"$work/$name.err" &
  fi
  server_pid=$!
  server_url=""
  for _ in $(seq 100); do
    if [[ -n "$port" ]]; then
      grep -q "listening on 127.0.0.1:$port" "$out" && server_url="ws://127.0.0.1:$port/"
    else
      server_url="$(grep -o 'ws://[^ ]*' "$out" | head -n1 || true)"
    fi
    [[ -n "$server_url" ]] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/$name.err" >&2
  die "$name did not print its listening line within 10 s"
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Echo throughput of the running server: prints "MSGS_PER_SEC NS_PER_MSG"
# ("err err" on failure). NS_PER_MSG is the server's CPU time (user + sys)
# over the client's whole run divided by the messages of that run, taking
# the warm-up second at the measured rate: a figure that other load on the
# machine disturbs far less than messages/s.
throughput() {
  local args="$1" line rate t0 t1
  t0="$(cpu_ticks "$server_pid")"
  # shellcheck disable=SC2086
  if line="$(taskset -c "$client_cpu" "$ferrows" bench --url "$server_url" $args -d "$seconds" --binary --json 2>>"$work/client.err")"; then
    t1="$(cpu_ticks "$server_pid")"
    rate="$(grep -o '"messages_per_sec":[0-9.]*' <<<"$line" | cut -d: -f2 || true)"
    if [[ -n "$rate" ]]; then
      awk -v r="$rate" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v d="$seconds" \
        'BEGIN { printf "%s %.0f\n", r, (r > 0 ? t / hz * 1e9 / (r * (d + 1)) : 0) }'
      return
    fi
  fi
  echo "err err"
}

# Bytes of RSS per idle connection of the (fresh) running server: sets
# idle_bytes to bytes or "err". Not run in a subshell, so the cleanup trap
# knows the client's pid.
idle_memory() {
  local before after prev
  idle_bytes=err
  before="$(rss_kib "$server_pid")"
  taskset -c "$client_cpu" python3 bench/idle_clients.py "$server_url" -n "$idle" >"$work/idle.out" 2>"$work/idle.err" &
  client_pid=$!
  for _ in $(seq 1200); do # 120 s at most
    grep -q '^ready' "$work/idle.out" && break
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q '^ready' "$work/idle.out"; then
    # Every handshake was answered; let the server finish setting the
    # connections up (RSS unchanged over 0.5 s, 10 s at most).
    prev=-1
    after="$(rss_kib "$server_pid")"
    for _ in $(seq 20); do
      [[ "$after" == "$prev" ]] && break
      sleep 0.5
      prev="$after"
      after="$(rss_kib "$server_pid")"
    done
    if [[ -n "$before" && -n "$after" ]]; then
      idle_bytes=$(((after - before) * 1024 / idle))
    fi
  else
    cat "$work/idle.err" >&2
  fi
  kill "$client_pid" 2>/dev/null || true
  wait "$client_pid" 2>/dev/null || true
  client_pid=""
}

declare -A results # "server|scenario index" -> space-separated values
record() { results["$1|$2"]="${results["$1|$2"]:-}${results["$1|$2"]:+ }$3"; }

load_before="$(uptime)"
started=$SECONDS
for ((round = 0; round < runs; round++)); do
  # Rotate the order so no server always runs first (or right after a
  # particular other one).
  order=()
  for ((i = 0; i < ${#servers[@]}; i++)); do order+=("${servers[(i + round) % ${#servers[@]}]}"); done
  for name in "${order[@]}"; do
    start_server "$name"
    for i in "${!scenarios[@]}"; do
      read -r rate cpu <<<"$(throughput "${scenarios[$i]#*|}")"
      log "round $((round + 1))/$runs $name ${scenarios[$i]%%|*}: $rate msgs/s, server CPU $cpu ns/msg"
      record "$name" "$i" "$rate"
      record "$name" "cpu$i" "$cpu"
    done
    stop_server
  done
done
if ((idle > 0)); then
  for ((round = 0; round < runs; round++)); do
    for name in "${servers[@]}"; do
      start_server "$name"
      idle_memory
      log "round $((round + 1))/$runs $name: $idle_bytes bytes per idle connection"
      record "$name" mem "$idle_bytes"
      stop_server
    done
  done
fi
load_after="$(uptime)"

median() {
  tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "err"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "err") print "err"; else printf "%.0f", v }' | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "err" || b == "err" || b == 0) print "–"; else printf "%.2f", a / b }'; }

peers_run=()
for s in "${servers[@]}"; do [[ "$s" != ferrows ]] && peers_run+=("$s"); done
with_ratios=""
[[ " ${servers[*]} " == *" ferrows "* ]] && with_ratios=1

table_header() {
  local header="| $1 |" rule="| --- |" s p
  for s in "${servers[@]}"; do header+=" $s |"; rule+=" ---: |"; done
  if [[ -n "$with_ratios" ]]; then
    for p in "${peers_run[@]}"; do header+=" ferrows / $p |"; rule+=" ---: |"; done
  fi
  echo "$header"
  echo "$rule"
}

# table_row LABEL KEY FORMAT: the medians of results[server|KEY], printed
# with FORMAT (int, or a printf format applied to value / 1024 for "kib"),
# then ferrows / peer.
table_row() {
  local line="| $1 |" key="$2" format="$3" s p v
  declare -A med=()
  for s in "${servers[@]}"; do
    v="$(median "${results["$s|$key"]:-}")"
    med[$s]="$v"
    case "$format" in
      int) line+=" $(fmt_int "$v") |" ;;
      kib) line+=" $(awk -v v="$v" 'BEGIN { if (v == "err") print "err"; else printf "%.2f", v / 1024 }') |" ;;
      us) line+=" $(awk -v v="$v" 'BEGIN { if (v == "err") print "err"; else printf "%.2f", v / 1000 }') |" ;;
    esac
  done
  if [[ -n "$with_ratios" ]]; then
    for p in "${peers_run[@]}"; do line+=" $(ratio "${med[ferrows]}" "${med[$p]}") |"; done
  fi
  echo "$line"
}

{
  echo "## ferrows echo benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($cpus cores)."
  echo "Servers on core $server_cpu (tokio current_thread; uWebSockets' own loop$( [[ -n "${uws:-}" && -s "${uws:-}/BUILD_INFO" ]] && echo ", $(head -n1 "$uws/BUILD_INFO" | cut -c1-22)")), client \`ferrows bench --binary\` on core $client_cpu;"
  echo "${seconds} s per run after 1 s warm-up; median of $runs interleaved runs; no compression."
  echo "Load: before \`${load_before#*load average: }\`, after \`${load_after#*load average: }\` (1/5/15 min; $((SECONDS - started)) s)."
  [[ -n "$skipped" ]] && { echo; echo "$skipped"; }
  echo
  table_header "scenario"
  for i in "${!scenarios[@]}"; do table_row "${scenarios[$i]%%|*}, msgs/s" "$i" int; done
  ((idle > 0)) && table_row "idle connection, KiB (RSS growth / $idle; lower is better)" mem kib
  echo
  echo "Ratios: above 1 favours ferrows for messages/s, below 1 for memory."
  echo
  echo "Server CPU time (user + sys) per echoed message, µs: lower is better; less"
  echo "disturbed by other load than messages/s (ratios below 1 favour ferrows)."
  echo
  table_header "scenario"
  for i in "${!scenarios[@]}"; do table_row "${scenarios[$i]%%|*}, µs/msg" "cpu$i" us; done
  echo
  echo "<details><summary>every run</summary>"
  echo
  for i in "${!scenarios[@]}"; do
    for s in "${servers[@]}"; do echo "- ${scenarios[$i]%%|*}, $s: msgs/s ${results["$s|$i"]:-}; server ns/msg ${results["$s|cpu$i"]:-}"; done
  done
  if ((idle > 0)); then
    for s in "${servers[@]}"; do echo "- idle connection, $s: bytes ${results["$s|mem"]:-}"; done
  fi
  echo
  echo "</details>"
} | tee "$report"
log "report written to ${report#"$root"/}"

# Charts of the same medians (SVG, for the README).
for i in "${!scenarios[@]}"; do
  for s in "${servers[@]}"; do
    printf '%s\t%s\t%s\n' "${scenarios[$i]%%|*}" "$s" "$(median "${results["$s|$i"]:-}")"
  done
done | python3 scripts/chart.py target/bench-echo.svg \
  "Echo throughput, one server core (median of $runs interleaved runs)" "messages/s" --relative
for i in "${!scenarios[@]}"; do
  for s in "${servers[@]}"; do
    printf '%s\t%s\t%s\n' "${scenarios[$i]%%|*}" "$s" \
      "$(awk -v v="$(median "${results["$s|cpu$i"]:-}")" 'BEGIN { if (v == "err") print "err"; else print v / 1000 }')"
  done
done | python3 scripts/chart.py target/bench-echo-cpu.svg \
  "Echo: server CPU time per message (median of $runs interleaved runs)" "µs per message" --relative --lower-is-better
if ((idle > 0)); then
  for s in "${servers[@]}"; do
    printf 'idle connection\t%s\t%s\n' "$s" \
      "$(awk -v v="$(median "${results["$s|mem"]:-}")" 'BEGIN { if (v == "err") print "err"; else print v }')"
  done | python3 scripts/chart.py target/bench-idle.svg \
    "Server memory per idle echo connection ($idle connections)" "bytes of RSS" --lower-is-better
fi
log "charts written to target/bench-echo.svg, target/bench-echo-cpu.svg$( ((idle > 0)) && echo ", target/bench-idle.svg")"

# The pub/sub load test: 10 000 subscribers of `ferrows serve` (see
# scripts/bench-pubsub.sh; SUBSCRIBERS, RATE and SECONDS tune it).
if [[ -z "${BENCH_NO_PUBSUB:-}" ]]; then
  BENCH_NO_BUILD=1 "$root/scripts/bench-pubsub.sh" || log "pub/sub benchmark failed (see target/bench-pubsub.md)"
fi
