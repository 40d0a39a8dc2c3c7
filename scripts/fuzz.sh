#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 60).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`); says so if either
# is missing. A crash leaves its input in fuzz/artifacts/<target>/ and fails the script: turn it
# into a regression test before fixing it.
set -euo pipefail

seconds="${FUZZ_SECONDS:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain (cargo fuzz needs one): rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

cd "$root/fuzz"
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    echo "fuzz.sh: $target for ${seconds}s"
    # -rss_limit_mb bounds memory per input (a decompression bomb must stay far below it).
    cargo +nightly fuzz run --target-dir "$target_dir" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=300000 -print_final_stats=1
done
echo "fuzz.sh: every target ran ${seconds}s without a crash"
