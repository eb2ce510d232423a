#!/usr/bin/env bash
# Run each fuzz target for a bounded time from the committed seeds; fail on any crash.
#   ./scripts/fuzz.sh [SECONDS per target, default 30] [TARGET...]
# cargo-fuzz runs on the stable toolchain with RUSTC_BOOTSTRAP=1 (no nightly here) and no
# sanitizer: the speaker is safe Rust, and a sanitizer build runs several times slower. The
# targets are built optimised with debug assertions and overflow checks (cargo fuzz's default
# without -O). The run uses a fixed libFuzzer seed (FUZZ_SEED, default 1) so that CI explores
# the same inputs each time; a crash leaves its input in fuzz/artifacts/TARGET/. Read one with
#   FUZZ_TRACE=1 cargo run -p fuzz-harness --example replay -- FILE
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode established)
if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0.13'; then
  cargo install cargo-fuzz --version '^0.13' --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! cargo fuzz build -s none >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log"
  echo "fuzz: the targets did not build"
  exit 1
fi
for t in "${targets[@]}"; do
  corpus="$work/corpus-$t"
  mkdir -p "$corpus"
  # The seeds stay as committed; the run grows a copy.
  if [ -d "fuzz/seeds/$t" ]; then
    cp "fuzz/seeds/$t"/* "$corpus"/
  fi
  log="$work/$t.log"
  if ! cargo fuzz run -s none "$t" "$corpus" -- -max_total_time="$secs" -timeout=10 \
      -seed="${FUZZ_SEED:-1}" -dict=fuzz/dict/bgp.dict -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz: $t FAILED"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "fuzz: $t ok: ${runs:-?} inputs in ${secs} s, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l)"
done
