"""BeamletModelHandler on Beam's multi-processing runner: two worker processes give the same
predictions as one process and each loads its own model; with large_model one model serves
them all (from the process that loaded it, through proxies); with model_copies=2, at most two."""
import os

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from beam_probes import ProbeHandler
from conftest import FNAPI, MULTI_PROCESSING, WEIGHTS

N = 96


def run(argv, workdir, tag, **handler_args):
    """Runs N keyed examples through ProbeHandler on cpu_ref (whose logits do not depend on the
    batch, so runs compare bit for bit); returns {index: (logits, model pid, models loaded in
    that process, worker pid, batch size)}."""
    xs = np.random.default_rng(11).standard_normal((N, 1, 32, 32)).astype(np.float32)
    out = os.path.join(workdir, tag)
    handler = KeyedModelHandler(ProbeHandler(WEIGHTS, device="cpu_ref", max_batch_size=8, **handler_args))
    with beam.Pipeline(options=PipelineOptions(argv)) as p:
        _ = (p | beam.Create(list(enumerate(xs))) | beam.Reshuffle() | RunInference(handler)
             | beam.Map(lambda kv: (kv[0], kv[1].inference[0].tolist()) + tuple(kv[1].inference[1:]))
             | beam.Map(repr) | beam.io.WriteToText(out, ".txt"))
    rows = {}
    for name in sorted(os.listdir(workdir)):
        if name.startswith(tag + "-"):
            with open(os.path.join(workdir, name)) as f:
                for line in f:
                    i, logits, *where = eval(line)  # our own repr() of plain values
                    rows[i] = (np.array(logits, np.float32), *where)
    assert sorted(rows) == list(range(N))
    return rows


def test_two_workers_give_the_same_results_and_load_one_model_each(workdir):
    one = run(FNAPI, workdir, "single")
    two = run(MULTI_PROCESSING, workdir, "multi")
    for i in range(N):
        np.testing.assert_array_equal(two[i][0], one[i][0], err_msg=f"example {i}")
    driver = os.getpid()
    workers = {r[3] for r in two.values()}
    assert driver not in workers and len(workers) == 2, f"worker processes {workers}: expected two"
    for logits, model_pid, loaded, worker_pid, batch in two.values():
        assert model_pid == worker_pid, "without large_model each worker runs its own model"
        assert loaded == 1, f"worker {worker_pid} had loaded {loaded} models"
        assert batch <= 8


def test_large_model_loads_exactly_one_model(workdir):
    rows = run(MULTI_PROCESSING, workdir, "large", large_model=True)
    model_pids = {r[1] for r in rows.values()}
    workers = {r[3] for r in rows.values()}
    # Beam's MultiProcessShared serves the model from the process that first asked for it; the
    # other worker reaches it through a proxy.
    assert len(model_pids) == 1, f"large_model: models in processes {model_pids}"
    assert len(workers) == 2 and any(r[1] != r[3] for r in rows.values()), "one worker calls the other's model"
    assert {r[2] for r in rows.values()} == {1}
    base = run(FNAPI, workdir, "base")
    for i in range(N):
        np.testing.assert_array_equal(rows[i][0], base[i][0])


def test_model_copies_bounds_the_models(workdir):
    rows = run(MULTI_PROCESSING, workdir, "copies", model_copies=2)
    model_pids = {r[1] for r in rows.values()}
    assert 1 <= len(model_pids) <= 2, model_pids
    assert {r[2] for r in rows.values()} == {1}
