"""Test-only subclasses that make what happens inside Beam's workers observable. They live in a
module of their own (on PYTHONPATH) because multi-processing workers import them by name."""
import json
import os

from apache_beam.ml.inference.base import PredictionResult

from beamlet.beam import BeamletModelHandler, TrainModelDoFn


class ProbeHandler(BeamletModelHandler):
    """BeamletModelHandler whose PredictionResult.inference is (logits, model's process id,
    models loaded in that process, worker's process id, batch size)."""

    def run_inference(self, batch, model, inference_args=None):
        results = super().run_inference(batch, model, inference_args)
        where = (model.process_id(), model.models_loaded(), os.getpid(), len(batch))
        return [PredictionResult(r.example, (r.inference,) + where, r.model_id) for r in results]


class FailFirstAttemptDoFn(TrainModelDoFn):
    """TrainModelDoFn whose first attempt at each config is 'killed' after one epoch: it trains
    one epoch (writing that epoch's checkpoint) and raises, as a worker dying mid-training would.
    Attempts are counted in files under `marker_dir`, which survives the retry."""

    def __init__(self, marker_dir, **kwargs):
        super().__init__(**kwargs)
        self._markers = marker_dir

    def process(self, config):
        marker = os.path.join(self._markers, config["experiment_id"] + ".attempts")
        attempts = int(open(marker).read()) if os.path.exists(marker) else 0
        with open(marker, "w") as f:
            f.write(str(attempts + 1))
        if attempts == 0:
            partial = self.train(dict(config, stop_after_epochs=1))
            with open(marker + ".partial.json", "w") as f:
                json.dump(partial, f)
            raise RuntimeError(f"simulated worker failure while training {config['experiment_id']}")
        yield from super().process(config)
