#!/usr/bin/env bash
# Every benchmark, one after the other, each against its peer in the same
# run; bench/RESULTS.md holds what they printed, with the date.
#
#   bash scripts/bench.sh            # all of them (needs vipsthumbnail)
#
# S3 figures (the sweep on SeaweedFS, uploads vs raw PUTs on SeaweedFS)
# need an S3 server: IMGPIPE_TEST_S3_ENDPOINT if set, else the SeaweedFS
# that .ci/run installs, started here on 127.0.0.1 for the run. The Kafka
# bench runs when IMGPIPE_TEST_KAFKA names a broker.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v vipsthumbnail >/dev/null || {
  echo "vipsthumbnail is missing: apt-get install libvips-tools" >&2
  exit 1
}
cache="${IMGPIPE_CACHE:-$HOME/.cache/imgpipe}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

work="$(mktemp -d "${TMPDIR:-/tmp}/imgpipe-bench.XXXXXX")"
weed_pid=""
cleanup() {
  [ -n "$weed_pid" ] && kill "$weed_pid" 2>/dev/null && wait "$weed_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${IMGPIPE_TEST_S3_ENDPOINT:-}" ] && [ -x "$cache/venv/bin/weed" ]; then
  export AWS_ACCESS_KEY_ID=imgpipe-bench AWS_SECRET_ACCESS_KEY=imgpipe-bench-secret AWS_REGION=us-east-1
  cat > "$work/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
  mkdir -p "$work/seaweed"
  "$cache/venv/bin/weed" mini -dir="$work/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$work/s3.json" -admin.ui=false -webdav=false -s3.port.iceberg=0 \
    -s3.port.lance=0 -master.telemetry=false > "$work/seaweed.log" 2>&1 &
  weed_pid=$!
  for _ in $(seq 1 120); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8333/ || true)" = 403 ] && break
    sleep 1
  done
  export IMGPIPE_TEST_S3_ENDPOINT=http://127.0.0.1:8333
fi

run() {
  echo
  echo "## cargo bench --bench $1"
  cargo bench -q --bench "$1"
}
run sweep
run scale
run process
run ingest
run listing
run script
if [ -n "${IMGPIPE_TEST_KAFKA:-}" ]; then run kafka; run kafka_keys; fi
