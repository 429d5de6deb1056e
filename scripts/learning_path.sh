#!/usr/bin/env bash
# The learning path on Fashion-MNIST, stage by stage, sized for a 2-core laptop (a few minutes):
#   1  CPU inference with RunInference and the shipped model
#   2  GPU inference (runs when a GPU is visible; skipped with a note otherwise)
#   3  training inside a pipeline, with a checkpoint every epoch
#   4  a parallel sweep over the local runner's workers, the best model deployed
# Outputs go to beamlet-out/. Run from the repository root after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
OUT=${OUT_DIR:-beamlet-out}
mkdir -p "$OUT"

banner() { printf '\n=== %s ===\n' "$*"; }

banner "stage 1: CPU inference (RunInference over the Fashion-MNIST test split)"
"$B/examples/01_cpu_inference" --output="$OUT/stage1"

banner "stage 2: GPU inference"
if [ "$("$B/beamlet" devices | grep -c '^cuda:')" -gt 0 ]; then
  "$B/examples/02_gpu_inference" --output="$OUT/stage2"
else
  echo "skipped: no GPU on this machine ('beamlet devices' lists what beamlet sees)."
  echo "On a machine with an NVIDIA GPU this stage runs the same pipeline with an accelerator hint."
fi

banner "stage 3: training in a pipeline (1 epoch on 12,000 images, width 8, on the CPU)"
"$B/beamlet" train --device=cpu --experiment_id=path-stage3 --width=8 --epochs=1 --batch_size=128 \
  --learning_rate=0.05 --train_limit=12000 --output_dir="$OUT" --results="$OUT/stage3-results"

banner "stage 4: a parallel sweep (4 configs over 2 local workers, on the CPU)"
"$B/beamlet" sweep --device=cpu --runner=local --num_workers=2 --epochs=1 --width=4 --batch_size=64 \
  --learning_rates=0.05,0.01 --batch_sizes=64 --models=resnet18,resnet34 --train_limit=4000 --test_limit=2000 \
  --output_dir="$OUT" --results="$OUT/sweep-results" --serving_dir="$OUT/serving"

banner "done: outputs are in $OUT/"
