"""BeamletModelHandler inside RunInference on Beam's FnApiRunner: its contract (batching
arguments, metrics, resource hints, pickling, dead letters) and its output against the
`beamlet infer` CLI's on the same images."""
import glob
import json
import os
import pickle
import subprocess

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.internal import pickler
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

import beamlet
from beamlet.beam import (AcceleratorError, BeamletModelHandler, ExampleKey, ImageFileExample, ReadCifar10Records,
                          ReadFashionMnist, ReadImageFiles, cifar10_example, dead_letter_to_dict, fashion_mnist_example,
                          prediction_to_dict, top_k)
from conftest import FNAPI, WEIGHTS, cli_path
from test_abi import png_bytes


def examples(n, seed=0):
    return [x for x in np.random.default_rng(seed).standard_normal((n, 1, 32, 32)).astype(np.float32)]


def run_and_metrics(build, argv=FNAPI):
    p = beam.Pipeline(options=PipelineOptions(argv))
    build(p)
    result = p.run()
    result.wait_until_finish()
    return result.metrics().query(MetricsFilter().with_namespace("BeamML_Beamlet"))


def metric(metrics, kind, name):
    found = [m.committed for m in metrics[kind] if m.key.metric.name == name]
    assert found, f"no {kind} metric {name} in namespace BeamML_Beamlet"
    return found[0]


def test_batching_arguments_pass_through_to_batch_elements():
    size = lambda x: x.size  # noqa: E731
    h = BeamletModelHandler(WEIGHTS, min_batch_size=2, max_batch_size=9, max_batch_weight=4096,
                            element_size_fn=size, max_batch_duration_secs=5)
    kw = h.batch_elements_kwargs()
    assert kw["min_batch_size"] == 2 and kw["max_batch_size"] == 9 and kw["max_batch_weight"] == 4096
    assert kw["element_size_fn"] is size and kw["max_batch_duration_secs"] == 5
    with pytest.raises(ValueError, match="min_batch_size=10 is larger than max_batch_size=9"):
        BeamletModelHandler(WEIGHTS, min_batch_size=10, max_batch_size=9)
    with pytest.raises(ValueError, match="max_batch_weight requires element_size_fn"):
        BeamletModelHandler(WEIGHTS, max_batch_weight=10)


def test_max_batch_size_is_respected_and_metrics_use_beams_names():
    n = 50
    xs = examples(n)
    def build(p):
        out = p | beam.Create(xs) | RunInference(BeamletModelHandler(WEIGHTS, max_batch_size=7))
        assert_that(out | beam.Map(lambda r: (r.inference.shape, r.model_id)),
                    equal_to([((10,), "fashion-resnet18-w8.safetensors")] * n))
    metrics = run_and_metrics(build)
    assert metric(metrics, "counters", "num_inferences") == n
    sizes = metric(metrics, "distributions", "inference_request_batch_size")
    assert sizes.sum == n and sizes.max <= 7, f"batches up to {sizes.max} with max_batch_size=7"
    assert metric(metrics, "distributions", "load_model_latency_milli_secs").count >= 1


def test_predictions_match_a_direct_call():
    xs = examples(20, seed=3)
    want = beamlet.Model(WEIGHTS).predict(np.stack(xs))
    with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
        keyed = p | beam.Create(list(enumerate(xs)))
        out = keyed | RunInference(KeyedModelHandler(BeamletModelHandler(WEIGHTS, max_batch_size=8)))
        # oneDNN's kernels depend on the batch size, so logits agree to ~1e-5, not bit for bit.
        assert_that(out | beam.Map(lambda kv: (kv[0], bool(np.allclose(kv[1].inference, want[kv[0]], atol=1e-4)),
                                               int(np.argmax(kv[1].inference)))),
                    equal_to([(i, True, int(np.argmax(want[i]))) for i in range(20)]))


def test_handler_pickles_and_works_after_unpickling():
    h = BeamletModelHandler(WEIGHTS, device="cpu", max_batch_size=4, large_model=True)
    for dumps, loads in ((pickle.dumps, pickle.loads), (pickler.dumps, pickler.loads)):
        again = loads(dumps(h))
        assert again.share_model_across_processes() and again.get_resource_hints() == {}
        model = again.load_model()
        results = list(again.run_inference(examples(3), model))
        assert len(results) == 3 and all(isinstance(r, PredictionResult) for r in results)
        model.close()


