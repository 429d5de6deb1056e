#!/usr/bin/env bash
# tools/check_stage_output.py against a real stage-2 run, so the GPU workflows' check cannot
# drift from what the programs write: stage 2 on 200 images on the CPU (--allow_cpu_fallback)
# must pass with --allow_cpu and fail without it (it did not run on a GPU), and a copy with one
# prediction missing or a dead letter must fail. About a second.
#   tests/ops/check_stage_output_test.sh BUILD_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:?usage: $0 BUILD_DIR}
CHECK=(python3 "$ROOT/tools/check_stage_output.py")
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "SKIP: no Fashion-MNIST (scripts/setup.sh installs dataset-fashion-mnist)"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$ROOT"  # run from the repository root, as CI does
"$BUILD/examples/02_gpu_inference" --limit=200 --output="$tmp/run" --allow_cpu_fallback > "$tmp/log" 2>&1 ||
  { cat "$tmp/log"; exit 1; }
fails=0 passes=0
expect() {  # expect pass|fail DESCRIPTION ARGS...
  local want=$1 what=$2; shift 2
  if "${CHECK[@]}" "$@" > "$tmp/out" 2>&1; then got=pass; else got=fail; fi
  if [ "$got" = "$want" ]; then echo "ok    $what ($got)"; passes=$((passes + 1)); else
    echo "FAIL  $what: expected $want, got $got"; cat "$tmp/out"; fails=$((fails + 1)); fi
}
expect pass "stage 2 on the CPU, --allow_cpu" --stage=2 --output="$tmp/run" --images=200 --min_accuracy=0.85 --allow_cpu
if [ "$("$BUILD/beamlet" devices | grep -c '^cuda:')" -eq 0 ]; then
  expect fail "stage 2 on the CPU without --allow_cpu" --stage=2 --output="$tmp/run" --images=200
fi
expect fail "the wrong image count" --stage=2 --output="$tmp/run" --images=1000 --allow_cpu
expect fail "an accuracy floor above the run's" --stage=2 --output="$tmp/run" --min_accuracy=0.999 --allow_cpu
cp -r "$tmp/run" "$tmp/short" && sed -i '$d' "$tmp/short"/predictions-*.jsonl
expect fail "a prediction missing" --stage=2 --output="$tmp/short" --allow_cpu
cp -r "$tmp/run" "$tmp/dead" && echo '{"example": "x", "error": "planted"}' > "$tmp/dead"/dead_letter-00000-of-00001.jsonl
expect fail "a dead letter" --stage=2 --output="$tmp/dead" --allow_cpu
echo "check_stage_output_test: $passes passed, $fails failed"
exit $((fails > 0))
