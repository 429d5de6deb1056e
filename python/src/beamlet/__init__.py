"""beamlet from Python: its models, training and datasets over libbeamlet's C ABI, and
`beamlet.beam`, the pieces that put them into Apache Beam pipelines (a RunInference
ModelHandler, a training DoFn, the sweep's best-model selection and deployment).

    import beamlet
    model = beamlet.Model(beamlet.shipped_model(), device="cpu")
    logits = model.predict(beamlet.examples_from_records("fashion-mnist", images))
"""
from beamlet._native import ABI_VERSION, library_path
from beamlet.data import Dataset, example_shape, examples_from_records, image_example, load_dataset
from beamlet.errors import (AbiMismatchError, BeamletError, BeamletIOError, DeviceError, FormatError,
                            InternalError, InvalidArgumentError, NotFoundError, OutOfMemoryError,
                            UnsupportedError)
from beamlet.model import Device, Model, devices, peek_model
from beamlet.training import default_config, sweep_grid, train, training_config

__version__ = "0.1.0"

SHIPPED_MODEL = "fashion-resnet18-w8.safetensors"


def shipped_model():
    """The path of the model beamlet ships (models/README.md), found as the C programs find it:
    $BEAMLET_MODEL_DIR when set, else the copy inside the installed package, else the source
    checkout this package was imported from (PYTHONPATH=python/src)."""
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    env = os.environ.get("BEAMLET_MODEL_DIR")
    places = ([os.path.join(env, SHIPPED_MODEL)] if env else []) + [
        os.path.join(here, "models", SHIPPED_MODEL),
        os.path.normpath(os.path.join(here, "..", "..", "..", "models", SHIPPED_MODEL))]
    for path in places:
        if os.path.isfile(path):
            return path
    raise NotFoundError(f"beamlet: the shipped model {SHIPPED_MODEL} is in none of {', '.join(places)}: "
                        "reinstall the package (`pip install ./python`), set BEAMLET_MODEL_DIR, or pass a path")


def library_version():
    """The version of the libbeamlet.so in use (it must speak ABI_VERSION, checked on load)."""
    from beamlet import _native
    return _native.lib().bl_capi_library_version().decode()


__all__ = ["ABI_VERSION", "AbiMismatchError", "BeamletError", "BeamletIOError", "Dataset", "Device", "DeviceError",
           "FormatError", "InternalError", "InvalidArgumentError", "Model", "NotFoundError", "OutOfMemoryError",
           "UnsupportedError", "default_config", "devices", "example_shape", "examples_from_records",
           "image_example", "library_path", "library_version", "load_dataset", "peek_model", "shipped_model", "sweep_grid", "train",
           "training_config"]
