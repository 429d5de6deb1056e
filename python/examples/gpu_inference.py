"""Stage 2 of the learning path as an Apache Beam pipeline: stage 1 (cpu_inference.py) plus one
concept, the accelerator. Compared with cpu_inference.py (diff them), the model runs on a GPU,
the RunInference step carries an accelerator resource hint so that a runner places it on a GPU
worker, and every accelerator string is checked before submission.

    python python/examples/gpu_inference.py                          # on this machine's GPU
    python python/examples/gpu_inference.py --allow_cpu_fallback --limit=1000   # no GPU: CPU, loudly

On Dataflow the hint (--accelerator, checked here before submission; Beam does not check it)
places the step on a GPU worker, or the whole job asks for GPU workers:

    python python/examples/gpu_inference.py --runner=DataflowRunner --project=PROJECT \
        --region=us-central1 --temp_location=gs://BUCKET/tmp \
        --sdk_container_image=REGISTRY/beamlet-beam-gpu:0.1.0 --sdk_location=container \
        --dataflow_service_options="worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" \
        --machine_type=g2-standard-4 \
        --weights=gs://BUCKET/fashion-resnet18-w8.safetensors --output=gs://BUCKET/stage2
"""
import argparse
import json
import logging
import os
import sys
import time

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from beamlet import BeamletError, shipped_model
from beamlet.beam import (DEFAULT_HINTS, AcceleratorError, AccuracyFn, BeamletModelHandler, ReadFashionMnist,
                          dead_letter_to_dict, fashion_mnist_example, prediction_to_dict, validate_accelerator,
                          validate_pipeline_options)

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def parse(argv):
    parser = argparse.ArgumentParser(description="Stage 2: Fashion-MNIST through RunInference with beamlet on a "
                                                 "GPU. Beam's options (--runner, ...) pass through.")
    parser.add_argument("--weights", default="",
                        help="the model: a torchvision-layout ResNet as safetensors (local or gs://); "
                             "default: the shipped model (beamlet.shipped_model())")
    parser.add_argument("--data_dir", default="", help="Fashion-MNIST folder (default: its standard place)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test images (0 = all 10,000)")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="the batch RunInference hands the model (a bundle's last may be smaller)")
    parser.add_argument("--top_k", type=int, default=5, help="classes kept per prediction")
    parser.add_argument("--output", default="beamlet-out/beam_gpu_inference", help="folder or gs:// prefix")
    parser.add_argument("--device", default="gpu", help="gpu, cuda:N, or auto")
    parser.add_argument("--accelerator", default=DEFAULT_HINTS["gpu"],
                        help="the RunInference step's accelerator hint (Dataflow's syntax)")
    parser.add_argument("--allow_cpu_fallback", action="store_true",
                        help="no GPU on a worker: run on the CPU, with a loud warning")
    parser.add_argument("--allow_unknown_accelerator", action="store_true",
                        help="accept an accelerator type the local check does not know yet")
    args, beam_args = parser.parse_known_args(argv)
    if not any(a.startswith("--runner") for a in beam_args):
        beam_args.append("--runner=FnApiRunner")  # Beam's default may try to download Prism
    return args, PipelineOptions(beam_args)


def main(argv=None):
    args, options = parse(argv)
    # The new concept's checks: every accelerator string, before anything is built or submitted.
    known = not args.allow_unknown_accelerator
    validate_accelerator(args.accelerator, args.device, known_types_only=known)
    validate_pipeline_options(options, device=args.device, known_types_only=known)
    if not args.weights:
        try:
            args.weights = shipped_model()
        except BeamletError as e:
            sys.exit(f"gpu_inference: {e}")
    if "://" not in args.weights and not os.path.exists(args.weights):
        sys.exit(f"gpu_inference: no model at {args.weights}; pass --weights=PATH (a safetensors file that "
                 "`beamlet train` wrote, or a torchvision ResNet state_dict saved as safetensors)")
    start = time.time()
    with beam.Pipeline(options=options) as p:
        handler = BeamletModelHandler(args.weights, device=args.device, accelerator=args.accelerator,
                                      known_accelerator_types_only=known, allow_cpu_fallback=args.allow_cpu_fallback,
                                      min_batch_size=args.batch_size, max_batch_size=args.batch_size)
        keyed = KeyedModelHandler(handler).with_preprocess_fn(fashion_mnist_example)
        records = p | "ReadFashionMnist" >> ReadFashionMnist(args.data_dir or None, "test", args.limit)
        predictions, dead = records | "RunInference" >> RunInference(keyed).with_exception_handling()
        _ = (predictions
             | "ToJson" >> beam.Map(lambda kv: json.dumps(prediction_to_dict(kv, CLASSES, args.top_k)))
             | "WritePredictions" >> beam.io.WriteToText(f"{args.output}/predictions", ".jsonl"))
        _ = ((dead.failed_inferences, *dead.failed_preprocessing)
             | "DeadLetters" >> beam.Flatten()
             | "DeadToJson" >> beam.Map(lambda bad: json.dumps(dead_letter_to_dict(bad)))
             | "WriteDeadLetters" >> beam.io.WriteToText(f"{args.output}/dead_letter", ".jsonl"))
        _ = (predictions
             | "Accuracy" >> beam.CombineGlobally(AccuracyFn(args.top_k))
             | "Summary" >> beam.Map(lambda a: json.dumps(dict(a, stage=2, device=args.device, weights=args.weights)))
             | "WriteSummary" >> beam.io.WriteToText(f"{args.output}/summary", ".json", shard_name_template=""))
    seconds = time.time() - start
    if "://" in args.output:
        print(f"stage 2, GPU inference (Beam): done in {seconds:.1f} s; figures in {args.output}/summary.json")
        return 0
    with open(f"{args.output}/summary.json") as f:
        s = json.load(f)
    print(f"stage 2, GPU inference (Beam): {args.weights} on {args.device}, {s['total']} images in {seconds:.2f} s")
    print(f"  accuracy {100 * s['accuracy']:.2f}% (top-{args.top_k} {100 * s['top_k_accuracy']:.2f}%) "
          f"on {s['labelled']} labelled images")
    print(f"  predictions:  {args.output}/predictions-*.jsonl\n  summary:      {args.output}/summary.json")
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.ERROR)  # Beam's local runners are chatty
    try:
        sys.exit(main())
    except (AcceleratorError, BeamletError) as e:  # one clear line, not a traceback
        sys.exit(f"gpu_inference: {e}")
