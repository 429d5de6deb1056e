#!/usr/bin/env bash
# oneDNN versions on ResNet-18's convolutions: Debian's libdnnl (2.6, what beamlet links)
# against PyPI's onednn-cpu-gomp (3.2, GNU OpenMP like Debian's, no further dependencies).
# Builds conv_versions.c once per library against that library's own headers (the wheel is
# installed with pip into build/onednn-<version>/, never copied into the tree), runs both in
# alternating rounds, keeps each case's best round and prints, per case, the fastest
# implementation of each library and their ratio. Saves bench/results/onednn-versions-<date>.json.
#   bench/onednn/compare_versions.sh [--rounds=N] [--threads=N] [--min-seconds=S] [--only=SUBSTRING] [--out=FILE]
# Needs the project's .venv (scripts/setup.sh) for pip. PyPI's onednn 2026.1.0 (3.13) is not
# a contender: its CPU engine runs on SYCL and needs an OpenCL CPU device through a Unified
# Runtime OpenCL adapter that no PyPI wheel ships (bench/README.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=2 threads=2 min_seconds=0.3 only="" out=""
for arg in "$@"; do
  case "$arg" in
    --rounds=*) rounds=${arg#*=} ;;
    --threads=*) threads=${arg#*=} ;;
    --min-seconds=*) min_seconds=${arg#*=} ;;
    --only=*) only=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare_versions: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

version=$(sed -n 's/^PYPI_ONEDNN_CPU_GOMP=//p' "$root/versions.env")
devel=$(sed -n 's/^PYPI_ONEDNN_DEVEL_CPU_GOMP=//p' "$root/versions.env")
if [[ -z "$version" || -z "$devel" ]]; then
  echo "compare_versions: versions.env lacks PYPI_ONEDNN_CPU_GOMP or PYPI_ONEDNN_DEVEL_CPU_GOMP" >&2; exit 1
fi
if [[ ! -x "$root/.venv/bin/python" ]]; then
  echo "compare_versions: no $root/.venv; run scripts/setup.sh first" >&2; exit 1
fi
prefix="$root/build/onednn-$version"
if [[ ! -f "$prefix/include/oneapi/dnnl/dnnl.h" ]]; then
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --prefix "$prefix" \
    "onednn-cpu-gomp==$version" "onednn-devel-cpu-gomp==$devel"
fi
bin="$root/build/onednn-conv"
mkdir -p "$bin"
src="$root/bench/onednn/conv_versions.c"
cc -O2 -std=c11 -Wall -Wextra -fopenmp "$src" -o "$bin/debian" -ldnnl
cc -O2 -std=c11 -Wall -Wextra -fopenmp -I"$prefix/include" "$src" -o "$bin/pypi" \
  -L"$prefix/lib" -ldnnl -Wl,-rpath,"$prefix/lib"

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
uptime_start=$(uptime)
for ((r = 1; r <= rounds; r++)); do
  order=(debian pypi)
  (( r % 2 == 0 )) && order=(pypi debian)
  for lib in "${order[@]}"; do
    echo "round $r: $lib ($(uptime | sed 's/.*load/load/'))" >&2
    # No OMP_PROC_BIND: with it, oneDNN 3.2's dnnl_primitive_desc_next_impl calls a null
    # pointer after the brg_fwd backward-data implementation (seen 2026-12-06).
    OMP_NUM_THREADS=$threads taskset -c "0-$((threads - 1))" "$bin/$lib" --threads="$threads" --min-seconds="$min_seconds" \
      ${only:+--only="$only"} | sed "s/^{/{\"round\":$r,/" >> "$raw"
  done
done
out=${out:-$root/bench/results/onednn-versions-$(date -u +%F).json}
python3 - "$raw" "$out" "$uptime_start" "$(uptime)" "$threads" "$rounds" <<'EOF'
import json, sys
raw, out, up0, up1, threads, rounds = sys.argv[1:]
rows = [json.loads(l) for l in open(raw) if l.startswith("{")]
libs = sorted({r["onednn"] for r in rows})
best = {}  # (case, lib) -> fastest implementation's best ms over rounds
offered = {}
for r in rows:
    if "case" not in r:
        continue
    key = (r["case"], r["onednn"])
    offered.setdefault(key, False)
    if r.get("offered") is False:
        continue
    offered[key] = True
    if key not in best or r["ms"] < best[key]["ms"]:
        best[key] = r
cases = sorted({c for c, _ in offered}, key=lambda c: [r["case"] for r in rows if "case" in r].index(c))
table = []
print(f"oneDNN convolutions, NHWC (Winograd: nChw16c), {threads} threads, best of {rounds} rounds, ms")
print(f"{'case':58s} " + " ".join(f"{l:>24s}" for l in libs) + "   ratio")
for c in cases:
    cells, ms = [], []
    for l in libs:
        b = best.get((c, l))
        cells.append(f"{b['ms']:8.3f} {b['impl'][:15]:>15s}" if b else f"{'not offered' if (c, l) in offered else '-':>24s}")
        ms.append(b["ms"] if b else None)
    ratio = ms[0] / ms[1] if len(ms) == 2 and all(ms) else None
    print(f"{c:58s} " + " ".join(cells) + (f"   {ratio:5.2f}" if ratio else ""))
    table.append({"case": c, **{l: ({"ms": best[(c, l)]["ms"], "impl": best[(c, l)]["impl"],
                                     "gflops": best[(c, l)]["gflops"]} if (c, l) in best else None) for l in libs},
                  "ratio_first_over_second": ratio})
json.dump({"tool": "bench/onednn/compare_versions.sh", "libraries": libs, "threads": int(threads),
           "rounds": int(rounds), "uptime_start": up0, "uptime_end": up1,
           "note": "ms of the fastest non-reference implementation each library offers, best round; "
                   "ratio = first library's ms / second's (above 1: the second is faster)",
           "cases": table, "runs": rows}, open(out + ".tmp", "w"), indent=1)
import os
os.replace(out + ".tmp", out)
print(f"saved {out}")
EOF
