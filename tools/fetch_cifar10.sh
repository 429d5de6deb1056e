#!/usr/bin/env bash
# Fetches CIFAR-10 in its binary format for beamlet (bl_cifar10_load), verifies the archive's
# published MD5 and unpacks it atomically: the destination either appears complete or not at
# all, so an interrupted download never leaves a half dataset that a later run would trust.
set -euo pipefail

URL="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5="c32a1d4ab5d03f1284b67883e8d87530"
FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin
       test_batch.bin)
FILE_BYTES=30730000 # 10,000 records of 1 + 3,072 bytes

usage() {
    cat <<USAGE
usage: tools/fetch_cifar10.sh [--archive FILE] [--force] [DEST]

Downloads cifar-10-binary.tar.gz (about 163 MB) from
  $URL
checks its MD5 ($MD5), and unpacks data_batch_1..5.bin and test_batch.bin into DEST
(default: \$BEAMLET_CIFAR10, else ~/.cache/beamlet/cifar-10-batches-bin, where
bl_cifar10_load looks when given no folder).

  --archive FILE  use an already downloaded cifar-10-binary.tar.gz instead of downloading
                  (for machines without internet: copy the archive over, then run this)
  --force         replace DEST even when it already holds a complete dataset
  -h, --help      this text

Needs curl or wget (unless --archive), md5sum, tar and gzip. Exits non-zero, leaving DEST
untouched, on any failure.
USAGE
}

die() {
    echo "fetch_cifar10: $*" >&2
    exit 1
}

archive=""
force=0
dest=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --archive) [[ $# -ge 2 ]] || die "--archive needs a file"; archive="$2"; shift 2 ;;
        --archive=*) archive="${1#--archive=}"; shift ;;
        --force) force=1; shift ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z "$dest" ]] || die "one destination only (see --help)"; dest="$1"; shift ;;
    esac
done
if [[ -z "$dest" ]]; then
    if [[ -n "${BEAMLET_CIFAR10:-}" ]]; then
        dest="$BEAMLET_CIFAR10"
    else
        [[ -n "${HOME:-}" ]] || die "HOME is unset; give a destination"
        dest="$HOME/.cache/beamlet/cifar-10-batches-bin"
    fi
fi
dest="${dest%/}"

complete() { # the six batch files, each exactly its size
    local dir="$1" f
    for f in "${FILES[@]}"; do
        [[ -f "$dir/$f" && "$(stat -c %s "$dir/$f")" == "$FILE_BYTES" ]] || return 1
    done
}

if [[ -e "$dest" && $force -eq 0 ]]; then
    if complete "$dest"; then
        echo "fetch_cifar10: $dest already holds CIFAR-10 (use --force to fetch again)"
        exit 0
    fi
    die "$dest exists but is not a complete CIFAR-10 folder; move it away or use --force"
fi

command -v md5sum >/dev/null || die "md5sum not found (coreutils)"
command -v tar >/dev/null || die "tar not found"

parent="$(dirname "$dest")"
mkdir -p "$parent"
# The temp folder sits beside the destination so the final rename stays on one filesystem.
work="$(mktemp -d "$parent/.cifar10-fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [[ -z "$archive" ]]; then
    archive="$work/cifar-10-binary.tar.gz"
    echo "fetch_cifar10: downloading $URL"
    if command -v curl >/dev/null; then
        curl -fL --retry 3 --progress-bar -o "$archive" "$URL" || die "download failed ($URL)"
    elif command -v wget >/dev/null; then
        wget -q --show-progress -O "$archive" "$URL" || die "download failed ($URL)"
    else
        die "neither curl nor wget found; download $URL by hand and pass --archive FILE"
    fi
fi
[[ -f "$archive" ]] || die "$archive: no such file"

got="$(md5sum "$archive" | cut -d' ' -f1)"
[[ "$got" == "$MD5" ]] ||
    die "$archive: MD5 $got, expected $MD5 (corrupt, or not the CIFAR-10 binary archive)"
echo "fetch_cifar10: MD5 ok"

tar -xzf "$archive" -C "$work" || die "$archive: cannot unpack"
unpacked="$work/cifar-10-batches-bin"
complete "$unpacked" ||
    die "$archive: the unpacked folder lacks a batch file, or one has the wrong size"

if [[ -e "$dest" ]]; then # --force: swap, then drop the old copy
    mv "$dest" "$work/old"
fi
mv "$unpacked" "$dest"
echo "fetch_cifar10: CIFAR-10 is in $dest"
