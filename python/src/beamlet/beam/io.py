"""The learning path's inputs as Beam PCollections, and the adapters that turn them into model
inputs for BeamletModelHandler (as RunInference preprocessing functions, so a record that
cannot be used goes to RunInference's dead-letter output under with_exception_handling()).

Readers:
  ReadFashionMnist   a Fashion-MNIST split, read on the submitting machine by beamlet's IDX
                     reader (the C one: gzip, strict checks) into a Create, as stage 1 does in C.
  ReadCifar10Records CIFAR-10 binary files (3,073-byte records: label, 3x32x32 planar RGB)
                     matched by a file pattern and read on the workers through Beam's
                     FileSystems (local, gs://, ...). Splitting fixed-size records is plain
                     numpy; the checks (whole records only, labels 0..9) name file and offset.
  ReadImageFiles     JPEG/PNG files matched by a file pattern, read as bytes on the workers.
Adapters (each returns (ExampleKey, float32 array)):
  fashion_mnist_example, cifar10_example   beamlet's evaluation transform, through the C ABI
  ImageFileExample(resize, crop)           beamlet's decoder and ImageNet preprocessing
"""
import os
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from beamlet.beam.inference import ExampleKey

CIFAR10_RECORD_BYTES = 3073


@dataclass(frozen=True)
class ImageRecord:
    """A raw labelled image as a dataset stores it: pixels (C, H, W) u8, label -1 when unknown."""
    id: str
    label: int
    pixels: np.ndarray


@dataclass(frozen=True)
class ImageFile:
    """An image file's path and bytes, not decoded yet."""
    path: str
    data: bytes


class ReadFashionMnist(beam.PTransform):
    """A Fashion-MNIST split as ImageRecords with ids "fashion-mnist/t10k/00042" (test) or
    ".../train/..."; data_dir None: $BEAMLET_FASHION_MNIST, else Debian's
    /usr/share/datasets/fashion-mnist; limit > 0 keeps the first `limit` images."""

    def __init__(self, data_dir=None, split="test", limit=0):
        super().__init__()
        self._data_dir, self._split, self._limit = data_dir, split, limit

    def expand(self, pbegin):
        from beamlet.data import load_dataset
        ds = load_dataset("fashion-mnist", self._split, self._data_dir, self._limit)
        prefix = "fashion-mnist/t10k" if self._split == "test" else "fashion-mnist/train"
        records = [ImageRecord(f"{prefix}/{i:05d}", int(ds.labels[i]), ds.images[i]) for i in range(len(ds))]
        return pbegin | "CreateRecords" >> beam.Create(records, reshuffle=False)


def parse_cifar10(path, data):
    """The ImageRecords of one CIFAR-10 binary file's bytes; ids "<file name>/00042"."""
    name = os.path.basename(path)
    if len(data) % CIFAR10_RECORD_BYTES:
        whole = len(data) // CIFAR10_RECORD_BYTES
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of {CIFAR10_RECORD_BYTES}-byte "
                         f"records: record {whole} at offset {whole * CIFAR10_RECORD_BYTES} is truncated")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
    bad = np.nonzero(rows[:, 0] > 9)[0]
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{path}: record {i} at offset {i * CIFAR10_RECORD_BYTES} has label {rows[i, 0]} "
                         "(CIFAR-10 labels are 0..9)")
    return [ImageRecord(f"{name}/{i:05d}", int(row[0]), row[1:].reshape(3, 32, 32)) for i, row in enumerate(rows)]


class _ReadFiles(beam.PTransform):
    """The files matching a pattern, read whole on the workers through Beam's FileSystems, each
    turned into elements by `to_elements(path, data)`."""

    def __init__(self, file_pattern, to_elements):
        super().__init__()
        self._pattern, self._to_elements = file_pattern, to_elements

    def expand(self, pbegin):
        from apache_beam.io import fileio
        to_elements = self._to_elements
        return (pbegin
                | "Match" >> fileio.MatchFiles(self._pattern)
                | "Read" >> fileio.ReadMatches()
                | "Elements" >> beam.FlatMap(lambda f: to_elements(f.metadata.path, f.read())))


def _image_file(path, data):
    return [ImageFile(path, data)]


class ReadCifar10Records(_ReadFiles):
    """ImageRecords from CIFAR-10 binary files matching `file_pattern` (e.g.
    ".../cifar-10-batches-bin/test_batch.bin", or gs://...)."""

    def __init__(self, file_pattern):
        super().__init__(file_pattern, parse_cifar10)


class ReadImageFiles(_ReadFiles):
    """ImageFiles (path, bytes) for the files matching `file_pattern`, e.g. "photos/*/*.jpg"."""

    def __init__(self, file_pattern):
        super().__init__(file_pattern, _image_file)


def _record_example(dataset, record):
    from beamlet.data import examples_from_records
    if not isinstance(record, ImageRecord):
        raise TypeError(f"{dataset} adapter: expected an ImageRecord, got {type(record).__name__}")
    return ExampleKey(record.id, record.label), examples_from_records(dataset, record.pixels)


def fashion_mnist_example(record):
    """ImageRecord (1, 28, 28) -> (ExampleKey, (1, 32, 32) float32): centre zero-padded and
    normalized as beamlet's trainer and `beamlet infer` do."""
    return _record_example("fashion-mnist", record)


def cifar10_example(record):
    """ImageRecord (3, 32, 32) -> (ExampleKey, (3, 32, 32) float32), normalized per channel."""
    return _record_example("cifar10", record)


class ImageFileExample:
    """ImageFile -> (ExampleKey, (3, crop, crop) float32): decoded by beamlet (JPEG/PNG, as RGB),
    Resize(resize), CenterCrop(crop), ImageNet normalization. With class_names, the label is the
    index of the file's folder name among them (torchvision's ImageFolder layout), else -1. An
    undecodable file raises FormatError naming it, which with_exception_handling() routes to
    the dead-letter output."""

    def __init__(self, resize=256, crop=224, class_names=None):
        if crop < 1 or resize < crop:
            raise ValueError(f"resize {resize}, crop {crop}: need 0 < crop <= resize")
        self._resize, self._crop = int(resize), int(crop)
        self._classes = list(class_names) if class_names else None

    def __call__(self, image_file):
        from beamlet.data import image_example
        label = -1
        if self._classes:
            folder = os.path.basename(os.path.dirname(image_file.path))
            label = self._classes.index(folder) if folder in self._classes else -1
        x = image_example(image_file.data, image_file.path, self._resize, self._crop)
        return ExampleKey(image_file.path, label), x
