#!/usr/bin/env bash
# WebSocket against Server-Sent Events, long polling and polling, on the
# same `ferrows serve`, channel and publications (`ferrows bench-transports`):
# for each transport a fresh server on one core and SUBSCRIBERS subscribers
# on the other; the idle cost over HOLD seconds, then each of RATES
# publications/s for DURATION seconds.
#
#   scripts/bench-transports.sh
#   SUBSCRIBERS=2000 RATES=1,10,100,300 scripts/bench-transports.sh
#
# Environment: SUBSCRIBERS (1000), RATES (1,10,100), DURATION (10 s per
# rate), HOLD (30 s idle: a WebSocket Ping every 25 s and a stream's
# keepalive every 15 s fall in it), SIZE (100 bytes of data), POLL_INTERVAL
# (1 s), SERVER_CPU (1) and CLIENT_CPU (0): the cores of the server and of
# the load generator; OUT (target/bench-transports). BENCH_NO_BUILD=1 skips
# the build. With BENCH_DOCS=1 the charts and the table are copied into
# docs/bench/ (what the README shows).
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers="${SUBSCRIBERS:-1000}"
rates="${RATES:-1,10,100}"
out="${OUT:-target/bench-transports}"
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
  cargo build --release -p ferrows-cli
fi
# A descriptor per subscriber here, and one in the server.
ulimit -n "$(( subscribers * 2 + 1024 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$out"
taskset -c "${CLIENT_CPU:-0}" target/release/ferrows bench-transports \
  --subscribers "$subscribers" --rates "$rates" --duration "${DURATION:-10}" --hold "${HOLD:-30}" \
  --size "${SIZE:-100}" --poll-interval "${POLL_INTERVAL:-1}" --server-cpu "${SERVER_CPU:-1}" \
  --threads 1 --out "$out" | tee "$out/transports.txt"
{
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(uname -sr)."
  echo "Command: \`SUBSCRIBERS=$subscribers RATES=$rates scripts/bench-transports.sh\` (server on core ${SERVER_CPU:-1}, load generator on core ${CLIENT_CPU:-0}, one thread)."
  echo
  cat "$out/transports.md"
} > "$out/transports-report.md"
if [[ -n ${BENCH_DOCS:-} ]]; then
  mkdir -p docs/bench
  cp "$out"/transports-*.svg "$out/transports-report.md" docs/bench/
  echo "copied the charts and the table into docs/bench/"
fi
