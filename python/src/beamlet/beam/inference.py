"""RunInference with beamlet: a ModelHandler over libbeamlet, and what stage 1 does with its
predictions (top-k with class names, JSON lines like `beamlet infer` writes, accuracy).

    handler = KeyedModelHandler(BeamletModelHandler("models/fashion-resnet18-w8.safetensors",
                                                    max_batch_size=64)).with_preprocess_fn(fashion_mnist_example)
    predictions = records | RunInference(handler)     # (ExampleKey, PredictionResult)

The handler holds only plain configuration (it is pickled into every worker); the model is
built in load_model(), inside the worker, from the weights path (a local file or any path
Beam's FileSystems reads, e.g. gs://..., copied once per process to a local temp file).
"""
import hashlib
import logging
import os
import tempfile
import uuid
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beamlet.beam import accelerators

METRICS_NAMESPACE = "BeamML_Beamlet"  # Beam's convention: BeamML_PyTorch, BeamML_Sklearn, ...
DEFAULT_PLANNED_BATCH = 64

_log = logging.getLogger(__name__)


class ExampleKey(NamedTuple):
    """The key an input adapter gives each example: where it came from, and its true class
    (-1 when unknown), so predictions can be written by id and scored."""
    id: str
    label: int = -1


def _local_weights(path):
    """A local file for `path`: itself when it is one, else a copy made once per process of what
    Beam's FileSystems reads there (gs://, s3://, ...)."""
    if os.path.exists(path):
        return path
    from apache_beam.io.filesystems import FileSystems
    if FileSystems.get_scheme(path) in (None, "file"):
        return path  # let beamlet say that the file is missing
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    local = os.path.join(tempfile.gettempdir(), f"beamlet-weights-{digest}-{os.path.basename(path)}")
    if not os.path.exists(local):
        tmp = f"{local}.tmp.{uuid.uuid4().hex}"  # two processes or threads may copy at once
        with FileSystems.open(path) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, local)
    return local


class BeamletModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
    """A RunInference ModelHandler running a torchvision-layout ResNet (safetensors) on a
    beamlet device.

    Examples are float32 arrays (C, H, W), already normalized (the input adapters make them);
    each PredictionResult carries the example, the logits (num_classes,) float32 and the
    weights file's name as model_id.

    Args:
      weights: the safetensors file (local, or any path Beam's FileSystems can read).
      device: "cpu", "cpu_ref", "gpu", "tpu", "auto", or any beamlet device name.
      allow_cpu_fallback: with device "gpu" on a worker without one, run on the CPU (loudly).
      accelerator: the accelerator resource hint, checked now (see accelerators.py); default:
        one for "gpu" and "tpu" devices, none for the CPU.
      known_accelerator_types_only: refuse accelerator types the check does not know.
      planned_batch_size: the batch the model is planned for (default: max_batch_size, else 64);
        larger batches run as several.
      input_size: (height, width) of the examples; default: the model's (32 or 224).
      min_batch_size, max_batch_size, max_batch_duration_secs, max_batch_weight, element_size_fn:
        Beam's batching arguments, passed to BatchElements.
      large_model, model_copies: Beam's model sharing: one model (or model_copies models) per
        machine, in a separate process that the workers call through a proxy.
      **kwargs: the rest of ModelHandler's keyword arguments (env_vars, ...).
    """

    def __init__(self, weights, *, device="cpu", allow_cpu_fallback=False, accelerator=None,
                 known_accelerator_types_only=True, planned_batch_size=None, input_size=None, min_batch_size=None,
                 max_batch_size=None, max_batch_duration_secs=None, max_batch_weight=None, element_size_fn=None,
                 large_model=False, model_copies=None, **kwargs):
        if not isinstance(weights, (str, os.PathLike)) or not os.fspath(weights):
            raise ValueError(f"weights must be a path to a safetensors file, got {weights!r}")
        if not isinstance(device, str) or not device:
            raise ValueError(f"device must be a beamlet device name (cpu, gpu, tpu, auto, ...), got {device!r}")
        for name, value in (("min_batch_size", min_batch_size), ("max_batch_size", max_batch_size),
                            ("planned_batch_size", planned_batch_size), ("model_copies", model_copies)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if min_batch_size and max_batch_size and min_batch_size > max_batch_size:
            raise ValueError(f"min_batch_size={min_batch_size} is larger than max_batch_size={max_batch_size}")
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be (height, width), got {input_size!r}")
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                         max_batch_duration_secs=max_batch_duration_secs, max_batch_weight=max_batch_weight,
                         element_size_fn=element_size_fn, large_model=large_model, model_copies=model_copies,
                         **kwargs)
        self._weights = os.fspath(weights)
        self._device = device
        self._allow_cpu_fallback = bool(allow_cpu_fallback)
        self._planned_batch = planned_batch_size or max_batch_size or DEFAULT_PLANNED_BATCH
        self._input_size = tuple(input_size) if input_size else (0, 0)
        self._hints = accelerators.resource_hints(device, accelerator, known_accelerator_types_only)
        self._model_id = os.path.basename(self._weights)

    def load_model(self):
        from beamlet.model import Model
        model = Model(_local_weights(self._weights), device=self._device, max_batch=self._planned_batch,
                      height=self._input_size[0], width=self._input_size[1],
                      allow_cpu_fallback=self._allow_cpu_fallback)
        _log.info("beamlet: loaded %s on %s in process %d", self._model_id, model.device, os.getpid())
        return model

    def run_inference(self, batch: Sequence[np.ndarray], model,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        # `model` is a beamlet.Model, or a proxy to one in another process (large_model,
        # model_copies): only its methods taking and returning plain values are used.
        shape = tuple(model.get_input_shape())
        examples = []
        for i, example in enumerate(batch):
            x = np.asarray(example, dtype=np.float32)
            if x.shape != shape:
                raise ValueError(f"example {i} of a batch of {len(batch)} has shape {x.shape}; "
                                 f"{self._model_id} takes {shape} (C, H, W) float32")
            examples.append(x)
        logits = model.predict(np.stack(examples)) if examples else np.empty((0, 0), np.float32)
        return [PredictionResult(example, row, self._model_id) for example, row in zip(batch, logits)]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(np.asarray(x).nbytes for x in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def get_resource_hints(self) -> dict:
        return dict(self._hints)

    def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
        if inference_args:
            raise ValueError(f"BeamletModelHandler takes no inference_args, got {sorted(inference_args)}")

    def __repr__(self):
        return (f"BeamletModelHandler({self._weights!r}, device={self._device!r}, "
                f"planned_batch_size={self._planned_batch}, hints={self._hints})")


# ---- what stage 1 does with the predictions --------------------------------------------------

def top_k(logits, k=5):
    """(classes, probabilities) of the k most likely classes, best first (softmax of logits)."""
    logits = np.asarray(logits, dtype=np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:k]
    return order.tolist(), p[order].tolist()


def prediction_to_dict(keyed, class_names=None, k=5):
    """A (ExampleKey, PredictionResult) as the JSON object `beamlet infer` writes per example:
    {"example", "label" (when known), "inference": [{"class", "name", "probability"}], "model_id"}."""
    key, result = keyed
    classes, probs = top_k(result.inference, k)
    out = {"example": key.id}
    if key.label >= 0:
        out["label"] = int(key.label)
    out["inference"] = [{"class": c, "name": class_names[c] if class_names and c < len(class_names) else "",
                         "probability": p} for c, p in zip(classes, probs)]
    out["model_id"] = result.model_id
    return out


class AccuracyFn(beam.CombineFn):
    """Accuracy over (ExampleKey, PredictionResult): total, labelled, correct (top-1) and
    correct_top_k; examples without a label count in total only."""

    def __init__(self, k=5):
        self._k = k

    def create_accumulator(self):
        return (0, 0, 0, 0)

    def add_input(self, acc, keyed):
        key, result = keyed
        total, labelled, correct, correct_k = acc
        if key.label < 0:
            return (total + 1, labelled, correct, correct_k)
        logits = np.asarray(result.inference)
        best = np.argsort(-logits, kind="stable")[:self._k]
        return (total + 1, labelled + 1, correct + int(best[0] == key.label), correct_k + int(key.label in best))

    def merge_accumulators(self, accs):
        return tuple(sum(values) for values in zip(*accs))

    def extract_output(self, acc):
        total, labelled, correct, correct_k = acc
        return {"total": total, "labelled": labelled, "correct": correct, "correct_top_k": correct_k,
                "accuracy": correct / labelled if labelled else 0.0,
                "top_k_accuracy": correct_k / labelled if labelled else 0.0}


def _element_id(element):
    if isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], ExampleKey):
        return element[0].id
    for attr in ("id", "path"):  # ImageRecord, ImageFile
        if isinstance(getattr(element, attr, None), str):
            return getattr(element, attr)
    if isinstance(element, list):  # a failed batch
        return [_element_id(e) for e in element]
    return repr(element)[:200]


def dead_letter_to_dict(dead):
    """One entry of a RunInference dead-letter output (element, (exception type, repr,
    traceback)) as {"id": which example(s), "error": the exception's type, "reason": its repr}:
    like `beamlet infer`'s dead letters, one line each."""
    element, (exc_type, exc_repr, _traceback) = dead
    return {"id": _element_id(element), "error": getattr(exc_type, "__name__", str(exc_type)), "reason": exc_repr}
