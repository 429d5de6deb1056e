#!/usr/bin/env python3
"""Checks what a learning-path stage wrote, so CI can tell a run that worked from one that only
exited 0 (a GPU run that quietly fell back to the CPU, a batch that went to the dead letters, an
accuracy that collapsed). Standard library only.

  tools/check_stage_output.py --stage=2 --output=DIR --images=1000 --min_accuracy=0.88
  tools/check_stage_output.py --stage=3 --results=beamlet-out/stage3-results --min_accuracy=0.8
  tools/check_stage_output.py --stage=4 --results=PREFIX --experiments=18 --serving_dir=DIR

Stages 1 and 2 (examples/01_cpu_inference, 02_gpu_inference, `beamlet infer`): DIR holds
summary.json, predictions-*.jsonl and dead_letter-*.jsonl. Checked: the image count (--images),
one prediction per image with top-k classes whose probabilities are in [0, 1] and descending,
the accuracy recomputed from the predictions equals the summary's and is at least
--min_accuracy, no failed batch and no dead letter, and for stage 2 that it ran on a GPU
(unless --allow_cpu).
Stages 3 and 4 (`beamlet train`, `beamlet sweep`): --results is the results file or its prefix
(the -NNNNN-of-NNNNN.jsonl shards are found). Checked: the number of results (--experiments),
each one's finite loss, at least one epoch, its weights file, the device (a GPU unless
--allow_cpu); --min_accuracy applies to stage 3's result and to stage 4's best one (a sweep
exists to have losers); for stage 4 with --serving_dir, that the deployed model is the best
result's weights, byte for byte.
Exit status: 0 all checks passed, 1 a check failed, 2 bad usage or unreadable output.
"""
import argparse
import glob
import json
import math
import os
import sys

failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
        print(f"  ok    {what}")
    else:
        failures.append(what)
        print(f"  FAIL  {what}")


def read_jsonl(paths):
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        sys.exit(f"check_stage_output: {path}:{n}: not JSON: {e}")
    return rows


def on_gpu(device):
    return str(device).startswith("cuda")


def check_inference(a):
    summary_path = os.path.join(a.output, "summary.json")
    try:
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"check_stage_output: {summary_path}: {e}", file=sys.stderr)
        return 2
    preds = read_jsonl(sorted(glob.glob(os.path.join(a.output, "predictions-*.jsonl"))))
    dead = read_jsonl(sorted(glob.glob(os.path.join(a.output, "dead_letter-*.jsonl"))))
    print(f"stage {a.stage}: {summary_path}: {summary.get('images')} images on "
          f"{summary.get('device')}, accuracy {summary.get('accuracy')}")
    check(summary.get("stage") == a.stage, f"summary says stage {summary.get('stage')}, expected {a.stage}")
    if a.images is not None:
        check(summary.get("images") == a.images, f"{summary.get('images')} images in the summary, expected {a.images}")
    check(len(preds) == summary.get("images"), f"{len(preds)} predictions for {summary.get('images')} images")
    check(len({p.get("example") for p in preds}) == len(preds), "every example predicted once")
    well_formed = 0
    correct = labelled = 0
    for p in preds:
        inf = p.get("inference") or []
        probs = [c.get("probability", -1) for c in inf]
        if inf and all(0 <= q <= 1 for q in probs) and probs == sorted(probs, reverse=True):
            well_formed += 1
        if p.get("label", -1) >= 0 and inf:
            labelled += 1
            correct += inf[0].get("class") == p["label"]
    check(well_formed == len(preds), f"{well_formed}/{len(preds)} predictions with top-k probabilities in [0, 1], descending")
    acc = correct / labelled if labelled else 0.0
    check(abs(acc - summary.get("accuracy", -1)) < 1e-5,
          f"accuracy from the predictions {acc:.6f} equals the summary's {summary.get('accuracy')}")
    check(acc >= a.min_accuracy, f"accuracy {acc:.4f} >= {a.min_accuracy}")
    check(summary.get("failed_batches") == 0, f"{summary.get('failed_batches')} failed batches")
    check(len(dead) == 0, f"{len(dead)} dead letters")
    if a.stage == 2 and not a.allow_cpu:
        check(on_gpu(summary.get("device")) and summary.get("gpus", 0) >= 1,
              f"ran on a GPU (device {summary.get('device')!r}, {summary.get('gpus')} GPU(s) visible)")
    return 0


