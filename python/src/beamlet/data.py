"""The learning path's data, read and preprocessed by beamlet's own C code, so a Python pipeline
feeds a model exactly the floats `beamlet infer` and `beamlet train` feed it.

- load_dataset(): a Fashion-MNIST (IDX, gzipped or not) or CIFAR-10 (binary batches) split,
  with beamlet's strict readers: a truncated or corrupt file is an error naming the file, the
  record and the byte offset.
- examples_from_records(): the dataset's evaluation transform on raw u8 records (Fashion-MNIST
  centre zero-padded to 32x32 and normalized; CIFAR-10 normalized per channel).
- image_example(): a JPEG/PNG file's bytes through torchvision's ImageNet evaluation
  preprocessing (decode to RGB, Resize, CenterCrop, Normalize), as beamlet's image folders do.
"""
import ctypes
import os

import numpy as np

from beamlet import _native

_c_int = ctypes.c_int


class Dataset:
    """A loaded split: images (count, C, H, W) u8 and labels (count,) u8 as numpy arrays."""

    def __init__(self, name, images, labels, class_names, source):
        self.name, self.images, self.labels = name, images, labels
        self.class_names, self.source = class_names, source

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        return f"beamlet.Dataset({self.name!r}, {len(self)} images of {self.images.shape[1:]}, from {self.source!r})"


def load_dataset(name="fashion-mnist", split="test", data_dir=None, limit=0):
    """Reads a split ("train" or "test") of "fashion-mnist" or "cifar10"; data_dir None means the
    dataset's default place; limit > 0 keeps the first `limit` images."""
    if split not in ("train", "test"):
        raise ValueError(f"split {split!r}: expected 'train' or 'test'")
    lib = _native.lib()
    handle = ctypes.c_void_p()
    _native.check(lib.bl_capi_dataset_load(_native.encode(name), _native.encode(data_dir or ""),
                                           int(split == "train"), ctypes.byref(handle)))
    try:
        count = ctypes.c_int64()
        dims = [_c_int() for _ in range(4)]
        lib.bl_capi_dataset_shape(handle, ctypes.byref(count), *[ctypes.byref(d) for d in dims])
        c, h, w, classes = (d.value for d in dims)
        n = count.value if limit <= 0 else min(int(limit), count.value)
        images = np.empty((n, c, h, w), dtype=np.uint8)
        labels = np.empty((n,), dtype=np.uint8)
        _native.check(lib.bl_capi_dataset_read(handle, 0, n, images.ctypes.data, labels.ctypes.data))
        names = [lib.bl_capi_dataset_class_name(handle, k).decode() for k in range(classes)]
        source = lib.bl_capi_dataset_source(handle).decode()
    finally:
        lib.bl_capi_dataset_free(handle)
    return Dataset(name, images, labels, names, source)


def example_shape(dataset, record_shape):
    """The (C, H, W) a record of `record_shape` (C, H, W) becomes."""
    c, h, w = (int(v) for v in record_shape)
    out = [_c_int() for _ in range(3)]
    _native.check(_native.lib().bl_capi_example_shape(_native.encode(dataset), c, h, w,
                                                      *[ctypes.byref(v) for v in out]))
    return tuple(v.value for v in out)


def examples_from_records(dataset, images):
    """The evaluation transform of `dataset` ("fashion-mnist" or "cifar10") on raw records:
    images (N, C, H, W) or one (C, H, W) u8 -> float32 of example_shape()."""
    images = np.asarray(images)
    single = images.ndim == 3
    if single:
        images = images[None]
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{dataset} records are u8 arrays (N, C, H, W) or (C, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    images = np.ascontiguousarray(images)
    n, c, h, w = images.shape
    out = np.empty((n,) + example_shape(dataset, (c, h, w)), dtype=np.float32)
    _native.check(_native.lib().bl_capi_examples_from_records(_native.encode(dataset), images.ctypes.data, n, c, h, w,
                                                              out.ctypes.data))
    return out[0] if single else out


def image_example(data, name="image", resize=256, crop=224):
    """A JPEG/PNG file's bytes (or a path) -> (3, crop, crop) float32, torchvision's ImageNet
    evaluation preprocessing. Undecodable input raises FormatError naming `name` and why."""
    if isinstance(data, (str, os.PathLike)):
        name = os.fspath(data)
        with open(data, "rb") as f:
            data = f.read()
    data = bytes(data)
    out = np.empty((3, int(crop), int(crop)), dtype=np.float32)
    _native.check(_native.lib().bl_capi_image_example(data, len(data), _native.encode(name), int(resize), int(crop),
                                                      out.ctypes.data))
    return out