def test_resource_hints_for_each_device():
    assert BeamletModelHandler(WEIGHTS).get_resource_hints() == {}
    gpu = BeamletModelHandler(WEIGHTS, device="gpu").get_resource_hints()
    assert gpu == {"accelerator": "type:nvidia-l4;count:1;install-nvidia-driver"}
    tpu = BeamletModelHandler(WEIGHTS, device="tpu").get_resource_hints()
    assert tpu == {"accelerator": "type:tpu-v5-lite-podslice;topology:1x1"}
    h100 = "type:nvidia-h100-80gb;count:2;install-nvidia-driver"
    assert BeamletModelHandler(WEIGHTS, device="gpu", accelerator=h100).get_resource_hints() == {"accelerator": h100}
    v5p = "type:tpu-v5p-slice;topology:2x2x1"
    assert BeamletModelHandler(WEIGHTS, device="tpu", accelerator=v5p).get_resource_hints() == {"accelerator": v5p}


def test_the_hints_know_every_name_the_device_resolver_knows():
    """The one table of device names is the C resolver's; the hints keep a copy of which
    accelerator each needs (a submitting machine may have none to resolve against). Drift
    between the two fails here."""
    import re
    from conftest import ROOT
    from beamlet.beam.accelerators import device_kind
    with open(os.path.join(ROOT, "include", "beamlet", "tensor.h")) as f:
        names = re.search(r'#define BL_DEVICE_NAMES "([^"]+)"', f.read()).group(1).split(", ")
    assert len(names) >= 8, names
    kinds = {name: device_kind(name.replace(":N", ":1")) for name in names}
    assert kinds["auto"] == "auto" and kinds["cpu"] == kinds["cpu_ref"] == kinds["xla:cpu"] == "cpu"
    assert kinds["gpu"] == kinds["cuda"] == kinds["cuda:N"] == kinds["xla:cuda:N"] == "gpu"
    assert kinds["tpu"] == kinds["tpu:N"] == "tpu" and len(kinds) == len(names)
    for bad in ("quantum", "GPU", "cuda:x", "cpu:1"):
        with pytest.raises(AcceleratorError, match=f"unknown device '{re.escape(bad)}'"):
            BeamletModelHandler(WEIGHTS, device=bad)


@pytest.mark.parametrize("device,hint,why", [
    ("gpu", "type:nvidia-l4;count:one", "count 'one' is not a whole number"),
    ("gpu", "type:nvidia-l4", "a GPU needs count"),
    ("gpu", "type:nvidia-tesla-x9;count:1", "unknown GPU type 'nvidia-tesla-x9'"),
    ("gpu", "nvidia-l4:1", "unknown field"),
    ("gpu", "type:nvidia-l4;count:1;;install-nvidia-driver", "empty field"),
    ("tpu", "type:tpu-v5-lite-podslice", "a TPU needs topology"),
    ("tpu", "type:tpu-v5-lite-podslice;topology:1x1;count:1", "'count' is for GPUs"),
    ("tpu", "type:nvidia-l4;count:1", "needs a TPU"),
    ("cpu", "type:nvidia-l4;count:1;install-nvidia-driver", "runs on the CPU"),
])
def test_a_malformed_accelerator_hint_is_refused_before_submission(device, hint, why):
    with pytest.raises(AcceleratorError, match=why):
        BeamletModelHandler(WEIGHTS, device=device, accelerator=hint)


def test_the_accelerator_hint_reaches_the_pipeline():
    hint = "type:nvidia-tesla-t4;count:1;install-nvidia-driver"
    p = beam.Pipeline(options=PipelineOptions(FNAPI))
    _ = p | beam.Create(examples(2)) | RunInference(BeamletModelHandler(WEIGHTS, device="gpu", accelerator=hint))
    proto = p.to_runner_api()
    envs = proto.components.environments
    hinted = [t.unique_name for t in proto.components.transforms.values()
              if t.environment_id and any(hint.encode() in v for v in envs[t.environment_id].resource_hints.values())]
    assert any("BeamML_RunInference" in name for name in hinted), hinted


