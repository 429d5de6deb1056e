"""Stage 3 of the learning path as an Apache Beam pipeline: training on an accelerator, inside a
pipeline. Beam has no training step; beamlet's TrainModelDoFn is one. The element is a
TrainingConfig; the step that needs the accelerator trains it, with a checkpoint every epoch,
so a retried or re-run pipeline resumes where the last epoch ended.

    Create([config]) -> ParDo(TrainModelDoFn) [accelerator hint] -> WriteToText(result, JSON)

    python python/examples/tpu_training.py --device=cpu --width=8 --epochs=1   # a local try
    python python/examples/tpu_training.py --device=cpu --stop_after_epochs=1  # then again: resumes

The "tpu" device is beamlet's XLA backend on libtpu (the xla backend's issue); until a build
has it, --device=tpu fails with beamlet's message naming what is missing, and --device=gpu or
--device=cpu train the same config elsewhere. On Dataflow with TPU workers (the output_dir must
outlive a worker for a retry to resume: a mounted shared disk):

    python python/examples/tpu_training.py --runner=DataflowRunner --project=PROJECT \
        --region=us-west4 --temp_location=gs://BUCKET/tmp \
        --sdk_container_image=REGISTRY/beamlet-beam:0.1.0 --sdk_location=container \
        --dataflow_service_options="worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1" \
        --machine_type=ct5lp-hightpu-1t --device=tpu --output_dir=/mnt/shared/beamlet-out
"""
import argparse
import json
import logging
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beamlet import BeamletError
from beamlet.beam import AcceleratorError, TrainModelDoFn, resource_hints, validate_pipeline_options
from beamlet.beam.flags import add_config_flags, config_from_args


def parse(argv):
    parser = argparse.ArgumentParser(description="Stage 3: one TrainingConfig trained on an accelerator inside a "
                                                 "Beam pipeline. Beam's options (--runner, ...) pass through.")
    defaults = add_config_flags(parser, {"experiment_id": "stage3-fashion-resnet18", "width": 16, "epochs": 2,
                                         "batch_size": 128, "device": "tpu"})
    parser.add_argument("--accelerator", default=None,
                        help="the training step's accelerator hint (default: one for the device; none on the CPU)")
    parser.add_argument("--allow_unknown_accelerator", action="store_true",
                        help="accept an accelerator type the local check does not know yet")
    args, beam_args = parser.parse_known_args(argv)
    if not any(a.startswith("--runner") for a in beam_args):
        beam_args.append("--runner=FnApiRunner")  # Beam's default may try to download Prism
    return args, config_from_args(args, defaults), PipelineOptions(beam_args)


def main(argv=None):
    args, config, options = parse(argv)
    known = not args.allow_unknown_accelerator
    hints = resource_hints(config["device"], args.accelerator, known)  # checked now, not on the service
    validate_pipeline_options(options, device=config["device"], known_types_only=known)
    results = f"{config['output_dir']}/stage3-results"
    start = time.time()
    with beam.Pipeline(options=options) as p:
        _ = (p
             | "CreateConfig" >> beam.Create([config])
             | "TrainModel" >> beam.ParDo(TrainModelDoFn()).with_resource_hints(**hints)
             | "ToJson" >> beam.Map(json.dumps)
             | "WriteResults" >> beam.io.WriteToText(results, ".json", shard_name_template=""))
    seconds = time.time() - start
    if "://" in results:
        print(f"stage 3, training (Beam): done in {seconds:.1f} s; result in {results}.json")
        return 0
    with open(f"{results}.json") as f:
        r = json.load(f)
    done = "done" if r["weights_path"] else f"stopped after epoch {r['epochs']} (run again to resume)"
    resumed = ", resumed" if r["resumed"] else ""
    print(f"stage 3, training (Beam): {r['experiment_id']} on {r['device']}: {done}{resumed}")
    print(f"  accuracy {100 * r['accuracy']:.2f}% after {r['epochs']} epoch(s), {r['images_per_s']:.0f} images/s, "
          f"{r['wall_time_s']:.1f} s of training ({seconds:.1f} s with the pipeline)")
    print(f"  checkpoint: {r['checkpoint_path']}\n  weights:    {r['weights_path'] or '(after the last epoch)'}")
    print(f"  result:     {results}.json")
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.ERROR)  # Beam's local runners are chatty
    try:
        sys.exit(main())
    except (AcceleratorError, BeamletError, ValueError) as e:  # one clear line, not a traceback
        sys.exit(f"tpu_training: {e}")
