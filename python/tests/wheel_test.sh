#!/usr/bin/env bash
# ctest python/wheel: builds the wheel as `pip install ./python` does (scikit-build-core running
# the project's CMake), installs it into a folder of its own and runs a model from there, so the
# package must find the libbeamlet.so inside the wheel, not this build's. Without build isolation
# (scikit-build-core comes from the project's .venv: no network) and without CUDA (nvcc would
# add minutes; the GPU build is the same CMake with the CUDA backend on).
#   python/tests/wheel_test.sh PYTHON WORKDIR
set -euo pipefail
python=$1 work=$2
root=${BEAMLET_SOURCE_DIR:?set BEAMLET_SOURCE_DIR to the repository root}
rm -rf "$work/dist" "$work/site"
mkdir -p "$work"
"$python" -m pip wheel --no-build-isolation --no-deps --disable-pip-version-check -q -w "$work/dist" \
  --config-settings=build-dir="$work/build" --config-settings=cmake.define.BEAMLET_WITH_CUDA=OFF "$root/python"
wheel=$(ls "$work"/dist/beamlet-*.whl)
"$python" -m pip install -q --no-deps --disable-pip-version-check --target "$work/site" "$wheel"
cd "$work"
env -u BEAMLET_LIBRARY PYTHONPATH="$work/site" "$python" - "$wheel" "$work/site" "$root" <<'PY'
import os, sys, zipfile
import numpy as np
wheel, site, root = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
assert "beamlet/libbeamlet.so" in names, f"no beamlet/libbeamlet.so in {wheel}: {names}"
import beamlet
assert beamlet.__file__.startswith(site), beamlet.__file__
assert beamlet.library_path() == os.path.join(site, "beamlet", "libbeamlet.so"), beamlet.library_path()
assert "beamlet/models/fashion-resnet18-w8.safetensors" in names, f"no shipped model in {wheel}"
assert beamlet.shipped_model() == os.path.join(site, "beamlet", "models", "fashion-resnet18-w8.safetensors"), \
    beamlet.shipped_model()
model = beamlet.Model(beamlet.shipped_model())
logits = model.predict(np.zeros((2, 1, 32, 32), np.float32))
assert logits.shape == (2, 10) and np.isfinite(logits).all()
import beamlet.beam  # the Beam half imports from the wheel too
print(f"wheel_test: {os.path.basename(wheel)} ({os.path.getsize(wheel) / 1e6:.2f} MB) installs and runs "
      f"libbeamlet {beamlet.library_version()} (C ABI {beamlet.ABI_VERSION}) from {site}")
PY
