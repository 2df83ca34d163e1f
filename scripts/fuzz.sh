#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets for FUZZ_SECONDS seconds
# each (default 20), starting from the committed seeds in fuzz/seeds/TARGET
# when there are any. New corpus entries go to fuzz/corpus/TARGET (ignored by
# git); crashes to fuzz/artifacts/TARGET. Exits non-zero if any target fails.
#
#   scripts/fuzz.sh                 # every target
#   scripts/fuzz.sh inflate mask    # only these
#   FUZZ_SECONDS=300 scripts/fuzz.sh
#
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for file in fuzz_targets/*.rs; do
        name="${file##*/}"
        targets+=("${name%.rs}")
    done
fi

seconds="${FUZZ_SECONDS:-20}"
failed=()
for t in "${targets[@]}"; do
    echo "=== fuzzing $t for ${seconds}s"
    # The first corpus directory receives new inputs: keep the seeds read-only.
    corpora=("corpus/$t")
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then
        corpora+=("seeds/$t")
    fi
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "${corpora[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048; then
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing failed for: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "all ${#targets[@]} targets ran for ${seconds}s without a failure"
