"""Training inside a Beam pipeline, with the semantics of beamlet's C steps (beamlet/ml.h):

  TrainModelDoFn    TrainingConfig -> TrainingResult. Checkpoints every epoch under
                    <output_dir>/<experiment_id>/ (atomically), so a retried bundle or a
                    re-run pipeline resumes a config where its last epoch ended instead of
                    starting over; a config already finished comes back at once.
  BestModelFn       a CombineFn keeping the result with the highest accuracy; ties go to the
                    smaller experiment id, so the answer never depends on worker timing.
  DeployBestModel   copies a result's weights to <serving_dir>/model.safetensors and writes
                    <serving_dir>/model.json (the result), both atomically, and passes it on.
  sweep_grid        the proposal's grid (learning rates x batch sizes x models).

Configs and results are dicts (see beamlet.training); they pickle as plain data.

    configs = p | beam.Create(sweep_grid(base)) | beam.Reshuffle()
    results = configs | beam.ParDo(TrainModelDoFn()).with_resource_hints(**resource_hints("gpu"))
    best = results | beam.CombineGlobally(BestModelFn()) | beam.ParDo(DeployBestModel("serving"))
"""
import json
import logging
import os
import tempfile
import uuid

import apache_beam as beam

from beamlet.beam.inference import METRICS_NAMESPACE
from beamlet.training import sweep_grid, training_config

_log = logging.getLogger(__name__)

__all__ = ["BestModelFn", "DeployBestModel", "TrainModelDoFn", "sweep_grid", "training_config"]


class TrainModelDoFn(beam.DoFn):
    """Trains each TrainingConfig it receives (a dict) and emits its TrainingResult (a dict).

    Args:
      device: when given, overrides each config's device (e.g. "gpu" on accelerator workers).
      output_dir: when given, overrides each config's output_dir (where checkpoints go; it must
        survive a worker's failure for a retry to resume: a persistent disk or a shared mount).
    Metrics (namespace BeamML_Beamlet): counter models_trained, distribution training_ms.
    """

    def __init__(self, device=None, output_dir=None):
        super().__init__()
        self._device, self._output_dir = device, output_dir
        self._trained = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "models_trained")
        self._training_ms = beam.metrics.Metrics.distribution(METRICS_NAMESPACE, "training_ms")

    def setup(self):
        from beamlet import _native
        _native.lib()  # load and check the library once per worker, before the first element

    def process(self, config):
        config = dict(json.loads(config) if isinstance(config, (str, bytes)) else config)
        if self._device is not None:
            config["device"] = self._device
        if self._output_dir is not None:
            config["output_dir"] = self._output_dir
        yield self.train(config)

    def train(self, config):
        from beamlet.training import train
        _log.info("beamlet: training %s on %s (pid %d)", config.get("experiment_id"), config.get("device", "auto"),
                  os.getpid())
        result = train(config)
        self._trained.inc()
        self._training_ms.update(int(result["wall_time_s"] * 1000))
        _log.info("beamlet: %s done: accuracy %.2f%% after %d epochs%s", result["experiment_id"],
                  100 * result["accuracy"], result["epochs"], " (resumed)" if result["resumed"] else "")
        return result


def _better(a, b):
    """Whether result a beats b: higher accuracy, then the smaller experiment id."""
    if b is None:
        return a is not None
    if a["accuracy"] != b["accuracy"]:
        return a["accuracy"] > b["accuracy"]
    return a["experiment_id"] < b["experiment_id"]


class BestModelFn(beam.CombineFn):
    """The TrainingResult with the highest accuracy (ties: the smaller experiment id)."""

    def create_accumulator(self):
        return None

    def add_input(self, best, result):
        return result if _better(result, best) else best

    def merge_accumulators(self, accumulators):
        best = None
        for acc in accumulators:
            if _better(acc, best):
                best = acc
        return best

    def extract_output(self, best):
        if best is None:
            raise ValueError("BestModel: no training results to choose from")
        return best


def _write_atomically(path, data):
    """Writes data to path through a flushed, fsync'ed temp file renamed into place, so a
    reader (or a killed run) never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class DeployBestModel(beam.DoFn):
    """Copies a result's final weights to <serving_dir>/model.safetensors and writes the result
    as <serving_dir>/model.json, both atomically; passes the result on. serving_dir is a local
    folder, or any path Beam's FileSystems writes (gs://...: each object appears whole)."""

    def __init__(self, serving_dir):
        super().__init__()
        self._dir = serving_dir

    def process(self, result):
        if not result.get("weights_path"):
            raise ValueError(f"deploy: {result.get('experiment_id')} has no final weights (training not finished)")
        from apache_beam.io.filesystems import FileSystems
        with FileSystems.open(result["weights_path"]) as f:
            weights = f.read()
        meta = json.dumps(result).encode()
        if FileSystems.get_scheme(self._dir) in (None, "file"):
            os.makedirs(self._dir, exist_ok=True)
            _write_atomically(os.path.join(self._dir, "model.safetensors"), weights)
            _write_atomically(os.path.join(self._dir, "model.json"), meta)
        else:
            for name, data in (("model.safetensors", weights), ("model.json", meta)):
                final = FileSystems.join(self._dir, name)
                tmp = FileSystems.join(self._dir, f".{name}.{uuid.uuid4().hex}")
                with FileSystems.create(tmp) as f:
                    f.write(data)
                FileSystems.rename([tmp], [final])
        _log.info("beamlet: deployed %s (accuracy %.2f%%) to %s", result["experiment_id"], 100 * result["accuracy"],
                  self._dir)
        yield result
