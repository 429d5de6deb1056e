"""beamlet's Python binding over the C ABI, without Beam: loading and the ABI check, errors
carrying beamlet's messages, models, data preprocessing, training configs and the grid."""
import os
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import beamlet
from conftest import WEIGHTS


def png_bytes(pixels):
    """An 8-bit RGB PNG of pixels (H, W, 3) u8, written with zlib alone."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_library_loads_and_speaks_this_abi():
    assert beamlet.ABI_VERSION == 1
    assert beamlet.library_version() == beamlet.__version__
    assert "cpu" in beamlet.devices()


def test_abi_mismatch_is_refused_at_load():
    code = ("import beamlet._native as n; n.ABI_VERSION = 99\n"
            "try:\n    n.lib()\nexcept ImportError as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("AbiMismatchError") and "version 1" in out and "version 99" in out, out


def test_missing_library_is_a_clear_import_error(tmp_path):
    env = dict(os.environ, BEAMLET_LIBRARY=str(tmp_path / "libbeamlet.so"))
    code = "import beamlet\ntry:\n    beamlet.devices()\nexcept ImportError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "no C library at" in out and "pip install ./python" in out, out


def test_errors_carry_beamlets_message_and_pickle():
    with pytest.raises(beamlet.NotFoundError, match="nope.safetensors: No such file") as e:
        beamlet.Model("nope.safetensors")
    assert isinstance(e.value, LookupError) and e.value.status == 6
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is beamlet.NotFoundError and str(again) == str(e.value) and again.status == 6
    with pytest.raises(beamlet.FormatError, match="unknown field 'epoch'"):
        beamlet.training_config(epoch=3)
    with pytest.raises(ValueError, match="model 'vgg' is not supported"):
        beamlet.training_config(model="vgg")
    with pytest.raises(beamlet.InvalidArgumentError, match="unknown device 'quantum'|quantum"):
        beamlet.Device("quantum")


def test_no_gpu_is_an_error_unless_the_fallback_is_asked_for():
    try:
        beamlet.Device("gpu").close()
        pytest.skip("this machine has a GPU")
    except (beamlet.NotFoundError, beamlet.UnsupportedError) as e:  # no GPU; a build without CUDA
        assert "no NVIDIA GPU" in str(e) and "allow_cpu_fallback" in str(e)
    with beamlet.Device("gpu", allow_cpu_fallback=True) as d:
        assert d.fell_back and d.name == "cpu"


def test_model_predicts_and_handles_cannot_be_pickled():
    m = beamlet.Model(WEIGHTS, max_batch=4)
    assert m.input_shape == (1, 32, 32) and m.num_classes == 10 and m.device == "cpu"
    x = np.random.default_rng(0).standard_normal((9, 1, 32, 32)).astype(np.float32)
    logits = m.predict(x)
    assert logits.shape == (9, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()
    np.testing.assert_allclose(m.predict(x[3]), logits[3:4], atol=2e-5)  # one example, another batch
    with pytest.raises(ValueError, match=r"takes examples of shape \(1, 32, 32\)"):
        m.predict(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(m)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(beamlet.Device("cpu"))
    assert beamlet.peek_model(WEIGHTS) == {"depth": 18, "width": 8, "in_channels": 1, "num_classes": 10,
                                           "input_side": 32}


def test_fashion_mnist_records_become_the_trainers_input(needs_fashion_mnist):
    ds = beamlet.load_dataset("fashion-mnist", "test", limit=3)
    assert ds.images.shape == (3, 1, 28, 28) and list(ds.labels) == [9, 2, 1]
    assert ds.class_names[9] == "Ankle boot"
    x = beamlet.examples_from_records("fashion-mnist", ds.images)
    # Independently: zero-pad 28 -> 32 (2 each side), /255, normalize with the training mean/std.
    padded = np.zeros((3, 1, 32, 32), np.float32)
    padded[:, :, 2:30, 2:30] = ds.images
    want = (padded / np.float32(255) - np.float32(0.2860)) / np.float32(0.3530)
    np.testing.assert_array_equal(x, want)
    with pytest.raises(ValueError, match="u8 arrays"):
        beamlet.examples_from_records("fashion-mnist", ds.images.astype(np.float32))


def test_image_files_get_imagenet_preprocessing():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    x = beamlet.image_example(png_bytes(pixels), "photo.png", resize=6, crop=4)
    # Shorter side already 6: no resize; centre crop 4x4 starts at (1, 2).
    crop = pixels[1:5, 2:6].transpose(2, 0, 1).astype(np.float32)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    np.testing.assert_allclose(x, (crop / np.float32(255) - mean) / std, atol=1e-6)
    with pytest.raises(beamlet.FormatError, match="broken.jpg"):
        beamlet.image_example(b"not an image at all", "broken.jpg", 6, 4)


def test_cifar_records_through_a_three_channel_model(rgb_weights):
    weights = rgb_weights  # an ImageNet-stem RGB model, run at 32x32
    info = beamlet.peek_model(weights)
    records = np.random.default_rng(2).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    x = beamlet.examples_from_records("cifar10", records)
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)[:, None, None]
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)[:, None, None]
    np.testing.assert_allclose(x, (records / np.float32(255) - mean) / std, atol=1e-4)
    logits = beamlet.Model(weights, max_batch=4, height=32, width=32).predict(x)
    assert logits.shape == (4, info["num_classes"])


def test_training_config_and_sweep_grid():
    d = beamlet.default_config()
    assert d["batch_size"] == 512 and d["epochs"] == 15 and d["model"] == "resnet18"
    c = beamlet.training_config(d, epochs=3, width=8)
    assert c["epochs"] == 3 and c["width"] == 8 and c["learning_rate"] == d["learning_rate"]
    grid = beamlet.sweep_grid(c)
    assert len(grid) == 18
    ids = [g["experiment_id"] for g in grid]
    assert ids[0] == "resnet18-lr0.01-bs16" and ids[-1] == "resnet34-lr0.0001-bs64" and len(set(ids)) == 18
    assert all(g["epochs"] == 3 and g["width"] == 8 for g in grid)
    small = beamlet.sweep_grid(c, learning_rates=[0.1, 0.05], batch_sizes=[32], models=["resnet18"])
    assert [g["experiment_id"] for g in small] == ["resnet18-lr0.1-bs32", "resnet18-lr0.05-bs32"]
    with pytest.raises(ValueError, match="two configs would both be"):
        beamlet.sweep_grid(c, learning_rates=[0.1, 0.1])


def test_train_resumes_from_its_checkpoint(needs_fashion_mnist, workdir):
    config = beamlet.training_config(experiment_id="tiny", width=4, epochs=2, batch_size=32, train_limit=256,
                                     test_limit=64, device="cpu", quiet=True, output_dir=workdir)
    first = beamlet.train(dict(config, stop_after_epochs=1))
    assert first["epochs"] == 1 and not first["resumed"] and first["weights_path"] == ""
    second = beamlet.train(config)
    assert second["epochs"] == 2 and second["resumed"] and os.path.exists(second["weights_path"])
    with pytest.raises(ValueError, match="batch size 1"):
        beamlet.train(dict(config, batch_size=1))
