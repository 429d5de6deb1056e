#!/usr/bin/env bash
# GPU runbook: on a machine with an NVIDIA GPU, build beamlet with the CUDA backend, run the GPU
# tests and the benchmarks, keep every log.
#
#     OUT=/some/dir tools/gpu_check.sh quick   # the one prepared device call: ends by itself
#                                              # within 9 minutes (QUICK_BUDGET_S, default 530)
#     tools/gpu_check.sh quick --dry-run       # no GPU needed: checks what `quick` will run
#     tools/gpu_check.sh                       # build, every test, full benchmark (> 10 min)
#     tools/gpu_check.sh test                  # build and every test only
#     tools/gpu_check.sh bench                 # build (incremental) and benchmark only
#     tools/gpu_check.sh sanitize              # the GPU tests under compute-sanitizer memcheck
#
# Logs go to $OUT (default build-gpu/logs): one file per step, and summary.txt gets one verdict
# line per step as it finishes, so a run cut short still leaves the verdicts so far.
#
# quick, in order, each step under its own `timeout` and a global deadline:
#   build       configure + build with the CUDA backend on all cores
#   ops         the op-parity table (f32, bf16) and the gradient checks on CUDA, the device,
#               graph, library and training tests
#   fixtures    the PyTorch fixtures on CUDA (f32: the model layer has no bf16 path yet, so bf16
#               is covered op by op in `ops`)
#   stage2      stage 2 on 1,000 Fashion-MNIST test images on the GPU; the same images on the
#               CPU must give the same accuracy, and tools/check_stage_output.py checks the run
#               really used the GPU
#   stage3      200 training steps (25,600 images at batch 128) of stage 3 on the GPU and on the
#               CPU from the same seed: their mean training loss over those steps and their test
#               accuracy are compared
#   bench       `beamlet bench --quick` on cuda:0
#   compare     bench_cuda beside PyTorch eager (bf16, channels-last): CIFAR ResNet-18 training
#               at batch 512, inference at batch 1 and 256, ratios printed
#   compile     the same with torch.compile, only when the deadline leaves time for it
#
# cuDNN: from /usr/local/cuda when cudnn.h is there, else $CUDNN_ROOT, else PyTorch's pip package
# (python3 -c 'import nvidia.cudnn'), whose lib/ may hold only libcudnn.so.9.
# Exit status: non-zero if the build or a step failed (2: bad usage or no usable build).
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STAGE=${1:-all}
DRY=0
case "$STAGE" in
  all|test|bench|sanitize|quick|__step) ;;
  -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [quick [--dry-run]|all|test|bench|sanitize]" >&2; exit 2 ;;
