#!/usr/bin/env bash
# Run each fuzz target for a bounded time from the committed seeds; fail on any crash.
#   ./scripts/fuzz.sh [SECONDS per target, default 30] [TARGET...]
# cargo-fuzz runs on the stable toolchain with RUSTC_BOOTSTRAP=1 (no nightly here) and no
# sanitizer: the speaker is safe Rust, and a sanitizer build runs several times slower.
# A crash leaves its input in fuzz/artifacts/TARGET/ and is printed; replay it with
#   FUZZ_TRACE=1 cargo run -p fuzz-harness --example replay -- FILE
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode established)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
# Without -O: optimised, with debug assertions and overflow checks (cargo fuzz's default).
cargo fuzz build -s none 2>&1 | tail -1
for t in "${targets[@]}"; do
  corpus=$(mktemp -d)
  trap 'rm -rf "$corpus"' EXIT
  # The seeds stay as committed; the run grows a copy.
  cp fuzz/seeds/"$t"/* "$corpus"/
  log=$(mktemp)
  if ! cargo fuzz run -s none "$t" "$corpus" -- -max_total_time="$secs" \
      -dict=fuzz/dict/bgp.dict -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz: $t FAILED"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz: $t ok: $runs inputs in ${secs} s, $cov, corpus $(ls "$corpus" | wc -l)"
  rm -rf "$corpus" "$log"
done
