"""beamlet from Python: its models, training and datasets over libbeamlet's C ABI, and
`beamlet.beam`, the pieces that put them into Apache Beam pipelines (a RunInference
ModelHandler, a training DoFn, the sweep's best-model selection and deployment).

    import beamlet
    model = beamlet.Model("models/fashion-resnet18-w8.safetensors", device="cpu")
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


def library_version():
    """The version of the libbeamlet.so in use (it must speak ABI_VERSION, checked on load)."""
    from beamlet import _native
    return _native.lib().bl_capi_library_version().decode()


__all__ = ["ABI_VERSION", "AbiMismatchError", "BeamletError", "BeamletIOError", "Dataset", "Device", "DeviceError",
           "FormatError", "InternalError", "InvalidArgumentError", "Model", "NotFoundError", "OutOfMemoryError",
           "UnsupportedError", "default_config", "devices", "example_shape", "examples_from_records",
           "image_example", "library_path", "library_version", "load_dataset", "peek_model", "sweep_grid", "train",
           "training_config"]
