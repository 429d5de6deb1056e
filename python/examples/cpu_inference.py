"""Stage 1 of the learning path as an Apache Beam pipeline: CPU inference with RunInference,
beamlet's model handler doing the model work.

    python python/examples/cpu_inference.py                        # the 10,000 test images
    python python/examples/cpu_inference.py --limit=1000 --runner=FnApiRunner \
        --direct_running_mode=multi_processing --direct_num_workers=2

The pipeline (the C version is examples/01_cpu_inference.c; docs/beam.md sets them side by side):

    ReadFashionMnist -> RunInference(BeamletModelHandler) -> WriteToText(predictions, JSON lines)
                              |                      \----> CombineGlobally(AccuracyFn)
                              \--(dead letter)-------------> WriteToText(dead letters)

The same file runs on Dataflow, unchanged apart from flags (the worker image carries beamlet,
docker/Dockerfile.beam; the model and the outputs are then on Cloud Storage):

    python python/examples/cpu_inference.py --runner=DataflowRunner --project=PROJECT \
        --region=us-central1 --temp_location=gs://BUCKET/tmp \
        --sdk_container_image=REGISTRY/beamlet-beam:0.1.0 --sdk_location=container \
        --weights=gs://BUCKET/fashion-resnet18-w8.safetensors --output=gs://BUCKET/stage1
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

from beamlet.beam import (AccuracyFn, BeamletModelHandler, ReadFashionMnist, dead_letter_to_dict, fashion_mnist_example,
                          prediction_to_dict, validate_pipeline_options)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def build(p, args, device="cpu", accelerator=None):
    """Stage 1's pipeline on `p`; returns (predictions, dead letters, accuracy) PCollections."""
    handler = BeamletModelHandler(args.weights, device=device, accelerator=accelerator,
                                  allow_cpu_fallback=getattr(args, "allow_cpu_fallback", False),
                                  max_batch_size=args.batch_size)
    keyed = KeyedModelHandler(handler).with_preprocess_fn(fashion_mnist_example)
    records = p | "ReadFashionMnist" >> ReadFashionMnist(args.data_dir or None, "test", args.limit)
    predictions, dead = records | "RunInference" >> RunInference(keyed).with_exception_handling()
    accuracy = predictions | "Accuracy" >> beam.CombineGlobally(AccuracyFn(args.top_k))
    _ = (predictions
         | "ToJson" >> beam.Map(lambda kv: json.dumps(prediction_to_dict(kv, FASHION_MNIST_CLASSES, args.top_k)))
         | "WritePredictions" >> beam.io.WriteToText(f"{args.output}/predictions", ".jsonl"))
    failed = (dead.failed_inferences, *dead.failed_preprocessing)
    dead_letters = (failed
                    | "FlattenDeadLetters" >> beam.Flatten()
                    | "DeadToJson" >> beam.Map(lambda bad: json.dumps(dead_letter_to_dict(bad))))
    _ = dead_letters | "WriteDeadLetters" >> beam.io.WriteToText(f"{args.output}/dead_letter", ".jsonl")
    return predictions, dead_letters, accuracy


def parse(argv, description, default_output):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", default="models/fashion-resnet18-w8.safetensors",
                        help="the model: a torchvision-layout ResNet as safetensors (local or gs://)")
    parser.add_argument("--data_dir", default="", help="Fashion-MNIST folder (default: its standard place)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test images (0 = all 10,000)")
    parser.add_argument("--batch_size", type=int, default=64, help="largest batch RunInference hands the model")
    parser.add_argument("--top_k", type=int, default=5, help="classes kept per prediction")
    parser.add_argument("--output", default=default_output, help="folder (or gs:// prefix) for the outputs")
    parser.add_argument("--allow_unknown_accelerator", action="store_true",
                        help="accept accelerator types the local check does not know")
    return parser.parse_known_args(argv)


def run_stage(argv, stage, description, default_output, device, accelerator=None, extra_args=None):
    args, beam_args = parse(argv, description, default_output)
    for add in extra_args or []:
        add(args)
    options = PipelineOptions(beam_args)
    # Beam sends accelerator strings to the service unchecked: check them here, before anything
    # is built or submitted.
    validate_pipeline_options(options, device, known_types_only=not args.allow_unknown_accelerator)
    if not os.path.exists(args.weights) and "://" not in args.weights:
        sys.exit(f"{stage}: no model at {args.weights}; train one with `build/beamlet train --width=8 --epochs=4 "
                 "--experiment_id=fashion-resnet18-w8` or pass --weights=PATH")
    if "://" not in args.output:
        os.makedirs(args.output, exist_ok=True)
    start = time.time()
    with beam.Pipeline(options=options) as p:
        _, _, accuracy = build(p, args, device, accelerator)
        _ = (accuracy
             | "Summary" >> beam.Map(lambda a: json.dumps(dict(a, weights=args.weights, device=device)))
             | "WriteSummary" >> beam.io.WriteToText(f"{args.output}/summary", ".json", shard_name_template=""))
    seconds = time.time() - start
    if "://" in args.output:
        print(f"{stage}: done in {seconds:.1f} s; summary in {args.output}/summary.json")
        return 0
    with open(f"{args.output}/summary.json") as f:
        summary = json.loads(f.read())
    print(f"{stage}: {args.weights} on {device}, {summary['total']} images in {seconds:.2f} s "
          f"(pipeline included)")
    print(f"  accuracy {100 * summary['accuracy']:.2f}% (top-{args.top_k} {100 * summary['top_k_accuracy']:.2f}%) "
          f"on {summary['labelled']} labelled images")
    print(f"  predictions:  {args.output}/predictions-*.jsonl\n  dead letters: {args.output}/dead_letter-*.jsonl\n"
          f"  summary:      {args.output}/summary.json")
    return 0


def main(argv=None):
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    return run_stage(argv, "stage 1, CPU inference (Beam)",
                     "Stage 1: Fashion-MNIST through RunInference with beamlet on the CPU.",
                     "beamlet-out/beam_cpu_inference", device="cpu")


if __name__ == "__main__":
    sys.exit(main())
