"""beamlet inside Apache Beam pipelines.

Inference:  BeamletModelHandler (a RunInference ModelHandler), the input readers and adapters
            (Fashion-MNIST, CIFAR-10, image files), top_k / prediction_to_dict / AccuracyFn.
Training:   TrainModelDoFn, BestModelFn, DeployBestModel, sweep_grid, training_config.
Placement:  resource_hints / validate_accelerator / validate_pipeline_options: accelerator
            strings checked on the submitting machine (Beam does not check them).
"""
from beamlet.beam.accelerators import (DEFAULT_HINTS, AcceleratorError, resource_hints, validate_accelerator,
                                       validate_pipeline_options)
from beamlet.beam.inference import (METRICS_NAMESPACE, AccuracyFn, BeamletModelHandler, ExampleKey,
                                    dead_letter_to_dict, prediction_to_dict, top_k)
from beamlet.beam.io import (ImageFile, ImageFileExample, ImageRecord, ReadCifar10Records, ReadFashionMnist,
                             ReadImageFiles, cifar10_example, fashion_mnist_example, parse_cifar10)
from beamlet.beam.training import BestModelFn, DeployBestModel, TrainModelDoFn, sweep_grid, training_config

__all__ = ["AcceleratorError", "AccuracyFn", "BeamletModelHandler", "BestModelFn", "DEFAULT_HINTS",
           "DeployBestModel", "ExampleKey", "ImageFile", "ImageFileExample", "ImageRecord", "METRICS_NAMESPACE",
           "ReadCifar10Records", "ReadFashionMnist", "ReadImageFiles", "TrainModelDoFn", "cifar10_example",
           "dead_letter_to_dict", "fashion_mnist_example", "parse_cifar10", "prediction_to_dict", "resource_hints",
           "sweep_grid", "top_k", "training_config", "validate_accelerator", "validate_pipeline_options"]
