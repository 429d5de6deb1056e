"""Stage 1 of the learning path as an Apache Beam pipeline: CPU inference with RunInference,
beamlet's model handler doing the model work.

    python python/examples/cpu_inference.py                    # the 10,000 Fashion-MNIST test images
    python python/examples/cpu_inference.py --limit=1000 --runner=FnApiRunner \
        --direct_running_mode=multi_processing --direct_num_workers=2

The pipeline (examples/01_cpu_inference.c is the same in C; docs/beam.md sets them side by side):

    ReadFashionMnist -> RunInference(BeamletModelHandler) -> WriteToText(predictions, JSON lines)
                              |                      \----> CombineGlobally(AccuracyFn) -> summary.json
                              \--(dead letter)-------------> WriteToText(dead letters)

Beam's own options pass through (--runner, --direct_num_workers, ...); without --runner it
runs on the FnApiRunner. The same file runs on Dataflow, unchanged apart from flags (the worker
image carries beamlet: docker/Dockerfile.beam):

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

from beamlet import BeamletError, shipped_model
from beamlet.beam import (AcceleratorError, AccuracyFn, BeamletModelHandler, ReadFashionMnist,
                          dead_letter_to_dict, fashion_mnist_example, prediction_to_dict, validate_pipeline_options)

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def parse(argv):
    parser = argparse.ArgumentParser(description="Stage 1: Fashion-MNIST through RunInference with beamlet on the "
                                                 "CPU. Beam's options (--runner, ...) pass through.")
    parser.add_argument("--weights", default="",
                        help="the model: a torchvision-layout ResNet as safetensors (local or gs://); "
                             "default: the shipped model (beamlet.shipped_model())")
    parser.add_argument("--data_dir", default="", help="Fashion-MNIST folder (default: its standard place)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test images (0 = all 10,000)")
    parser.add_argument("--batch_size", type=int, default=64,
                        help="the batch RunInference hands the model (a bundle's last may be smaller)")
    parser.add_argument("--top_k", type=int, default=5, help="classes kept per prediction")
    parser.add_argument("--output", default="beamlet-out/beam_cpu_inference", help="folder or gs:// prefix")
    args, beam_args = parser.parse_known_args(argv)
    if not any(a.startswith("--runner") for a in beam_args):
        beam_args.append("--runner=FnApiRunner")  # Beam's default may try to download Prism
    return args, PipelineOptions(beam_args)


def main(argv=None):
    args, options = parse(argv)
    validate_pipeline_options(options, device="cpu")  # Beam checks no accelerator strings: we do
    if not args.weights:
        try:
            args.weights = shipped_model()
        except BeamletError as e:
            sys.exit(f"cpu_inference: {e}")
    if "://" not in args.weights and not os.path.exists(args.weights):
        sys.exit(f"cpu_inference: no model at {args.weights}; pass --weights=PATH (a safetensors file that "
                 "`beamlet train` wrote, or a torchvision ResNet state_dict saved as safetensors)")
    start = time.time()
    with beam.Pipeline(options=options) as p:
        # 1. The model: batched by RunInference, loaded once per worker process, run on the CPU.
        handler = BeamletModelHandler(args.weights, device="cpu", min_batch_size=args.batch_size,
                                      max_batch_size=args.batch_size)
        keyed = KeyedModelHandler(handler).with_preprocess_fn(fashion_mnist_example)
        # 2. The pipeline: records in, predictions and dead letters out, accuracy on the side.
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
             | "Summary" >> beam.Map(lambda a: json.dumps(dict(a, stage=1, device="cpu", weights=args.weights)))
             | "WriteSummary" >> beam.io.WriteToText(f"{args.output}/summary", ".json", shard_name_template=""))
    seconds = time.time() - start
    # 3. What a learner wants to see (read back from the summary the pipeline wrote).
    if "://" in args.output:
        print(f"stage 1, CPU inference (Beam): done in {seconds:.1f} s; figures in {args.output}/summary.json")
        return 0
    with open(f"{args.output}/summary.json") as f:
        s = json.load(f)
    print(f"stage 1, CPU inference (Beam): {args.weights} on cpu, {s['total']} images in {seconds:.2f} s")
    print(f"  accuracy {100 * s['accuracy']:.2f}% (top-{args.top_k} {100 * s['top_k_accuracy']:.2f}%) "
          f"on {s['labelled']} labelled images")
    print(f"  predictions:  {args.output}/predictions-*.jsonl\n  dead letters: {args.output}/dead_letter-*.jsonl")
    print(f"  summary:      {args.output}/summary.json")
    return 0


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.ERROR)  # Beam's local runners are chatty
    try:
        sys.exit(main())
    except (AcceleratorError, BeamletError) as e:  # one clear line, not a traceback
        sys.exit(f"cpu_inference: {e}")
