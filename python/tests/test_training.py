"""Training in Beam pipelines: the sweep (Create -> Reshuffle -> TrainModelDoFn -> BestModelFn ->
DeployBestModel) on the multi-processing runner picks and deploys the best config, and a config
whose worker fails mid-training resumes from its last checkpoint when Beam retries it."""
import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

import beamlet
from beam_probes import FailFirstAttemptDoFn
from beamlet.beam import BestModelFn, DeployBestModel, TrainModelDoFn, sweep_grid
from conftest import BUNDLE_BASED, MULTI_PROCESSING


def tiny(workdir, **fields):
    config = dict(width=4, epochs=1, train_limit=256, test_limit=128, device="cpu", quiet=True,
                  output_dir=os.path.join(workdir, "runs"))
    return beamlet.training_config(config, **fields)


def result(eid, accuracy):
    return {"experiment_id": eid, "accuracy": accuracy, "weights_path": f"/{eid}"}


def test_best_model_is_the_most_accurate_and_ties_go_to_the_smaller_id():
    fn = BestModelFn()
    results = [result("b", 0.5), result("c", 0.9), result("a", 0.9), result("d", 0.1)]
    for order in (results, results[::-1], results[1:] + results[:1]):
        acc = fn.create_accumulator()
        for r in order:
            acc = fn.add_input(acc, r)
        assert fn.extract_output(acc)["experiment_id"] == "a"
    halves = [fn.add_input(fn.add_input(None, results[0]), results[1]),
              fn.add_input(fn.add_input(None, results[2]), results[3])]
    assert fn.extract_output(fn.merge_accumulators(halves))["experiment_id"] == "a"
    with pytest.raises(ValueError, match="no training results"):
        fn.extract_output(fn.create_accumulator())


def test_sweep_picks_and_deploys_the_best(needs_fashion_mnist, workdir):
    grid = sweep_grid(tiny(workdir), learning_rates=[0.1, 0.01], batch_sizes=[32, 64], models=["resnet18"])
    assert len(grid) == 4
    serving = os.path.join(workdir, "serving")
    with beam.Pipeline(options=PipelineOptions(MULTI_PROCESSING)) as p:
        results = p | beam.Create(grid) | beam.Reshuffle() | beam.ParDo(TrainModelDoFn())
        best = results | beam.CombineGlobally(BestModelFn()) | beam.ParDo(DeployBestModel(serving))
        _ = results | "All" >> beam.Map(json.dumps) | beam.io.WriteToText(os.path.join(workdir, "results"), ".jsonl")
        _ = best | "Best" >> beam.Map(json.dumps) | "WriteBest" >> beam.io.WriteToText(
            os.path.join(workdir, "best"), ".json", shard_name_template="")
    rows = []
    for name in sorted(os.listdir(workdir)):
        if name.startswith("results-"):
            with open(os.path.join(workdir, name)) as f:
                rows += [json.loads(line) for line in f]
    assert sorted(r["experiment_id"] for r in rows) == sorted(g["experiment_id"] for g in grid)
    assert all(r["epochs"] == 1 and os.path.exists(r["weights_path"]) for r in rows)
    want = max(rows, key=lambda r: (r["accuracy"], [-ord(ch) for ch in r["experiment_id"]]))
    with open(os.path.join(workdir, "best.json")) as f:
        best = json.load(f)
    assert best["experiment_id"] == want["experiment_id"] and best["accuracy"] == want["accuracy"]
    with open(os.path.join(serving, "model.safetensors"), "rb") as a, open(want["weights_path"], "rb") as b:
        assert a.read() == b.read(), "the deployed weights are the best config's"
    with open(os.path.join(serving, "model.json")) as f:
        assert json.load(f) == best
    assert not [n for n in os.listdir(serving) if ".tmp." in n], "no temp files left behind"
    # The deployed model serves: it loads and predicts.
    assert beamlet.Model(os.path.join(serving, "model.safetensors")).num_classes == 10


def test_a_failed_worker_resumes_from_its_checkpoint(needs_fashion_mnist, workdir):
    base = tiny(workdir, epochs=2)
    grid = sweep_grid(base, learning_rates=[0.05], batch_sizes=[32, 64], models=["resnet18"])
    markers = os.path.join(workdir, "attempts")
    os.makedirs(markers)
    # The BundleBasedDirectRunner retries a failed bundle, as a service retries a dead worker's.
    with beam.Pipeline(options=PipelineOptions(BUNDLE_BASED)) as p:
        results = p | beam.Create(grid) | beam.ParDo(FailFirstAttemptDoFn(markers))
        assert_that(results | beam.Map(lambda r: (r["experiment_id"], r["epochs"], r["resumed"])),
                    equal_to([(g["experiment_id"], 2, True) for g in grid]))
        _ = results | beam.Map(json.dumps) | beam.io.WriteToText(os.path.join(workdir, "results"), ".jsonl")
    for g in grid:
        eid = g["experiment_id"]
        with open(os.path.join(markers, eid + ".attempts")) as f:
            # The failed attempt, then one or more retries: a retried bundle runs all its configs
            # again, and those already finished come straight back from their checkpoints.
            assert int(f.read()) >= 2, f"{eid}: a failed attempt and a retry"
        with open(os.path.join(markers, eid + ".attempts.partial.json")) as f:
            assert json.load(f)["epochs"] == 1, "the failed attempt got through one epoch"
    # Resuming gives what an uninterrupted run gives (the CPU, same thread count: bit for bit).
    for g in grid:
        straight = beamlet.train(dict(g, output_dir=os.path.join(workdir, "straight")))
        assert not straight["resumed"]
        resumed_weights = os.path.join(workdir, "runs", g["experiment_id"], "model.safetensors")
        with open(resumed_weights, "rb") as a, open(straight["weights_path"], "rb") as b:
            assert a.read() == b.read(), f"{g['experiment_id']}: resumed weights differ from an uninterrupted run"
