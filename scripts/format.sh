#!/usr/bin/env bash
# Formats beamlet's C, header and CUDA sources with the repository's .clang-format.
#   scripts/format.sh           rewrite the tracked sources in place
#   scripts/format.sh --check   change nothing; list the files that differ and exit 1 (the suite's
#                               ops/format test runs this)
#   scripts/format.sh FILE...   format only these files
# The style is clang-format 14's reading of .clang-format (Debian 12's clang-format, which
# scripts/setup.sh installs); another version may format a few constructs differently.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
files=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "format: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) files+=("$arg") ;;
  esac
done
if ! command -v clang-format >/dev/null; then
  echo "format: clang-format not found (scripts/setup.sh installs it)" >&2
  exit 1
fi
if [[ ${#files[@]} -eq 0 ]]; then
  mapfile -t files < <(git ls-files '*.c' '*.h' '*.cu' '*.cuh')
fi
if [[ $check -eq 0 ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [[ ${#bad[@]} -gt 0 ]]; then
  printf 'format: not formatted (run scripts/format.sh %s):\n' "${bad[*]}" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#files[@]} files formatted"
