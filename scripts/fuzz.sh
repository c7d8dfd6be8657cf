#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), seeded from
# fuzz/seeds/<target>. Needs cargo-fuzz (installed if missing); the stable
# toolchain is asked for the nightly-only sanitizer flags with
# RUSTC_BOOTSTRAP=1. Prints executions and findings per target; crashes are
# kept in fuzz/artifacts/<target>.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request chunked codec)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "== $target, ${seconds}s" >&2
  log="fuzz/target/$target.log"
  mkdir -p fuzz/target
  if cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 >"$log" 2>&1; then
    verdict="clean"
  else
    verdict="FAILED (see $log and fuzz/artifacts/$target)"
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "$target: $verdict, $runs executions in ${seconds}s"
done