esac
if [ "$STAGE" = quick ] && [ "${2:-}" = --dry-run ] && [ $# -eq 2 ]; then
  DRY=1
elif [ "$STAGE" != __step ] && [ $# -gt 1 ]; then
  echo "gpu_check: unexpected argument '$2' (--dry-run goes with quick)" >&2; exit 2
fi
[ "${SKIP_BENCH:-0}" = 1 ] && [ "$STAGE" = all ] && STAGE=test
BUILD=${BUILD:-$ROOT/build-gpu}
OUT=${OUT:-$BUILD/logs}
PYTHON=${PYTHON:-python3}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
status=0

# ---- cuDNN location -----------------------------------------------------------------------
# Sets CUDNN_ARGS (extra cmake arguments) and CUDNN_LIBDIR; returns 1 with CUDNN_WHY set when a
# named folder lacks cudnn.h or the library.
find_cudnn() {
  CUDNN_ARGS=() CUDNN_LIBDIR="" CUDNN_WHY="" CUDNN_DIR=""
  if [ -n "${CUDNN_ROOT:-}" ]; then
    CUDNN_DIR=$CUDNN_ROOT
  elif [ ! -f "${CUDA_HOME:-/usr/local/cuda}/include/cudnn.h" ]; then
    CUDNN_DIR=$("$PYTHON" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  fi
  [ -z "$CUDNN_DIR" ] && return 0
  local lib="" name sub
  for name in libcudnn.so libcudnn.so.9; do
    for sub in lib lib64; do
      [ -z "$lib" ] && [ -e "$CUDNN_DIR/$sub/$name" ] && lib=$CUDNN_DIR/$sub/$name
    done
  done
  if [ ! -f "$CUDNN_DIR/include/cudnn.h" ] || [ -z "$lib" ]; then
    CUDNN_WHY="cuDNN folder $CUDNN_DIR lacks include/cudnn.h or lib/libcudnn.so[.9]"
    return 1
  fi
  # Naming the library file directly also works when only libcudnn.so.9 exists.
  CUDNN_ARGS=(-DBEAMLET_CUDNN_ROOT="$CUDNN_DIR" -DCUDNN_INCLUDE_DIR="$CUDNN_DIR/include" -DCUDNN_LIBRARY="$lib")
  CUDNN_LIBDIR=$(dirname "$lib")
}

# ---- the programs and flags quick runs (the dry run checks each against the build) ---------
OP_TESTS=(test_backend_parity test_gradcheck test_cuda_device test_cuda_graph test_cuda_libs test_cuda_training)
FIXTURE_TESTS=(test_fixtures)
S2_IMAGES=1000
S3_FLAGS=(--train_limit=25600 --test_limit=1000 --epochs=1 --batch_size=128 --width=16 --seed=0 --quiet=true)
# name + flags, as `beamlet <command> --help` must list them
CLI_FLAGS=("infer:--device --limit --output --allow_cpu_fallback"
           "train:--device --experiment_id --output_dir --results ${S3_FLAGS[*]%%=*}"
           "bench:--devices --quick --output")
COMPARE_ONLY=cifar_resnet18_train_b512,cifar_resnet18_infer_b1,cifar_resnet18_infer_b256

# ---- quick: steps with verdicts and a deadline ----------------------------------------------
QUICK_BUDGET_S=${QUICK_BUDGET_S:-530}
START=$(date +%s)
SUMMARY=""
say() { echo "[gpu_check] $*" | tee -a "$SUMMARY"; }
left() { echo $((START + QUICK_BUDGET_S - $(date +%s))); }
# step NAME BUDGET_S: runs q_NAME in a fresh copy of this script (`gpu_check.sh __step NAME`)
# under `timeout`, within both its own budget and what is left of the deadline, logs to
# $OUT/NAME.log and writes one verdict line. q_NAME prints its one-line result last.
step() {
  local name=$1 budget=$2 t0 rc limit what
  limit=$(left)
  [ "$budget" -lt "$limit" ] && limit=$budget
  if [ "$limit" -lt 15 ]; then say "$name: SKIPPED (deadline: ${limit}s left)"; status=1; return 1; fi
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$0" __step "$name" > "$OUT/$name.log" 2>&1
  rc=$?
  what=$(tail -1 "$OUT/$name.log" | cut -c1-300)
  if [ $rc -eq 0 ]; then
    say "$name: PASS ($(($(date +%s) - t0))s) $what"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    say "$name: TIMEOUT after ${limit}s (see $name.log) $what"; status=1
  else
    say "$name: FAIL exit $rc ($(($(date +%s) - t0))s, see $name.log) $what"; status=1
  fi
  return $rc
}

q_build() {
  cmake -S . -B "$BUILD" "${CMAKE_ARGS[@]}" || { echo "configure failed"; return 1; }
  cmake --build "$BUILD" -j"$(nproc)" || { echo "build failed"; return 1; }
  [ -x "$BUILD/bench_cuda" ] || { echo "built without the CUDA backend (see the configure summary above)"; return 1; }
  echo "built with the CUDA backend"
}
q_run_tests() { # TEST...: each must pass and skip nothing (this machine has the GPU they need)
  local t out rc=0 failed="" skipped=""
  for t in "$@"; do
    echo "=== $t"
    out=$(cd "$BUILD" && BEAMLET_SOURCE_DIR=$ROOT BEAMLET_FIXTURES=$ROOT/tests/fixtures OMP_WAIT_POLICY=PASSIVE \
            "./$t" 2>&1) || { rc=1; failed="$failed $t"; }
    echo "$out"
    grep -q "SKIP:" <<< "$out" && { rc=1; skipped="$skipped $t"; }
  done
  if [ $rc -eq 0 ]; then echo "$# programs passed, none skipped: $*"; else echo "failed:${failed:- none}; skipped cases in:${skipped:- none}"; fi
  return $rc
}
q_ops() { q_run_tests "${OP_TESTS[@]}"; }
q_fixtures() { q_run_tests "${FIXTURE_TESTS[@]}"; }
q_stage2() {
  "$BUILD/beamlet" infer --device=gpu --limit=$S2_IMAGES --output="$OUT/stage2_gpu" || return 1
  "$BUILD/beamlet" infer --device=cpu --limit=$S2_IMAGES --output="$OUT/stage2_cpu" || return 1
  "$PYTHON" tools/check_stage_output.py --stage=2 --output="$OUT/stage2_gpu" --images=$S2_IMAGES || return 1
  "$PYTHON" - "$OUT/stage2_gpu/summary.json" "$OUT/stage2_cpu/summary.json" <<'EOF'
import json, sys
g, c = (json.load(open(p)) for p in sys.argv[1:3])
same = g["accuracy"] == c["accuracy"]
print(f"accuracy gpu {100 * g['accuracy']:.2f}% on {g['device']} vs cpu {100 * c['accuracy']:.2f}%: "
      f"{'same' if same else 'DIFFERENT'}; {g['images_per_s']:.0f} vs {c['images_per_s']:.0f} img/s")
sys.exit(0 if same else 1)
EOF
}
q_stage3() {
  "$BUILD/beamlet" train --device=gpu --experiment_id=gpu200 --output_dir="$OUT/stage3" \
    --results="$OUT/stage3/gpu-results" "${S3_FLAGS[@]}" || return 1
  "$BUILD/beamlet" train --device=cpu --experiment_id=cpu200 --output_dir="$OUT/stage3" \
    --results="$OUT/stage3/cpu-results" "${S3_FLAGS[@]}" || return 1
  "$PYTHON" - "$OUT/stage3/gpu200/metrics.jsonl" "$OUT/stage3/cpu200/metrics.jsonl" <<'EOF'
import json, sys
g, c = (json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[1:3])
# The same 200 batches from the same seed in f32; summation order differs, which training
# amplifies slowly: the mean loss over the epoch within 3%, accuracy within 2 points.
dl = abs(g["train_loss"] - c["train_loss"]) / c["train_loss"]
da = abs(g["test_accuracy"] - c["test_accuracy"])
ok = dl <= 0.03 and da <= 0.02
print(f"mean loss over 200 steps gpu {g['train_loss']:.4f} vs cpu {c['train_loss']:.4f} ({100 * dl:.2f}%), "
      f"accuracy {100 * g['test_accuracy']:.2f}% vs {100 * c['test_accuracy']:.2f}%, "
      f"{g['seconds']:.1f} s vs {c['seconds']:.1f} s: {'within' if ok else 'OUTSIDE'} 3% / 2 points")
sys.exit(0 if ok else 1)
EOF
}
q_bench() {
  "$BUILD/beamlet" bench --devices=cuda:0 --quick --output="$OUT/bench_quick.json" || return 1
  echo "wrote $OUT/bench_quick.json"
}
q_compare_variant() { # VARIANT
  local stamp; stamp=$(date -u +%Y%m%dT%H%M%SZ)
  "$PYTHON" bench/compare_cuda.py --bench="$BUILD/bench_cuda" --only=$COMPARE_ONLY --variants="$1" \
    --iters=20 --warmup=5 --beamlet="$OUT/bench_beamlet_$1.json" --out="$OUT/compare_$1_$stamp.json" || return 1
  echo "wrote $OUT/compare_$1_$stamp.json"
}
q_compare() { q_compare_variant eager_bf16_cl; }
q_compile() { q_compare_variant compile_bf16_cl; }

quick() {
  mkdir -p "$OUT"
  SUMMARY=$OUT/summary.txt
  : > "$SUMMARY"
  say "date $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), budget ${QUICK_BUDGET_S}s"
  { nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
  say "nvcc: $("$NVCC" --version 2>/dev/null | tail -1); torch: $("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo 'not importable')"
  if ! find_cudnn; then say "FAIL: $CUDNN_WHY"; exit 2; fi
  [ -n "$CUDNN_DIR" ] && say "cudnn: $CUDNN_DIR"
  export BUILD OUT PYTHON NVCC
  # Budgets: what each step needs on an H100 machine with 16 cores, with room; the deadline
  # caps them all.
  step build 240 || { say "done, status 2 (no build)"; exit 2; }
  step ops 90
  step fixtures 60
  step stage2 60
  step stage3 90
  step bench 60
  step compare 120
  if [ "$(left)" -ge 150 ]; then step compile 140; else say "compile: not run ($(left)s of the budget left)"; fi
  say "done, status $status, $(( $(date +%s) - START ))s"
  exit $status
}

# ---- dry run: what quick needs that can be checked without a GPU ----------------------------
dry_run() {
  local fails=0 b
  ok() { echo "  ok    $*"; }
  bad() { echo "  FAIL  $*"; fails=$((fails + 1)); }
  echo "gpu_check quick --dry-run (build: $BUILD)"
  if [ ! -x "$BUILD/beamlet" ]; then
    # One line instead of one failure per program and flag below.
    echo "gpu_check: no beamlet build in $BUILD: point BUILD at a build with the CUDA backend" \
         "(e.g. BUILD=build, as \`make build\` configures it where the CUDA toolkit is installed)" >&2
    return 2
  fi
  bash -n "$0" && ok "script syntax" || bad "script syntax"
  for f in q_build q_ops q_fixtures q_stage2 q_stage3 q_bench q_compare q_compile; do
    declare -F "$f" >/dev/null && ok "step $f defined" || bad "step $f missing"
  done
  for b in beamlet bench_cuda "${OP_TESTS[@]}" "${FIXTURE_TESTS[@]}"; do
    [ -x "$BUILD/$b" ] && ok "program $b built" || bad "program $b not in $BUILD (configure with the CUDA backend)"
  done
  local entry cmd flags help f
  for entry in "${CLI_FLAGS[@]}"; do
    cmd=${entry%%:*} flags=${entry#*:}
    help=$("$BUILD/beamlet" "$cmd" --help 2>&1 || true)
    for f in $flags; do
      grep -q -- "  $f " <<< "$help" && ok "beamlet $cmd $f" || bad "beamlet $cmd has no flag $f"
    done
  done
  help=$("$BUILD/bench_cuda" --help 2>&1 || true)
  for f in --out= --iters= --warmup= --only= --device=; do
    grep -q -- "\[$f" <<< "$help" && ok "bench_cuda $f" || bad "bench_cuda has no flag $f"
  done
  help=$("$PYTHON" bench/compare_cuda.py --help 2>&1 || true)
  for f in --bench --beamlet --out --only --variants --iters --warmup; do
    grep -q -- "$f" <<< "$help" && ok "compare_cuda.py $f" || bad "compare_cuda.py has no flag $f"
  done
  local names; names=$("$PYTHON" bench/compare_cuda.py --list 2>&1 || true)
  for f in ${COMPARE_ONLY//,/ } eager_bf16_cl compile_bf16_cl; do
    grep -qx -- "$f" <<< "$names" && ok "compare_cuda.py knows $f" || bad "compare_cuda.py does not know $f"
  done
  "$PYTHON" tools/check_stage_output.py --help > /dev/null 2>&1 && ok "check_stage_output.py runs" ||
    bad "tools/check_stage_output.py --help failed"
  command -v timeout >/dev/null && ok "timeout(1) present" || bad "no timeout(1)"
  # cuDNN finding, against fake folders: PyTorch's layout (only libcudnn.so.9), CUDNN_ROOT with
  # lib64/libcudnn.so, and a folder without the header.
  local fake; fake=$(mktemp -d)
  mkdir -p "$fake/pip/nvidia/cudnn/include" "$fake/pip/nvidia/cudnn/lib" "$fake/root/include" "$fake/root/lib64" \
    "$fake/bad/lib" "$fake/bin" "$fake/nocuda/include"
  touch "$fake/pip/nvidia/cudnn/include/cudnn.h" "$fake/pip/nvidia/cudnn/lib/libcudnn.so.9" \
    "$fake/root/include/cudnn.h" "$fake/root/lib64/libcudnn.so" "$fake/bad/lib/libcudnn.so.9"
  printf '#!/bin/sh\necho %s\n' "$fake/pip/nvidia/cudnn" > "$fake/bin/python3"
  chmod +x "$fake/bin/python3"
  (CUDA_HOME=$fake/nocuda PYTHON=$fake/bin/python3; unset CUDNN_ROOT
   find_cudnn && [ "$CUDNN_LIBDIR" = "$fake/pip/nvidia/cudnn/lib" ] &&
     [[ " ${CUDNN_ARGS[*]} " == *" -DCUDNN_LIBRARY=$fake/pip/nvidia/cudnn/lib/libcudnn.so.9 "* ]]) &&
    ok "cuDNN from PyTorch's package (libcudnn.so.9 only)" || bad "cuDNN from PyTorch's package not found"
  (CUDNN_ROOT=$fake/root; find_cudnn && [ "$CUDNN_LIBDIR" = "$fake/root/lib64" ]) &&
    ok "cuDNN from CUDNN_ROOT (lib64)" || bad "cuDNN from CUDNN_ROOT not found"
  (CUDNN_ROOT=$fake/bad; ! find_cudnn && [[ "$CUDNN_WHY" == *"lacks include/cudnn.h"* ]]) &&
    ok "a cuDNN folder without cudnn.h is refused" || bad "a bad cuDNN folder was accepted"
  (CUDA_HOME=$fake/root PYTHON=$fake/bin/python3; unset CUDNN_ROOT; find_cudnn && [ ${#CUDNN_ARGS[@]} -eq 0 ]) &&
    ok "cuDNN inside the CUDA toolkit needs no arguments" || bad "cuDNN inside the toolkit mishandled"
  rm -rf "$fake"
  # The deadline: each step's timeout is its own budget or what is left of QUICK_BUDGET_S,
  # whichever is smaller, plus 5 s to kill it, so the whole run ends within 9 minutes.
  [ $((QUICK_BUDGET_S + 5)) -le 540 ] && ok "deadline ${QUICK_BUDGET_S}s + 5s kill grace <= 540s" ||
    bad "QUICK_BUDGET_S=${QUICK_BUDGET_S}: the run could pass 9 minutes"
  (SUMMARY=/dev/null START=$(($(date +%s) - QUICK_BUDGET_S)); OUT=$(mktemp -d); step ops 60 >/dev/null; rc=$?
   ls "$OUT"/ops.log >/dev/null 2>&1 && rc=0; rm -rf "$OUT"; [ $rc -ne 0 ]) &&
    ok "a step past the deadline is skipped" || bad "a step past the deadline ran"
  ("$0" __step nonexistent >/dev/null 2>&1; [ $? -eq 2 ]) && ok "an unknown step is refused" || bad "an unknown step ran"
  echo "dry run: $fails failed"
  [ $fails -eq 0 ]
}

if [ "$STAGE" = __step ]; then
  # One step of quick, in its own process (so `timeout` can stop it): the environment and the
  # cuDNN location as quick found them.
  find_cudnn || { echo "$CUDNN_WHY"; exit 2; }
  [ -n "$CUDNN_LIBDIR" ] && export LD_LIBRARY_PATH=$CUDNN_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  CMAKE_ARGS=(-DBEAMLET_WERROR=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC" "${CUDNN_ARGS[@]}")
  declare -F "q_${2:-}" >/dev/null || { echo "gpu_check: no step '${2:-}'" >&2; exit 2; }
  "q_$2"
  exit $?
fi
if [ "$STAGE" = quick ]; then
  if [ $DRY = 1 ]; then dry_run; exit $?; fi
  quick
fi

# ---- the long modes ------------------------------------------------------------------------
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say "date $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
say "nvcc: $("$NVCC" --version 2>/dev/null | tail -1)"
say "torch: $("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>/dev/null || echo 'not importable')"
if ! find_cudnn; then say "FAIL: $CUDNN_WHY"; exit 2; fi
[ -n "$CUDNN_DIR" ] && say "cudnn: $CUDNN_DIR"
[ -n "$CUDNN_LIBDIR" ] && export LD_LIBRARY_PATH=$CUDNN_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
CMAKE_ARGS=(-DBEAMLET_WERROR=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC" "${CUDNN_ARGS[@]}")

say "configure: cmake ${CMAKE_ARGS[*]}"
if ! cmake -S . -B "$BUILD" "${CMAKE_ARGS[@]}" > "$OUT/configure.log" 2>&1; then
  say "FAIL: configure (see configure.log)"; tail -30 "$OUT/configure.log"; exit 2
fi
if ! grep -q "✓ CUDA backend" "$OUT/configure.log"; then
  say "FAIL: the CUDA backend is not enabled:"; grep -E "✓|✗" "$OUT/configure.log" | tee -a "$SUMMARY"
  exit 2
fi
if ! cmake --build "$BUILD" -j"$(nproc)" > "$OUT/build.log" 2>&1; then
  say "FAIL: build (see build.log)"; grep -E "error|warning" "$OUT/build.log" | head -40; exit 2
fi
say "build ok, warnings: $(grep -c -i 'warning' "$OUT/build.log")"

run_tests() {
  if ctest --test-dir "$BUILD" --output-on-failure --timeout 900 > "$OUT/ctest.log" 2>&1; then
    say "ctest: all passed"
  else
    say "ctest: FAILURES (see ctest.log)"; status=1
  fi
  grep -E "tests passed|Failed|\*\*\*" "$OUT/ctest.log" | tee -a "$SUMMARY"
  # The GPU tests once more with their full output (nmse per op, loss curves), one log each.
  for t in test_backend_parity test_cuda_device test_cuda_graph test_cuda_training; do
    if [ -x "$BUILD/$t" ]; then
      (cd "$BUILD" && BEAMLET_SOURCE_DIR=$ROOT BEAMLET_FIXTURES=$ROOT/tests/fixtures "./$t") > "$OUT/$t.log" 2>&1
      say "$t: exit $?, $(tail -1 "$OUT/$t.log")"
      grep -E "SKIP|FAIL" "$OUT/$t.log" | head -20 | tee -a "$SUMMARY"
    fi
  done
}

run_bench() {
  local stamp; stamp=$(date -u +%Y%m%dT%H%M%SZ)
  if [ ! -x "$BUILD/bench_cuda" ]; then
    say "no bench_cuda binary in $BUILD"; status=1; return
  fi
  if [ -x "$BUILD/bench_cuda_ops" ]; then
    # Single ops at ResNet-18 shapes, f32 and bf16: where the kernels have room.
    "$BUILD/bench_cuda_ops" --out="$OUT/bench_ops_$stamp.json" > "$OUT/bench_cuda_ops.log" 2>&1
    say "bench_cuda_ops: exit $? ($OUT/bench_ops_$stamp.json, table in bench_cuda_ops.log)"
  fi
  if "$PYTHON" -c 'import torch, torchvision' 2>/dev/null; then
    # bench_cuda and PyTorch on the same GPU in one go; ratios printed and saved.
    if "$PYTHON" bench/compare_cuda.py --bench="$BUILD/bench_cuda" \
         --beamlet="$OUT/bench_beamlet_$stamp.json" --out="$OUT/bench_compare_$stamp.json" \
         > "$OUT/compare_cuda.log" 2>&1; then
      say "compare_cuda.py: ok ($OUT/bench_compare_$stamp.json: commit it under bench/results/)"
    else
      say "compare_cuda.py: FAILED (see compare_cuda.log)"; status=1
    fi
    tail -30 "$OUT/compare_cuda.log" | tee -a "$SUMMARY"
  else
    say "PyTorch/torchvision not importable: beamlet only, no comparison"
    if "$BUILD/bench_cuda" --out="$OUT/bench_beamlet_$stamp.json" > "$OUT/bench_cuda.log" 2>&1; then
      say "bench_cuda: ok ($OUT/bench_beamlet_$stamp.json)"
    else
      say "bench_cuda: FAILED (see bench_cuda.log)"; status=1
    fi
    tail -20 "$OUT/bench_cuda.log" | tee -a "$SUMMARY"
  fi
}

# Out-of-bounds or misaligned accesses in the kernels, uninitialized reads of device memory and
# leaked allocations, on the op table and the graph test (slow: kernels run 10-100x slower).
run_sanitize() {
  local san="" cand t rc
  for cand in "$(command -v compute-sanitizer)" "$(dirname "$NVCC")/compute-sanitizer" \
              "$(dirname "$NVCC")/../compute-sanitizer/compute-sanitizer"; do
    [ -z "$san" ] && [ -n "$cand" ] && [ -x "$cand" ] && san=$cand
  done
  if [ -z "$san" ]; then say "sanitize skipped: no compute-sanitizer in this toolkit"; return; fi
  for t in test_backend_parity test_cuda_graph test_cuda_device; do
    (cd "$BUILD" && "$san" --tool memcheck --leak-check full --error-exitcode 99 "./$t") \
      > "$OUT/sanitize_$t.log" 2>&1
    rc=$?
    say "memcheck $t: exit $rc, $(grep -E 'ERROR SUMMARY' "$OUT/sanitize_$t.log" | tail -1)"
    [ $rc -ne 0 ] && status=1
  done
}

case "$STAGE" in
  sanitize) run_sanitize ;;
  all) run_tests; run_bench ;;
  test) run_tests ;;
  bench) run_bench ;;
esac

say "done, status $status"
exit $status
