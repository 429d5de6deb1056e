"""The four stages in python/examples/ run as a user runs them (a subprocess, Beam's flags on the
command line): stage 1 on the whole Fashion-MNIST test split reaches the CLI's accuracy, and the
accelerator strings are checked before anything is submitted."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, WEIGHTS, cli_path

EXAMPLES = os.path.join(ROOT, "python", "examples")


def example(name, *args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return proc


def test_stage1_on_the_test_split_reaches_the_clis_accuracy(needs_fashion_mnist, workdir):
    cli = subprocess.run([cli_path(), "infer", "--device=cpu", f"--weights={WEIGHTS}", f"--output={workdir}/cli"],
                         capture_output=True, text=True, check=True, cwd=workdir)
    with open(f"{workdir}/cli/summary.json") as f:
        want = json.load(f)
    beam = example("cpu_inference.py", f"--weights={WEIGHTS}", f"--output={workdir}/beam")
    with open(f"{workdir}/beam/summary.json") as f:
        got = json.load(f)
    assert want["labelled"] == 10000 and got["labelled"] == 10000
    # Both are correct / labelled as a double: the same counts give the same number, exactly.
    assert (got["accuracy"], got["top_k_accuracy"]) == (want["accuracy"], want["top_k_accuracy"])
    # What each prints, side by side: the same accuracy line.
    cli_line = re.search(r"accuracy (\d+\.\d+)%", cli.stdout).group(1)
    beam_line = re.search(r"accuracy (\d+\.\d+)%", beam.stdout).group(1)
    assert cli_line == beam_line, (cli.stdout, beam.stdout)
    print(f"beamlet infer: accuracy {cli_line}%; python/examples/cpu_inference.py: accuracy {beam_line}%")


def test_stage2_needs_a_gpu_or_the_explicit_fallback(needs_fashion_mnist, workdir):
    proc = example("gpu_inference.py", "--limit=64", f"--output={workdir}/s2", check=False)
    if proc.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert "no NVIDIA GPU" in proc.stderr and "--allow_cpu_fallback" in proc.stderr
    example("gpu_inference.py", "--limit=64", "--allow_cpu_fallback", f"--output={workdir}/s2")
    with open(f"{workdir}/s2/summary.json") as f:
        assert json.load(f)["total"] == 64


@pytest.mark.parametrize("name,args,why", [
    ("gpu_inference.py", ["--accelerator=type:nvidia-l4;count=1"], "unknown field 'count=1'"),
    ("gpu_inference.py", ["--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;x"],
     "worker_accelerator: accelerator .* unknown field 'x'"),
    ("cpu_inference.py", ["--worker_accelerator=type:nvidia-l4;count:1"], "not a Beam pipeline option"),
    ("cpu_inference.py", ["--resource_hints=accelerator=type:nvidia-l4;count:1"], "runs on the CPU"),
    ("tpu_training.py", ["--dataflow_service_options=worker_accelerator=type:tpu-v5-lite-podslice"],
     "a TPU needs topology"),
    ("parallel_training.py", ["--device=gpu", "--accelerator=type:nvidia-h100;count:8"], "unknown GPU type"),
    ("parallel_training.py", ["--learning_rate=0.1"], "from --learning_rates"),
])
def test_bad_flags_are_refused_before_submission(name, args, why):
    proc = example(name, *args, "--runner=DataflowRunner", check=False)
    assert proc.returncode != 0 and re.search(why, proc.stderr), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, "a clear one-line error, not a traceback"


def test_stage3_trains_and_resumes(needs_fashion_mnist, workdir):
    tiny = ["--device=cpu", "--width=4", "--epochs=2", "--batch_size=32", "--train_limit=256", "--test_limit=128",
            "--quiet=true", f"--output_dir={workdir}"]
    first = example("tpu_training.py", *tiny, "--stop_after_epochs=1")
    assert "stopped after epoch 1" in first.stdout
    second = example("tpu_training.py", *tiny)
    assert "done, resumed" in second.stdout and os.path.exists(f"{workdir}/stage3-fashion-resnet18/model.safetensors")


def test_stage3_needs_the_accelerator_or_the_explicit_fallback(needs_fashion_mnist, workdir):
    tiny = ["--device=gpu", "--width=4", "--epochs=1", "--batch_size=32", "--train_limit=64", "--test_limit=32",
            "--quiet", f"--output_dir={workdir}"]
    proc = example("tpu_training.py", *tiny, check=False)
    if proc.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert "no NVIDIA GPU" in proc.stderr and "allow_cpu_fallback" in proc.stderr, proc.stderr[-2000:]
    example("tpu_training.py", *tiny, "--allow_cpu_fallback")  # the config's field, from its flag
    with open(f"{workdir}/stage3-results.json") as f:
        assert json.load(f)["device"] == "cpu"


def test_stage4_sweeps_on_two_workers_and_deploys(needs_fashion_mnist, workdir):
    proc = example("parallel_training.py", "--device=cpu", "--width=4", "--epochs=1", "--train_limit=256",
                   "--test_limit=128", "--quiet=true", "--learning_rates=0.1,0.01", "--batch_sizes=32",
                   "--models=resnet18", f"--output_dir={workdir}", f"--serving_dir={workdir}/serving",
                   "--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert "2 configs trained" in proc.stdout
    with open(f"{workdir}/stage4-results-best.json") as f:
        best = json.load(f)
    with open(f"{workdir}/serving/model.json") as f:
        assert json.load(f) == best
