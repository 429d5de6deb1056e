#!/usr/bin/env bash
# Installs what beamlet needs from the distribution (Debian 12, Ubuntu 24.04). Idempotent: only
# packages that are missing are installed. Runs as root or through sudo. This is the one place
# the package list lives.
#   scripts/setup.sh           build, test and run dependencies
#   scripts/setup.sh --dev     also PyTorch, for tools/ (fixture generation, benchmarks)
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # compiler and build
  zlib1g-dev libpng-dev libjpeg-dev  # gzipped datasets, images
  libdnnl-dev                        # oneDNN: the fast CPU backend
  openmpi-bin libopenmpi-dev         # the mpi runner
  dataset-fashion-mnist              # the default dataset
  python3                            # tools/ and the docs-command test
)
if [[ "${1:-}" == "--dev" ]]; then
  packages+=(python3-torch python3-torchvision)
elif [[ -n "${1:-}" ]]; then
  echo "usage: scripts/setup.sh [--dev]" >&2
  exit 2
fi

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
