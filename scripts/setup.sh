#!/usr/bin/env bash
# Installs what beamlet needs from the distribution (Debian 12, Ubuntu 24.04). Idempotent: only
# packages that are missing are installed. Runs as root or through sudo. This is the one place
# the package list lives.
#   scripts/setup.sh                       build, test and run dependencies
#   scripts/setup.sh --dev                 also PyTorch, for tools/ (fixture generation, benchmarks)
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
  sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//'
}

# Needed at run time as they are (not as libraries): mpirun for --runner=mpi, the default dataset.
run_tools=(openmpi-bin dataset-fashion-mnist)
packages=(
  build-essential cmake pkg-config   # compiler and build
  zlib1g-dev libpng-dev libjpeg-dev  # gzipped datasets, images
  libdnnl-dev                        # oneDNN: the fast CPU backend
  libopenmpi-dev                     # the mpi runner (with openmpi-bin below)
  "${run_tools[@]}"
  python3                            # tools/ and the docs-command test
  clang-format git                   # the house style check (scripts/format.sh --check)
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

case "${1:-}" in
  "") ;;
  --dev) packages+=(python3-torch python3-torchvision) ;;
  --runtime-list) shift; runtime_list "$@"; exit $? ;;
  --runtime)
    if [[ $# -ne 2 || ! -r "$2" ]]; then echo "setup: --runtime needs a readable FILE" >&2; exit 2; fi
    mapfile -t packages < <(grep -v '^[[:space:]]*\(#\|$\)' "$2")
    ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

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