def test_dead_letters_bad_batches_and_bad_records(needs_fashion_mnist):
    good = examples(6)
    bad = np.zeros((3, 28, 28), np.float32)  # a wrong shape: fails its whole batch
    with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
        main, dead = (p | beam.Create(good + [bad])
                      | RunInference(BeamletModelHandler(WEIGHTS, max_batch_size=1)).with_exception_handling())
        assert_that(main | "Count" >> beam.combiners.Count.Globally(), equal_to([6]), label="good")
        assert_that(dead.failed_inferences | beam.Map(lambda b: (len(b[0]), dead_letter_to_dict(b)["error"],
                                                                 "has shape (3, 28, 28)" in b[1][1])),
                    equal_to([(1, "ValueError", True)]), label="dead")
    # A record the adapter cannot use goes to the preprocessing dead letters, one by one.
    records = beamlet.load_dataset(limit=4)
    from beamlet.beam import ImageRecord
    items = [ImageRecord(f"r{i}", int(records.labels[i]), records.images[i]) for i in range(4)] + ["not a record"]
    handler = KeyedModelHandler(BeamletModelHandler(WEIGHTS)).with_preprocess_fn(fashion_mnist_example)
    with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
        main, dead = p | beam.Create(items) | RunInference(handler).with_exception_handling()
        assert_that(main | beam.Map(lambda kv: kv[0].id), equal_to(["r0", "r1", "r2", "r3"]), label="good")
        assert_that(dead.failed_preprocessing[0] | beam.Map(lambda b: (b[0], "expected an ImageRecord" in b[1][1])),
                    equal_to([("not a record", True)]), label="dead")


def read_jsonl(pattern):
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def assert_same_predictions(cli_rows, beam_rows, k):
    """Same examples, same best class, and each of the CLI's top-k probabilities within 2e-5 of
    ours (oneDNN's kernels depend on the batch size, so the last bits of a logit can differ)."""
    cli = {r["example"]: r for r in cli_rows}
    ours = {r["example"]: r for r in beam_rows}
    assert set(cli) == set(ours) and len(cli) == len(cli_rows)
    for example, want in cli.items():
        got = ours[example]
        assert got.get("label") == want.get("label"), example
        assert got["inference"][0]["class"] == want["inference"][0]["class"], example
        probs = {e["class"]: e["probability"] for e in got["all"]}
        for entry in want["inference"][:k]:
            assert abs(probs[entry["class"]] - entry["probability"]) < 2e-5, (example, entry)


def test_handler_output_equals_the_cli_on_fashion_mnist(needs_fashion_mnist, workdir):
    n, k = 300, 5
    subprocess.run([cli_path(), "infer", "--device=cpu", f"--limit={n}", f"--top_k={k}", f"--output={workdir}/cli",
                    f"--weights={WEIGHTS}"], check=True, capture_output=True, cwd=workdir)
    cli_rows = read_jsonl(f"{workdir}/cli/predictions-*.jsonl")
    names = beamlet.load_dataset(limit=1).class_names
    with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
        handler = KeyedModelHandler(BeamletModelHandler(WEIGHTS, max_batch_size=64)).with_preprocess_fn(
            fashion_mnist_example)
        rows = (p | ReadFashionMnist(limit=n) | RunInference(handler)
                | beam.Map(lambda kv: dict(prediction_to_dict(kv, names, k), all=prediction_to_dict(kv, names, 10)
                                           ["inference"])))
        _ = rows | beam.Map(json.dumps) | beam.io.WriteToText(f"{workdir}/beam/predictions", ".jsonl")
    beam_rows = read_jsonl(f"{workdir}/beam/predictions-*.jsonl")
    assert len(cli_rows) == n
    assert_same_predictions(cli_rows, beam_rows, k)
    # Class names and ids as the CLI writes them.
    assert beam_rows[0]["example"].startswith("fashion-mnist/t10k/")
    by_id = {r["example"]: r for r in beam_rows}
    assert by_id["fashion-mnist/t10k/00000"]["inference"][0]["name"] == \
        {r["example"]: r for r in cli_rows}["fashion-mnist/t10k/00000"]["inference"][0]["name"]


