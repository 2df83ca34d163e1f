#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with a Rust toolchain:
# installs what the tests need, then runs formatting and lint checks, every
# unit/integration/doc test (Redis ones against a real redis-server), the
# packaging of every crate (`cargo package`, built from its tarball), the
# interop tests against real peers, the JavaScript client's tests and the
# browser end-to-end tests of `ferrows serve`, the fuzz
# smoke runs and Autobahn|Testsuite in
# both roles and over wss:// (compared against autobahn/expected-*.json).
#
#   scripts/test.sh          default run (Autobahn 1.*-10.* + a compression sample)
#   scripts/test.sh --full   every Autobahn case (12 to 60 more minutes per role: the
#                            suite compresses in Python)
#
# Environment: FUZZ_SECONDS (default 20) bounds each fuzz target's run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
export FERROWS_SHARED="${FERROWS_SHARED:-$root/../shared}"
full=""
[[ "${1:-}" == "--full" ]] && full="--full"
step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "installing what the tests need"
scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
  cargo test --workspace --all-features --doc
else
  cargo test --workspace --all-features --no-fail-fast
fi

step "release build"
cargo build --release -p ferrows-cli

step "cargo package: every crate packages and builds from its tarball alone"
# Cargo treats the workspace's own packages, verified from its temporary
# registry, like published ones: their extraction (under CARGO_HOME) and
# their build are reused by a later run of the same version even though
# the sources changed. So: no old extraction, and a target directory of
# its own, emptied first.
rm -rf target/package-check "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/ferrows*
CARGO_TARGET_DIR=target/package-check cargo package --workspace --allow-dirty --quiet
rm -rf target/package-check

step "interop: Python websockets, Node ws, headless Chromium"
interop/run.sh

step "JavaScript client against ferrows serve (Node)"
clients/js/run-tests.sh

step "browser end-to-end: the serve demo in headless Chromium, Redis nodes"
# Screenshots go to target/ (docs/ keeps the committed ones).
mkdir -p target/e2e-screenshots
E2E_SCREENSHOTS="$root/target/e2e-screenshots" e2e/run.sh

step "fuzz smoke runs (${FUZZ_SECONDS:-20} s per target)"
scripts/fuzz.sh

step "Autobahn|Testsuite: server, client, and server over wss:// ${full:-(default sample)}"
pids=()
for role in server client server-tls; do
  autobahn/run.sh "$role" $full >"target/autobahn-$role.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for role in server client server-tls; do
  echo "-- $role:"
  grep -v '^running\|^reports' "target/autobahn-$role.log" | tail -n 25
done
[[ $status == 0 ]] || { echo "Autobahn regressions (see above)"; exit 1; }

step "all green in $((SECONDS - started)) s"
