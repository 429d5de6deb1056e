"""Shared fixtures for the Python package's tests (run by ctest through python/beamlet.cmake,
or by hand: BEAMLET_LIBRARY=build/libbeamlet.so PYTHONPATH=python/src:python/tests
.venv/bin/python -m pytest python/tests).

Runners: Beam's FnApiRunner (in process, and --direct_running_mode=multi_processing) and the
BundleBasedDirectRunner; never the default runner, which may try to download Prism."""
import os
import shutil

import pytest

ROOT = os.environ.get("BEAMLET_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FASHION_DIR = os.environ.get("BEAMLET_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
WEIGHTS = os.path.join(ROOT, "models", "fashion-resnet18-w8.safetensors")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

FNAPI = ["--runner=FnApiRunner"]
MULTI_PROCESSING = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
BUNDLE_BASED = ["--runner=BundleBasedDirectRunner"]


def cli_path():
    """The `beamlet` CLI of the build under test."""
    path = os.path.abspath(os.environ.get("BEAMLET_CLI") or os.path.join(ROOT, "build", "beamlet"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no beamlet CLI at {path} (set BEAMLET_CLI, or build first)")
    return path


@pytest.fixture
def needs_fashion_mnist():
    if not os.path.exists(os.path.join(FASHION_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"no Fashion-MNIST in {FASHION_DIR} (Debian package dataset-fashion-mnist)")


@pytest.fixture
def workdir(tmp_path):
    """A scratch folder, also the cwd of subprocesses started by a test."""
    yield str(tmp_path)
    shutil.rmtree(str(tmp_path), ignore_errors=True)


def strip_safetensors_prefix(src, dst, prefix):
    """Writes the tensors of `src` whose names start with `prefix` to `dst` without it (the
    fixtures keep a model's parameters under "param/" beside its inputs and outputs)."""
    import json
    import struct
    with open(src, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out_header, chunks, offset = {}, [], 0
    for name, info in header.items():
        if name == "__metadata__" or not name.startswith(prefix):
            continue
        begin, end = info["data_offsets"]
        chunks.append(data[begin:end])
        out_header[name[len(prefix):]] = dict(info, data_offsets=[offset, offset + end - begin])
        offset += end - begin
    text = json.dumps(out_header).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


@pytest.fixture(scope="session")
def rgb_weights(tmp_path_factory):
    """A 3-channel ImageNet-stem ResNet-18 (width 8, 10 classes) in torchvision's layout: the
    PyTorch-made eval fixture's parameters."""
    dst = str(tmp_path_factory.mktemp("weights") / "resnet18-rgb-w8.safetensors")
    strip_safetensors_prefix(os.path.join(FIXTURES, "resnet18_imagenet_w8_eval.safetensors"), dst, "param/")
    return dst
