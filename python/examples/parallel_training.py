"""Stage 4 of the learning path as an Apache Beam pipeline: a parallel sweep. The proposal's
grid (learning rates x batch sizes x models, 18 configs by default) is reshuffled over the
workers, each config trained by TrainModelDoFn (checkpointed, resumable), the most accurate one
picked by BestModelFn and deployed by DeployBestModel.

    Create(grid) -> Reshuffle -> ParDo(TrainModelDoFn) [accelerator] -> CombineGlobally(BestModelFn)
                                        |                                      -> ParDo(DeployBestModel)
                                        \-> WriteToText(all results)

    python python/examples/parallel_training.py --device=cpu --epochs=1 --width=4 \
        --train_limit=2048 --learning_rates=0.1,0.01 --batch_sizes=64 --models=resnet18 \
        --runner=FnApiRunner --direct_running_mode=multi_processing --direct_num_workers=2

On Dataflow, each worker a GPU machine (output_dir and serving_dir on a disk every worker
mounts, so retries resume and the deployed model outlives the job):

    python python/examples/parallel_training.py --runner=DataflowRunner --project=PROJECT \
        --region=us-central1 --temp_location=gs://BUCKET/tmp \
        --sdk_container_image=REGISTRY/beamlet-beam-gpu:0.1.0 --sdk_location=container \
        --dataflow_service_options="worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" \
        --machine_type=g2-standard-4 --max_num_workers=6 --device=gpu \
        --output_dir=/mnt/shared/beamlet-out --serving_dir=gs://BUCKET/serving
"""
import argparse
import json
import logging
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beamlet import BeamletError
from beamlet.beam import (AcceleratorError, BestModelFn, DeployBestModel, TrainModelDoFn, resource_hints,
                          validate_pipeline_options)
from beamlet.beam.flags import add_config_flags, add_grid_flags, grid_from_args


def parse(argv):
    parser = argparse.ArgumentParser(description="Stage 4: the sweep grid trained in parallel by Beam's workers; "
                                                 "the best config deployed. Beam's options pass through.")
    defaults = add_config_flags(parser, {"width": 16, "epochs": 2, "device": "auto"})
    add_grid_flags(parser)
    parser.add_argument("--serving_dir", default="beamlet-out/serving",
                        help="where the best model is deployed (model.safetensors, model.json)")
    parser.add_argument("--accelerator", default=None,
                        help="the training step's accelerator hint (default: one for the device; none on the CPU)")
    parser.add_argument("--allow_unknown_accelerator", action="store_true",
                        help="accept an accelerator type the local check does not know yet")
    args, beam_args = parser.parse_known_args(argv)
    if not any(a.startswith("--runner") for a in beam_args):
        beam_args.append("--runner=FnApiRunner")  # Beam's default may try to download Prism
    base = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    base = dict(defaults, **{k: v for k, v in base.items() if k not in ("learning_rate", "batch_size", "model",
                                                                        "experiment_id")})
    return args, grid_from_args(args, base), PipelineOptions(beam_args)


def main(argv=None):
    args, grid, options = parse(argv)
    device = grid[0]["device"]
    known = not args.allow_unknown_accelerator
    hints = resource_hints(device, args.accelerator, known)
    validate_pipeline_options(options, device=device, known_types_only=known)
    out = f"{grid[0]['output_dir']}/stage4-results"
    start = time.time()
    with beam.Pipeline(options=options) as p:
        results = (p
                   | "CreateGrid" >> beam.Create(grid)
                   | "Reshuffle" >> beam.Reshuffle()  # spread the configs over the workers
                   | "TrainModel" >> beam.ParDo(TrainModelDoFn()).with_resource_hints(**hints))
        _ = results | "ToJson" >> beam.Map(json.dumps) | "WriteResults" >> beam.io.WriteToText(out, ".jsonl")
        _ = (results
             | "BestModel" >> beam.CombineGlobally(BestModelFn())
             | "Deploy" >> beam.ParDo(DeployBestModel(args.serving_dir))
             | "BestToJson" >> beam.Map(json.dumps)
             | "WriteBest" >> beam.io.WriteToText(f"{out}-best", ".json", shard_name_template=""))
    seconds = time.time() - start
    if "://" in out:
        print(f"stage 4, sweep (Beam): {len(grid)} configs in {seconds:.1f} s; best in {out}-best.json")
        return 0
    with open(f"{out}-best.json") as f:
        best = json.load(f)
    print(f"stage 4, sweep (Beam): {len(grid)} configs trained in {seconds:.1f} s")
    print(f"  best: {best['experiment_id']}, accuracy {100 * best['accuracy']:.2f}%, deployed to "
          f"{args.serving_dir}/model.safetensors")
    print(f"  results: {out}-*.jsonl\n  best:    {out}-best.json")
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.ERROR)  # Beam's local runners are chatty
    try:
        sys.exit(main())
    except (AcceleratorError, BeamletError, ValueError) as e:  # one clear line, not a traceback
        sys.exit(f"parallel_training: {e}")
