#!/usr/bin/env bash
# Many idle subscribed connections on one `ferrows serve` (default 100 000):
# what each costs the server while it waits, and how fast one publication
# reaches them all.
#
#   scripts/idle-connections.sh
#   CONNECTIONS=20000 HOLD=60 scripts/idle-connections.sh
#
# Starts `ferrows serve` (defaults, presence on, `--max-connections` raised)
# on core $BENCH_SERVER_CPU and `ferrows bench-pubsub` on core
# $BENCH_CLIENT_CPU, which opens CONNECTIONS WebSocket connections from
# several loopback source addresses (about 28 000 each), connects and
# subscribes each to one channel, holds them idle for HOLD seconds (long
# enough for a round of keepalive pings, 25 s apart by default), then
# publishes one publication. Reports: server RSS per connection (after the
# setup minus before, over the connections), setup rate, server CPU while
# every connection sits idle, and the time that one publication took to
# reach the last subscriber. Bounded: the setup has SETUP_TIMEOUT seconds,
# the delivery 30.
#
# Each side needs one descriptor per connection: the script raises the
# open-file limit to CONNECTIONS + 1000, and stops with the reason when the
# hard limit (`ulimit -Hn`) is lower (raising that takes root outside a
# container, or `LimitNOFILE=` in a service manager).
#
# Environment:
#   CONNECTIONS       connections (default 100000)
#   HOLD              idle seconds (default 40)
#   SETUP_TIMEOUT     seconds allowed for the setup (default 300)
#   SOURCE_ADDRS      client addresses, comma-separated (default: one
#                     loopback address per 500 connections, 127.1.0.1 and on)
#   TLS=1             over wss:// (a self-signed certificate made by openssl)
#   DEFLATE=1         clients offer permessage-deflate, as browsers do (their
#                     connect and subscribe commands arrive compressed)
#   BENCH_SERVER_CPU  core for the server (default 1)
#   BENCH_CLIENT_CPU  core for the load generator (default 0)
#   BENCH_SERVER_ARGS extra `ferrows serve` arguments
#   BENCH_NO_BUILD=1  use the binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

connections="${CONNECTIONS:-100000}"
hold="${HOLD:-40}"
setup_timeout="${SETUP_TIMEOUT:-300}"
# 500 clients per loopback address (127.1.0.1, 127.1.0.2, ...): half of
# `serve`'s default max_connections_per_address.
loopback_addrs() {
  local n=$(( ($1 + 499) / 500 )) i out=""
  for ((i = 0; i < n; i++)); do out+="${out:+,}127.1.$((i / 250)).$((i % 250 + 1))"; done
  echo "$out"
}
source_addrs="${SOURCE_ADDRS:-$(loopback_addrs "$connections")}"
server_cpu="${BENCH_SERVER_CPU:-1}"
client_cpu="${BENCH_CLIENT_CPU:-0}"
read -ra server_args <<<"${BENCH_SERVER_ARGS:-}"
tls="${TLS:-}"
deflate="${DEFLATE:-}"
ferrows="$root/target/release/ferrows"
report="$root/target/idle-connections.md"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v taskset >/dev/null || die "taskset (util-linux) is needed"
needed=$((connections + 1000))
ulimit -n "$needed" 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited ]] && (("$(ulimit -n)" < needed)); then
  die "$connections connections need $needed descriptors per process, but the hard open-file limit is $(ulimit -Hn) (set CONNECTIONS=$(($(ulimit -Hn) - 1000)) or raise it)"
fi
addresses=$(($(tr -cd , <<<"$source_addrs" | wc -c) + 1))
((connections <= addresses * 28000)) || die "$connections connections need $(((connections + 27999) / 28000)) source addresses (SOURCE_ADDRS has $addresses)"

if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
  log "building ferrows (release)"
  cargo build --release -p ferrows-cli >&2
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

client_args=()
scheme=ws
if [[ -n "$tls" ]]; then
  command -v openssl >/dev/null || die "openssl is needed for TLS=1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  server_args+=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
  client_args+=(--ca-file "$work/cert.pem")
  scheme=wss
fi
[[ -n "$deflate" ]] && client_args+=(--deflate)
taskset -c "$server_cpu" "$ferrows" serve --port 0 --max-connections "$((connections + 100))" "${server_args[@]}" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
address=""
for _ in $(seq 100); do # 10 s at most
  address="$(sed -n 's|^listening on https\{0,1\}://\([^ ]*\).*|\1|p' "$work/server.out" | head -n1)"
  [[ -n "$address" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$address" ]] || { cat "$work/server.err" >&2; die "ferrows serve did not start"; }
rss_idle_server="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")"

log "$connections connections from $addresses addresses, $hold s idle, then one publication"
status=0
line="$(taskset -c "$client_cpu" "$ferrows" bench-pubsub --url "$scheme://$address/ws" --subscribers "$connections" "${client_args[@]}" \
  --rate 1 --duration 1 --hold "$hold" --setup-timeout "$setup_timeout" --drain-timeout 30 \
  --setup-concurrency 500 --source-addrs "$source_addrs" --server-pid "$server_pid" --json)" || status=$?
rss_after="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo '?')"

field() { grep -o "\"$1\":[-0-9.a-z]*" <<<"$line" | head -n1 | cut -d: -f2; }
{
  echo "## $connections idle connections on ferrows serve ($scheme://$([[ -n "$deflate" ]] && echo ', permessage-deflate'))"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc --all) cores)."
  echo "\`ferrows serve --max-connections $((connections + 100))${server_args[*]:+ ${server_args[*]}}\` on core $server_cpu (RSS $((rss_idle_server / 1024)) MiB before, $((${rss_after/\?/0} / 1024)) MiB after);"
  echo "\`ferrows bench-pubsub\` on core $client_cpu from $addresses loopback addresses: every connection subscribed to one channel"
  echo "(presence tracked), $hold s idle, then one publication."
  echo
  if [[ -z "$line" ]]; then
    echo "**The load generator failed before its report (exit status $status).**"
  else
    echo "| connections | server RSS / connection after the setup, B | after the idle hold, B | setup, connections/s | idle server CPU, % of a core | one publication to the last subscriber, ms | result |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    echo "| $connections | $(field server_rss_per_subscriber_b) | $(field server_rss_idle_per_subscriber_b) | $(field setup_per_sec) | $(field server_idle_cpu_pct) | $(field max) | $([[ $status == 0 ]] && echo ok || echo "**failed** (exit status $status)") |"
    echo
    echo '```'
    echo "$line"
    echo '```'
  fi
} | tee "$report"
log "report written to ${report#"$root"/}"
exit "$status"