def check_training(a):
    paths = [a.results] if os.path.isfile(a.results) else sorted(glob.glob(a.results + "-*-of-*.jsonl"))
    if not paths:
        print(f"check_stage_output: no results at {a.results} (nor {a.results}-*-of-*.jsonl)", file=sys.stderr)
        return 2
    results = read_jsonl(paths)
    print(f"stage {a.stage}: {len(results)} result(s) in {', '.join(paths)}")
    if a.experiments is not None:
        check(len(results) == a.experiments, f"{len(results)} results, expected {a.experiments}")
    check(len(results) > 0, "at least one result")
    for r in results:
        name = r.get("experiment_id", "?")
        accuracy, loss = r.get("accuracy", -1), r.get("loss", float("nan"))
        if a.stage == 3:
            check(accuracy >= a.min_accuracy, f"{name}: accuracy {accuracy:.4f} >= {a.min_accuracy}")
        check(isinstance(loss, (int, float)) and math.isfinite(loss), f"{name}: loss {loss} is finite")
        check(r.get("epochs", 0) >= 1, f"{name}: {r.get('epochs')} epoch(s)")
        check(os.path.isfile(r.get("weights_path", "")), f"{name}: weights at {r.get('weights_path')}")
        if not a.allow_cpu:
            check(on_gpu(r.get("device")), f"{name}: trained on a GPU (device {r.get('device')!r})")
    if a.stage == 4 and results:
        top = max(r.get("accuracy", -1) for r in results)
        check(top >= a.min_accuracy, f"best accuracy {top:.4f} >= {a.min_accuracy}")
    if a.stage == 4 and a.serving_dir and results:
        # BestModel's rule: the highest accuracy, ties to the smaller experiment id.
        best = sorted(results, key=lambda r: (-r.get("accuracy", -1), r.get("experiment_id", "")))[0]
        deployed = os.path.join(a.serving_dir, "model.safetensors")
        same = False
        if os.path.isfile(deployed) and os.path.isfile(best.get("weights_path", "")):
            with open(deployed, "rb") as f1, open(best["weights_path"], "rb") as f2:
                same = f1.read() == f2.read()
        check(same, f"{deployed} is the best result's weights ({best.get('experiment_id')})")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", type=int, choices=[1, 2, 3, 4], required=True)
    p.add_argument("--output", help="stages 1-2: the folder holding summary.json")
    p.add_argument("--results", help="stages 3-4: the results file, or its prefix")
    p.add_argument("--images", type=int, help="stages 1-2: the number of images expected")
    p.add_argument("--experiments", type=int, help="stages 3-4: the number of results expected")
    p.add_argument("--min_accuracy", type=float, default=0.0, help="the lowest accuracy that passes (0-1)")
    p.add_argument("--allow_cpu", action="store_true", help="accept a run on the CPU (stage 2-4 on a CPU-only machine)")
    p.add_argument("--serving_dir", help="stage 4: the folder the best model was deployed to")
    a = p.parse_args()
    if a.stage in (1, 2) and not a.output:
        p.error("--stage=1|2 needs --output=DIR")
    if a.stage in (3, 4) and not a.results:
        p.error("--stage=3|4 needs --results=FILE_OR_PREFIX")
    rc = check_inference(a) if a.stage in (1, 2) else check_training(a)
    if rc:
        return rc
    print(f"check_stage_output: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
