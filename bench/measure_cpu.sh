#!/usr/bin/env bash
# Re-measures beamlet's CPU picture in one command: the comparison with today's engines
# (compare_cpu.py -> bench/results/cpu-<date>.json), the per-layer table (profile_layers.py ->
# layers-<date>.json) and oneDNN 2.6 against 3.2 on the convolutions (onednn/compare_versions.sh
# -> onednn-versions-<date>.json). Builds first; needs scripts/setup.sh --bench. Run it in a
# quiet window: every result records the machine's load, but a busy machine still moves them.
#   bench/measure_cpu.sh [--quick] [--threads=N]
#     --quick   fewer rounds and shorter runs (a check that everything works, not a result)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
quick=0 threads=2
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --threads=*) threads=${arg#*=} ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "measure_cpu: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
py="$root/.venv/bin/python"
if [[ ! -x "$py" ]] || ! "$py" -c 'import torch, onnxruntime, openvino' 2>/dev/null; then
  echo "measure_cpu: the benchmark venv is missing; run scripts/setup.sh --bench" >&2
  exit 1
fi
# With the kernel's autogroup scheduling on, CPU time is shared between sessions before nice is
# looked at, so a `nice 19` build in another terminal still takes up to half the cores from the
# timed engines (seen on the 2-core VM, 2026-12-07). Say so; turning it off needs root.
if [[ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" == 1 ]]; then
  echo "measure_cpu: note: autogroup scheduling is on, so niced jobs in other sessions still compete;" \
       "for a quiet window run nothing else, or (as root) echo 0 > /proc/sys/kernel/sched_autogroup_enabled" >&2
fi
[[ -f "$root/build/CMakeCache.txt" ]] || cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$root/build" -j"$threads" --target bench_cpu bench_cpu_ops

if (( quick )); then
  "$py" "$root/bench/compare_cpu.py" --threads="$threads" --rounds=1 --min-seconds=0.5 --first-rounds=2 \
    --out="$root/build/cpu-quick.json"
  "$py" "$root/bench/profile_layers.py" --threads="$threads" --rounds=1 --iters=5 --min-seconds=0.05 \
    --out="$root/build/layers-quick.json"
  "$root/bench/onednn/compare_versions.sh" --threads="$threads" --rounds=1 --min-seconds=0.05 \
    --out="$root/build/onednn-versions-quick.json"
else
  "$py" "$root/bench/compare_cpu.py" --threads="$threads"
  "$py" "$root/bench/profile_layers.py" --threads="$threads"
  "$root/bench/onednn/compare_versions.sh" --threads="$threads"
fi
