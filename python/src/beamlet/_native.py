"""The one place that knows libbeamlet.so: finds it, checks its ABI version, declares every
function's signature for ctypes, and turns failed calls into exceptions.

Why ctypes (not cffi): it is in the standard library, so the package needs nothing at run time
beyond numpy and apache-beam and no compiler when installed; the ABI is a few dozen coarse
calls (a whole batch per call), so ctypes' per-call cost (microseconds) is noise next to a
model's milliseconds; and ctypes releases the GIL during each call, so Beam's worker threads
run models in parallel. The signatures below mirror include/beamlet/capi.h.

The library is opened lazily, once per process, and never stored on anything that Beam
pickles: a ctypes handle cannot be pickled, so handlers and DoFns keep plain configuration
and call lib() inside the worker.
"""
import ctypes
import os
import threading

from beamlet import errors

ABI_VERSION = 1  # BL_CAPI_ABI_VERSION this package was written for

_lock = threading.Lock()
_lib = None

c_int, c_int64, c_size_t = ctypes.c_int, ctypes.c_int64, ctypes.c_size_t
c_char_p, c_void_p = ctypes.c_char_p, ctypes.c_void_p
P = ctypes.POINTER
_SIGNATURES = {
    "bl_capi_abi_version": (c_int, []),
    "bl_capi_library_version": (c_char_p, []),
    "bl_capi_last_error": (c_char_p, []),
    "bl_capi_status_name": (c_char_p, [c_int]),
    "bl_capi_free": (None, [c_void_p]),
    "bl_capi_device_list": (c_int, [P(c_void_p)]),
    "bl_capi_device_open": (c_int, [c_char_p, c_int, P(c_void_p)]),
    "bl_capi_device_name": (c_char_p, [c_void_p]),
    "bl_capi_device_description": (c_char_p, [c_void_p]),
    "bl_capi_device_fell_back": (c_int, [c_void_p]),
    "bl_capi_device_close": (None, [c_void_p]),
    "bl_capi_model_peek": (c_int, [c_char_p, P(c_int), P(c_int), P(c_int), P(c_int), P(c_int)]),
    "bl_capi_model_load": (c_int, [c_void_p, c_char_p, c_int, c_int, c_int, P(c_void_p)]),
    "bl_capi_model_shape": (None, [c_void_p, P(c_int), P(c_int), P(c_int), P(c_int), P(c_int)]),
    "bl_capi_model_device": (c_char_p, [c_void_p]),
    "bl_capi_model_infer": (c_int, [c_void_p, c_void_p, c_int64, c_void_p]),
    "bl_capi_model_free": (None, [c_void_p]),
    "bl_capi_models_loaded": (c_int64, []),
    "bl_capi_training_config_default": (c_int, [P(c_void_p)]),
    "bl_capi_training_config_normalize": (c_int, [c_char_p, P(c_void_p)]),
    "bl_capi_train": (c_int, [c_char_p, P(c_void_p)]),
    "bl_capi_sweep_grid": (c_int, [c_char_p, c_void_p, c_int, c_void_p, c_int, c_void_p, c_int, P(c_void_p)]),
    "bl_capi_dataset_load": (c_int, [c_char_p, c_char_p, c_int, P(c_void_p)]),
    "bl_capi_dataset_shape": (None, [c_void_p, P(c_int64), P(c_int), P(c_int), P(c_int), P(c_int)]),
    "bl_capi_dataset_class_name": (c_char_p, [c_void_p, c_int]),
    "bl_capi_dataset_source": (c_char_p, [c_void_p]),
    "bl_capi_dataset_read": (c_int, [c_void_p, c_int64, c_int64, c_void_p, c_void_p]),
    "bl_capi_dataset_free": (None, [c_void_p]),
    "bl_capi_example_shape": (c_int, [c_char_p, c_int, c_int, c_int, P(c_int), P(c_int), P(c_int)]),
    "bl_capi_examples_from_records": (c_int, [c_char_p, c_void_p, c_int64, c_int, c_int, c_int, c_void_p]),
    "bl_capi_image_example": (c_int, [c_void_p, c_size_t, c_char_p, c_int, c_int, c_void_p]),
}


def library_path():
    """$BEAMLET_LIBRARY when set (a build tree's libbeamlet.so), else the one in the wheel."""
    path = os.environ.get("BEAMLET_LIBRARY")
    if path:
        return os.path.abspath(path)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "libbeamlet.so")


def _open():
    path = library_path()
    if not os.path.exists(path):
        raise ImportError(f"beamlet: no C library at {path}: install the package with `pip install ./python` "
                          "(which builds it), or point BEAMLET_LIBRARY at a built libbeamlet.so")
    # libgomp reads this once, when the library loads it. Its default lets idle OpenMP threads
    # spin; inside a Beam worker they share the cores with the SDK harness's own threads (gRPC,
    # progress reports, other DoFns), and spinning starved the model: stage 1 ran ~10x slower on
    # a busy 2-core machine (the test suite sets PASSIVE for the same reason). An explicit
    # setting in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"beamlet: cannot load {path}: {e}") from e
    try:
        abi = lib.bl_capi_abi_version
    except AttributeError:
        raise errors.AbiMismatchError(f"beamlet: {path} has no bl_capi_abi_version: not a beamlet C ABI "
                                      "library") from None
    abi.restype, abi.argtypes = c_int, []
    if abi() != ABI_VERSION:
        raise errors.AbiMismatchError(
            f"beamlet: {path} speaks C ABI version {abi()}, this Python package speaks version {ABI_VERSION}: "
            "install the package and the library from the same beamlet version")
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def lib():
    """The process's libbeamlet, opened and checked on first use."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _open()
    return _lib


def check(status):
    """Raises the exception for a failed call (status != 0), with beamlet's message."""
    if status != 0:
        message = lib().bl_capi_last_error().decode("utf-8", "replace")
        raise errors.from_status(status, message)


def take_string(ptr):
    """Copies a malloc'ed string the ABI returned and frees it."""
    if not ptr:
        return ""
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib().bl_capi_free(ptr)


def call_returning_string(fn, *args):
    out = c_void_p()
    check(fn(*args, ctypes.byref(out)))
    return take_string(out.value)


def encode(text):
    return None if text is None else os.fsencode(text) if isinstance(text, os.PathLike) else str(text).encode("utf-8")
