#!/usr/bin/env bash
# The learning path on Fashion-MNIST, stage by stage, sized for a 2-core laptop (a few minutes):
#   1  CPU inference with RunInference and the shipped model
#   2  GPU inference (runs when a GPU is visible; skipped with a note otherwise)
#   3  training inside a pipeline, with a checkpoint every epoch
#   4  a parallel sweep over the local runner's workers, the best model deployed
# Outputs go to beamlet-out/. Run from the repository root after `make build`.
#   scripts/learning_path.sh          the path as above
#   scripts/learning_path.sh --tiny   every stage on a tiny configuration (seconds, for CI's
#                                     nightly): stage 2 runs on the CPU (--allow_cpu_fallback)
#                                     where there is no GPU, so all four stages always run
# BUILD (default build) and OUT_DIR (default beamlet-out) move the programs and the outputs.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
TINY=0
case "${1:-}" in
  "") ;;
  --tiny) TINY=1 ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

B=${BUILD:-build}
OUT=${OUT_DIR:-beamlet-out}
mkdir -p "$OUT"

# Sizes: the default path, or the tiny one. Only sizes differ; every stage runs the same program.
if [ "$TINY" = 1 ]; then
  INFER=(--limit=500)
  TRAIN=(--width=4 --epochs=1 --batch_size=64 --learning_rate=0.05 --train_limit=512 --test_limit=500 --quiet=true)
  SWEEP=(--epochs=1 --width=4 --learning_rates=0.05,0.01 --batch_sizes=64 --models=resnet18
         --train_limit=500 --test_limit=200)
  S3="1 epoch on 512 images, width 4"; S4="2 configs over 2 local workers, width 4"
else
  INFER=()
  TRAIN=(--width=8 --epochs=1 --batch_size=128 --learning_rate=0.05 --train_limit=12000)
  SWEEP=(--epochs=1 --width=4 --learning_rates=0.05,0.01 --batch_sizes=64
         --models=resnet18,resnet34 --train_limit=4000 --test_limit=2000)
  S3="1 epoch on 12,000 images, width 8"; S4="4 configs over 2 local workers"
fi

banner() { printf '\n=== %s ===\n' "$*"; }

banner "stage 1: CPU inference (RunInference over the Fashion-MNIST test split)"
"$B/examples/01_cpu_inference" --output="$OUT/stage1" "${INFER[@]}"

banner "stage 2: GPU inference"
if [ "$("$B/beamlet" devices | grep -c '^cuda:')" -gt 0 ]; then
  "$B/examples/02_gpu_inference" --output="$OUT/stage2" "${INFER[@]}"
elif [ "$TINY" = 1 ]; then
  echo "no GPU: running the same pipeline on the CPU (--allow_cpu_fallback), to keep stage 2 tested."
  "$B/examples/02_gpu_inference" --output="$OUT/stage2" --allow_cpu_fallback "${INFER[@]}"
else
  echo "skipped: no GPU on this machine ('beamlet devices' lists what beamlet sees)."
  echo "On a machine with an NVIDIA GPU this stage runs the same pipeline with an accelerator hint."
fi

banner "stage 3: training in a pipeline ($S3, on the CPU)"
"$B/beamlet" train --device=cpu --experiment_id=path-stage3 "${TRAIN[@]}" \
  --output_dir="$OUT" --results="$OUT/stage3-results"

banner "stage 4: a parallel sweep ($S4, on the CPU)"
"$B/beamlet" sweep --device=cpu --runner=local --num_workers=2 "${SWEEP[@]}" \
  --output_dir="$OUT" --results="$OUT/sweep-results" --serving_dir="$OUT/serving"

banner "done: outputs are in $OUT/"
