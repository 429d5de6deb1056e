#!/usr/bin/env bash
# GPU runbook: on a machine with an NVIDIA GPU, build beamlet with the CUDA backend, run every
# test (the GPU ones included), then the CUDA benchmark and its PyTorch comparison, keeping
# every log. One call does it all:
#
#     tools/gpu_check.sh                # build, tests, benchmark; logs in build-gpu/logs
#     OUT=/some/dir tools/gpu_check.sh  # logs (and bench JSON) in $OUT
#     tools/gpu_check.sh test           # build and tests only
#     tools/gpu_check.sh bench          # build (incremental) and benchmark only
#     tools/gpu_check.sh sanitize       # the GPU tests under compute-sanitizer memcheck
#
# The whole run can take more than 10 minutes (torch.compile compiles each workload), so on a
# machine with a per-command limit run `test` and `bench` as two calls: the build directory
# is kept between them.
#
# cuDNN: used from /usr/local/cuda when cudnn.h is there, else from $CUDNN_ROOT, else from
# PyTorch's pip package (nvidia.cudnn), whose lib/ may hold only libcudnn.so.9.
# Exit status: non-zero if the build or a test failed.
set -u -o pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
case "$STAGE" in all|test|bench|sanitize) ;; *) echo "usage: $0 [all|test|bench|sanitize]" >&2; exit 2 ;; esac
[ "${SKIP_BENCH:-0}" = 1 ] && [ "$STAGE" = all ] && STAGE=test
ROOT=$(pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
OUT=${OUT:-$BUILD/logs}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say() { echo "[gpu_check] $*" | tee -a "$SUMMARY"; }
status=0

say "date $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
{ nvidia-smi || true; } > "$OUT/nvidia-smi.txt" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
say "nvcc: $("$NVCC" --version 2>/dev/null | tail -1)"
say "torch: $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>/dev/null || echo 'not importable')"

# ---- cuDNN location ---------------------------------------------------------------------
CMAKE_ARGS=(-DBEAMLET_WERROR=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC")
CUDNN_DIR=""
if [ -n "${CUDNN_ROOT:-}" ]; then
  CUDNN_DIR=$CUDNN_ROOT
elif [ ! -f /usr/local/cuda/include/cudnn.h ]; then
  CUDNN_DIR=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
fi
if [ -n "$CUDNN_DIR" ]; then
  lib=""
  for name in libcudnn.so libcudnn.so.9; do
    for sub in lib lib64; do
      [ -z "$lib" ] && [ -e "$CUDNN_DIR/$sub/$name" ] && lib=$CUDNN_DIR/$sub/$name
    done
  done
  if [ ! -f "$CUDNN_DIR/include/cudnn.h" ] || [ -z "$lib" ]; then
    say "FAIL: cuDNN folder $CUDNN_DIR lacks include/cudnn.h or lib/libcudnn.so[.9]"
    exit 2
  fi
  say "cudnn: $CUDNN_DIR ($lib)"
  # Naming the library file directly also works when only libcudnn.so.9 exists.
  CMAKE_ARGS+=(-DBEAMLET_CUDNN_ROOT="$CUDNN_DIR" -DCUDNN_INCLUDE_DIR="$CUDNN_DIR/include"
               -DCUDNN_LIBRARY="$lib")
  # libcudnn loads its engine libraries (libcudnn_cnn.so.9, ...) from its own folder.
  export LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

# ---- build ------------------------------------------------------------------------------
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

# ---- tests ------------------------------------------------------------------------------
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

# ---- benchmark --------------------------------------------------------------------------
run_bench() {
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ ! -x "$BUILD/bench_cuda" ]; then
  say "no bench_cuda binary in $BUILD"; status=1; return
fi
if [ -x "$BUILD/bench_cuda_ops" ]; then
  # Single ops at ResNet-18 shapes, f32 and bf16: where the kernels have room.
  "$BUILD/bench_cuda_ops" --out="$OUT/bench_ops_$STAMP.json" > "$OUT/bench_cuda_ops.log" 2>&1
  say "bench_cuda_ops: exit $? ($OUT/bench_ops_$STAMP.json, table in bench_cuda_ops.log)"
fi
if python3 -c 'import torch, torchvision' 2>/dev/null; then
  # bench_cuda and PyTorch on the same GPU in one go; ratios printed and saved.
  if python3 bench/compare_cuda.py --bench="$BUILD/bench_cuda" \
       --beamlet="$OUT/bench_beamlet_$STAMP.json" --out="$OUT/bench_compare_$STAMP.json" \
       > "$OUT/compare_cuda.log" 2>&1; then
    mkdir -p bench/results
    cp "$OUT/bench_compare_$STAMP.json" "bench/results/cuda_$STAMP.json"
    say "compare_cuda.py: ok; bench/results/cuda_$STAMP.json written (from $OUT/bench_compare_$STAMP.json: commit it)"
  else
    say "compare_cuda.py: FAILED (see compare_cuda.log)"; status=1
  fi
  tail -30 "$OUT/compare_cuda.log" | tee -a "$SUMMARY"
else
  say "PyTorch/torchvision not importable: beamlet only, no comparison"
  if "$BUILD/bench_cuda" --out="$OUT/bench_beamlet_$STAMP.json" > "$OUT/bench_cuda.log" 2>&1; then
    say "bench_cuda: ok ($OUT/bench_beamlet_$STAMP.json)"
  else
    say "bench_cuda: FAILED (see bench_cuda.log)"; status=1
  fi
  tail -20 "$OUT/bench_cuda.log" | tee -a "$SUMMARY"
fi
}

# ---- memory checking ----------------------------------------------------------------------
# Out-of-bounds or misaligned accesses in the kernels, uninitialized reads of device memory and
# leaked allocations, on the op table and the graph test (slow: kernels run 10-100x slower).
run_sanitize() {
SAN=""
for cand in "$(command -v compute-sanitizer)" "$(dirname "$NVCC")/compute-sanitizer" \
            "$(dirname "$NVCC")/../compute-sanitizer/compute-sanitizer"; do
  [ -z "$SAN" ] && [ -n "$cand" ] && [ -x "$cand" ] && SAN=$cand
done
if [ -z "$SAN" ]; then say "sanitize skipped: no compute-sanitizer in this toolkit"; return; fi
for t in test_backend_parity test_cuda_graph test_cuda_device; do
  (cd "$BUILD" && "$SAN" --tool memcheck --leak-check full --error-exitcode 99 "./$t") \
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
