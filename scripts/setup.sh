#!/usr/bin/env bash
# Installs what beamlet needs: packages from the distribution (Debian 12, Ubuntu 24.04; as root
# or through sudo) and the project's Python environment .venv/ from PyPI (versions pinned in
# versions.env). Idempotent: only what is missing is installed. This is the one place the
# package lists live.
#   scripts/setup.sh                       build, test and run dependencies, and .venv/
#   scripts/setup.sh --dev                 also PyTorch from Debian for tools/ (fixtures) and libtpu
#   scripts/setup.sh --bench               also today's CPU anchors in .venv/ (bench/compare_cpu.py)
#   scripts/setup.sh --runtime-list BIN... print the packages BIN... need at run time: the
#                                          packages owning their shared libraries (ldd + dpkg),
#                                          plus mpirun and the dataset; run it where BIN... were built
#   scripts/setup.sh --runtime FILE        install only the packages named in FILE (one a line),
#                                          e.g. in a container's runtime stage
# The runtime packages are derived from the binaries rather than listed, so no second list can
# drift from this one, and the names fit the distribution they were built on (Debian's libpng16-16
# is Ubuntu 24.04's libpng16-16t64).
set -euo pipefail

usage() {
  sed -n '5,13p' "$0" | sed 's/^# \{0,1\}//'
}

# Needed at run time as they are (not as libraries): mpirun for --runner=mpi, the default dataset.
run_tools=(openmpi-bin dataset-fashion-mnist)
packages=(
  build-essential cmake pkg-config   # compiler and build
  zlib1g-dev libpng-dev libjpeg-dev  # gzipped datasets, images
  libdnnl-dev                        # oneDNN: the fast CPU backend
  libopenmpi-dev                     # the mpi runner (with openmpi-bin below)
  "${run_tools[@]}"
  python3 python3-venv               # tools/, the docs-command test, .venv/
  clang-format git                   # the house style check (scripts/format.sh --check)
  valgrind                           # memcheck of the oneDNN backend's shape matrix (ctest)
  clang libclang-rt-dev libomp-dev   # make fuzz: clang, its libFuzzer and sanitizer runtimes
                                     # (compiler-rt), and OpenMP for clang
)

# The packages owning the shared libraries that the given programs load, one a line, then the
# run-time tools. A library no package owns is an error, except the CUDA toolkit's (a tarball
# install; the CUDA runtime image brings its own) and the driver's libcuda, which the host
# provides at run time (the NVIDIA container toolkit mounts it).
runtime_list() {
  if [[ $# -eq 0 ]]; then echo "setup: --runtime-list needs the built programs" >&2; exit 2; fi
  local libs lib real owner status=0
  libs=$(ldd "$@" 2>/dev/null | awk '$2 == "=>" {print $1, $3}' | sort -u)
  {
    while read -r name lib; do
      if [[ "$lib" == "not" ]]; then
        [[ "$name" == libcuda.so* ]] && continue
        echo "setup: $name: not found (ldd)" >&2; status=1; continue
      fi
      real=$(readlink -f "$lib")
      # usrmerge: dpkg may have registered the file under /lib or under /usr/lib.
      owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null ||
              dpkg -S "${real#/usr}" 2>/dev/null || true)
      if [[ -z "$owner" ]]; then
        [[ "$real" == /usr/local/cuda* ]] && continue
        echo "setup: no package owns $lib ($name)" >&2; status=1; continue
      fi
      echo "${owner%%:*}"
    done <<< "$libs"
    printf '%s\n' "${run_tools[@]}"
  } | sort -u
  return $status
}

# The project's Python environment, .venv/ (PyPI; each version is versions.env's
# PYPI_<NAME>, the name upper-cased with '-' as '_'):
venv_packages=(numpy apache-beam pytest  # the Python package (python/) and its tests
               scikit-build-core         # its wheel's build backend (`pip install ./python`, python/wheel)
               xla-cpu-pjrt)             # a PJRT CPU plugin: the xla backend's tests
venv_nodeps=(lammps-jax-pjrt-cpu)        # the second PJRT CPU plugin (it pins an old jax: no deps)
venv_dev=()
venv_bench=()

# Flags combine (`--dev --bench`); --runtime-list and --runtime stand alone.
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dev) packages+=(python3-torch python3-torchvision); venv_dev+=(libtpu) ;;
    --bench) venv_bench+=(torch torchvision onnx onnxruntime openvino) ;;
    --runtime-list) shift; runtime_list "$@"; exit $? ;;
    --runtime)
      if [[ $# -ne 2 || ! -r "$2" ]]; then echo "setup: --runtime needs a readable FILE" >&2; exit 2; fi
      mapfile -t packages < <(grep -v '^[[:space:]]*\(#\|$\)' "$2")
      shift
      ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} distribution packages present"
else
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then sudo=(sudo); else
      echo "setup: need root or sudo to install: ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "setup: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[[ "${1:-}" == --runtime ]] && exit 0

# ---- .venv/ ----------------------------------------------------------------------------------
root=$(cd "$(dirname "$0")/.." && pwd)
pin() { # NAME -> NAME==VERSION from versions.env
  local key="PYPI_$(echo "$1" | tr 'a-z-' 'A-Z_')" version
  version=$(sed -n "s/^$key=//p" "$root/versions.env")
  if [[ -z "$version" ]]; then echo "setup: versions.env has no $key (the pin of $1)" >&2; exit 1; fi
  echo "$1==$version"
}
venv="$root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating $venv"
  /usr/bin/python3 -m venv "$venv"
fi
pip_install() { # [--no-deps] NAME... : installs the pinned versions that are not there yet
  local flags=() wanted=() p have
  if [[ "${1:-}" == --no-deps ]]; then flags+=(--no-deps); shift; fi
  for p in "$@"; do
    p=$(pin "$p")
    have=$("$venv/bin/python" -m pip show "${p%%==*}" 2>/dev/null || true)
    [[ "$have" == *$'\n'"Version: ${p#*==}"$'\n'* ]] || wanted+=("$p")
  done
  [[ ${#wanted[@]} -eq 0 ]] && return 0
  echo "setup: pip installing ${wanted[*]}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${flags[@]}" "${wanted[@]}"
}
pip_install "${venv_packages[@]}" "${venv_dev[@]}" "${venv_bench[@]}"
pip_install --no-deps "${venv_nodeps[@]}"
echo "setup: $venv ready"
