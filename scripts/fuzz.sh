#!/usr/bin/env bash
# Run every fuzz target for a bounded time on the machine's stable
# toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer flags).
# Seeds come from the committed fuzz/corpus/<target>/; what a run finds
# goes to fuzz/work/<target>/ (ignored). A crash is saved in
# fuzz/artifacts/<target>/ — copy it into fuzz/corpus/<target>/ so
# `cargo test` replays it from then on (tests/e2e/fuzz_corpus.rs).
#
# usage: scripts/fuzz.sh [seconds per target, default 60] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(sniff parse_key exif policy kafka_message analyze multipart)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  echo "[fuzz] $t for ${seconds}s" >&2
  # 2 GiB: the analyze target decodes under the production caps (its
  # decode budget is 64 MiB); a bomb that escapes them shows up here.
  if ! cargo fuzz run --fuzz-dir fuzz -O "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; then
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "[fuzz] crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
  exit 1
fi
echo "[fuzz] ok: ${targets[*]}" >&2
