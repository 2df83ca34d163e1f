#!/usr/bin/env bash
# Makes uWebSockets' benchmark peers (uws-echo, uws-pubsub) ready in
# target/uws/ and prints that directory; or prints nothing and says why on
# stderr (exit status 1) when they cannot be built here.
#
# They are built by ../shared/peers-uws/build.sh from local git copies of
# uNetworking/uWebSockets and uNetworking/uSockets (UWS_MIRROR and
# USOCKETS_MIRROR, or copies it finds itself); nothing of them is kept in
# this repository. A build is reused while target/uws/BUILD_INFO exists.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(pwd)/target/uws"
build="$(pwd)/../shared/peers-uws/build.sh"

if [[ -x "$out/uws-echo" && -x "$out/uws-pubsub" && -s "$out/BUILD_INFO" ]]; then
  echo "$out"
  exit 0
fi
if [[ ! -x "$build" ]]; then
  echo "uWebSockets: skipped ($build is missing)" >&2
  exit 1
fi
mkdir -p "$out"
if ! OUT_DIR="$out" "$build" >"$out/build.log" 2>&1; then
  echo "uWebSockets: skipped (its sources are not on this machine, or the build failed: $(tail -n 1 "$out/build.log"))" >&2
  exit 1
fi
echo "$out"
