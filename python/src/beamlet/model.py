"""Devices and models: a ResNet from a safetensors file on a beamlet device, numpy in, numpy out.

These objects hold C handles, so they live in one process and are never pickled; Beam code
builds them inside a worker (ModelHandler.load_model, DoFn.setup).
"""
import ctypes
import os

import numpy as np

from beamlet import _native

_c_int = ctypes.c_int


class Device:
    """An open beamlet device, by any name beamlet's device resolver knows: "auto", "cpu",
    "cpu_ref", "gpu", "cuda:1", "tpu", ... An accelerator that is not there is an error, unless
    allow_cpu_fallback (then the CPU, loudly, and fell_back is True)."""

    def __init__(self, name="cpu", allow_cpu_fallback=False):
        lib = _native.lib()
        handle = ctypes.c_void_p()
        _native.check(lib.bl_capi_device_open(_native.encode(name), int(bool(allow_cpu_fallback)),
                                              ctypes.byref(handle)))
        self._handle = handle
        self.requested = name
        self.name = lib.bl_capi_device_name(handle).decode()
        self.description = lib.bl_capi_device_description(handle).decode()
        self.fell_back = bool(lib.bl_capi_device_fell_back(handle))

    def close(self):
        if self._handle is not None and self._handle.value:
            _native.lib().bl_capi_device_close(self._handle)
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def __reduce__(self):
        raise TypeError("a beamlet.Device holds a C handle and cannot be pickled: keep the device name "
                        "and open it in the worker (ModelHandler.load_model, DoFn.setup)")

    def __repr__(self):
        return f"beamlet.Device({self.name!r}, {self.description!r})"


def devices():
    """What this build and machine offer, as `beamlet devices` prints it."""
    lib = _native.lib()
    return _native.call_returning_string(lib.bl_capi_device_list)


def peek_model(weights_path):
    """A ResNet's architecture from its safetensors header, without loading it: a dict with
    depth, width, in_channels, num_classes and input_side."""
    vals = [_c_int() for _ in range(5)]
    _native.check(_native.lib().bl_capi_model_peek(_native.encode(os.fspath(weights_path)),
                                                   *[ctypes.byref(v) for v in vals]))
    return dict(zip(("depth", "width", "in_channels", "num_classes", "input_side"), (v.value for v in vals)))


class Model:
    """A ResNet loaded for inference: predict() takes (N, C, H, W) float32 and returns (N, classes)
    float32 logits. Batches of any size are split into the planned batch (max_batch) in C. A
    process that loads the same (weights, device, size) twice shares one copy."""

    def __init__(self, weights_path, device="cpu", max_batch=64, height=0, width=0, allow_cpu_fallback=False):
        lib = _native.lib()
        self.weights_path = os.fspath(weights_path)
        own_device = not isinstance(device, Device)
        dev = Device(device, allow_cpu_fallback) if own_device else device
        handle = ctypes.c_void_p()
        try:
            _native.check(lib.bl_capi_model_load(dev._handle, _native.encode(self.weights_path), int(max_batch),
                                                 int(height), int(width), ctypes.byref(handle)))
        finally:
            if own_device:
                dev.close()  # the model holds its own reference to the device
        self._handle = handle
        self.device_fell_back = dev.fell_back
        vals = [_c_int() for _ in range(5)]
        lib.bl_capi_model_shape(handle, *[ctypes.byref(v) for v in vals])
        c, h, w, self.num_classes, self.max_batch = (v.value for v in vals)
        self.input_shape = (c, h, w)
        self.device = lib.bl_capi_model_device(handle).decode()

    def predict(self, x):
        """x: (N, C, H, W) (or one (C, H, W) example); returns logits (N, classes) float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{os.path.basename(self.weights_path)} takes examples of shape {self.input_shape} "
                             f"(C, H, W), got a batch of shape {tuple(x.shape)}")
        x = np.ascontiguousarray(x)
        logits = np.empty((x.shape[0], self.num_classes), dtype=np.float32)
        _native.check(_native.lib().bl_capi_model_infer(self._handle, x.ctypes.data, x.shape[0],
                                                        logits.ctypes.data))
        return logits

    # Plain-valued accessors: under Beam's large_model / model_copies the model lives in another
    # process and run_inference talks to it through a proxy, which passes only picklable values.
    def get_input_shape(self):
        return self.input_shape

    def get_num_classes(self):
        return self.num_classes

    def get_device(self):
        return self.device

    def process_id(self):
        """The process holding this model (another one than the caller's under a proxy)."""
        return os.getpid()

    @staticmethod
    def models_loaded():
        """Models this process has loaded so far; a shared model counts once."""
        return int(_native.lib().bl_capi_models_loaded())

    def close(self):
        if getattr(self, "_handle", None) is not None and self._handle.value:
            _native.lib().bl_capi_model_free(self._handle)
        self._handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __reduce__(self):
        raise TypeError("a beamlet.Model holds a C handle and cannot be pickled: give the ModelHandler "
                        "the weights path and let load_model() build the model in the worker")

    def __repr__(self):
        return (f"beamlet.Model({os.path.basename(self.weights_path)!r}, device={self.device!r}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")