def test_handler_output_equals_the_cli_on_image_files(rgb_weights, workdir):
    rng = np.random.default_rng(5)
    classes = ["cats", "dogs"]
    for c in classes:
        os.makedirs(f"{workdir}/photos/{c}")
        for i in range(3):
            with open(f"{workdir}/photos/{c}/{i}.png", "wb") as f:
                f.write(png_bytes(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)))
    with open(f"{workdir}/photos/dogs/broken.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    subprocess.run([cli_path(), "infer", "--dataset=folder", f"--images={workdir}/photos", f"--weights={rgb_weights}",
                    "--resize=36", "--crop=32", "--device=cpu", "--top_k=3", f"--output={workdir}/cli"],
                   check=True, capture_output=True, cwd=workdir)
    cli_rows = read_jsonl(f"{workdir}/cli/predictions-*.jsonl")
    cli_dead = read_jsonl(f"{workdir}/cli/dead_letter-*.jsonl")
    handler = KeyedModelHandler(BeamletModelHandler(rgb_weights, input_size=(32, 32))).with_preprocess_fn(
        ImageFileExample(resize=36, crop=32, class_names=classes))
    with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
        main, dead = (p | ReadImageFiles(f"{workdir}/photos/*/*.png")
                      | RunInference(handler).with_exception_handling())
        _ = (main | beam.Map(lambda kv: json.dumps(dict(prediction_to_dict(kv, classes, 3),
                                                        all=prediction_to_dict(kv, classes, 10)["inference"])))
             | beam.io.WriteToText(f"{workdir}/beam/predictions", ".jsonl"))
        _ = (dead.failed_preprocessing[0] | beam.Map(lambda b: json.dumps(dead_letter_to_dict(b)))
             | "WriteDead" >> beam.io.WriteToText(f"{workdir}/beam/dead", ".jsonl"))
    beam_rows = read_jsonl(f"{workdir}/beam/predictions-*.jsonl")
    beam_dead = read_jsonl(f"{workdir}/beam/dead-*.jsonl")
    assert len(cli_rows) == 6 and all(r.get("label") in (0, 1) for r in cli_rows)
    assert_same_predictions(cli_rows, beam_rows, 3)
    assert [d["id"] for d in cli_dead] == [f"{workdir}/photos/dogs/broken.png"]
    assert [d["id"] for d in beam_dead] == [f"{workdir}/photos/dogs/broken.png"]
    assert "broken.png" in beam_dead[0]["reason"]


def test_cifar10_records_from_files(rgb_weights, workdir):
    rng = np.random.default_rng(7)
    rows = np.concatenate([np.array([[3], [7], [0]], np.uint8), rng.integers(0, 256, (3, 3072), dtype=np.uint8)], 1)
    with open(f"{workdir}/test_batch.bin", "wb") as f:
        f.write(rows.tobytes())
    want = beamlet.Model(rgb_weights, height=32, width=32).predict(
        beamlet.examples_from_records("cifar10", rows[:, 1:].reshape(3, 3, 32, 32)))
    handler = KeyedModelHandler(BeamletModelHandler(rgb_weights, input_size=(32, 32))).with_preprocess_fn(
        cifar10_example)
    with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
        out = p | ReadCifar10Records(f"{workdir}/*.bin") | RunInference(handler)
        assert_that(out | beam.Map(lambda kv: (kv[0], int(np.argmax(kv[1].inference)))),
                    equal_to([(ExampleKey(f"test_batch.bin/{i:05d}", int(rows[i, 0])), int(np.argmax(want[i])))
                              for i in range(3)]))
    with open(f"{workdir}/short.bin", "wb") as f:
        f.write(rows.tobytes()[:-10])
    with pytest.raises(Exception, match="record 2 at offset 6146 is truncated"):
        with beam.Pipeline(options=PipelineOptions(FNAPI)) as p:
            _ = p | ReadCifar10Records(f"{workdir}/short.bin")


def test_top_k_and_inference_args():
    classes, probs = top_k(np.array([0.0, 2.0, 1.0], np.float32), 2)
    assert classes == [1, 2] and probs[0] > probs[1] and abs(sum(top_k([0.0, 2.0, 1.0], 3)[1]) - 1) < 1e-12
    with pytest.raises(ValueError, match="takes no inference_args"):
        BeamletModelHandler(WEIGHTS).validate_inference_args({"temperature": 2})


def test_weights_on_a_remote_filesystem_are_copied_once_per_process(tmp_path):
    """A weights path on any filesystem Beam knows (gs://, s3://, ...) is read through Beam's
    FileSystems into a local file once; here a test filesystem stands in for Cloud Storage."""
    from apache_beam.io.localfilesystem import LocalFileSystem

    class PrefixedLocalFileSystem(LocalFileSystem):  # "beamlettest://<local path>"
        @classmethod
        def scheme(cls):
            return "beamlettest"

        def open(self, path, *args, **kwargs):
            return super().open(path[len("beamlettest://"):], *args, **kwargs)

    remote = "beamlettest://" + WEIGHTS
    handler = BeamletModelHandler(remote)
    model = handler.load_model()
    assert model.weights_path != WEIGHTS and os.path.basename(model.weights_path).endswith(os.path.basename(WEIGHTS))
    with open(model.weights_path, "rb") as a, open(WEIGHTS, "rb") as b:
        assert a.read() == b.read()
    again = handler.load_model()
    assert again.weights_path == model.weights_path  # the copy is reused
    assert handler.run_inference(examples(1), model)[0].model_id == "fashion-resnet18-w8.safetensors"
