#!/usr/bin/env bash
# Runs every libFuzzer target in tests/fuzz for a bounded time (CI: `make fuzz`, after `make
# test`):
#   scripts/fuzz.sh [SECONDS]   SECONDS per target (default: $FUZZ_SECONDS, else 60)
# 1. Seeds: the parser tests of the plain build ($BUILD, default build, which `make test` made)
#    run with BEAMLET_FUZZ_SEEDS set and keep the inputs they build, valid and malformed
#    (bl_test_fuzz_seed), in $FUZZ_BUILD/seeds/<target>/.
# 2. Builds the targets with clang, ASan and UBSan in $FUZZ_BUILD (default build-fuzz;
#    cmake/fuzz.cmake), and each with the clang line its header gives for building by hand.
#    libFuzzer's runtime is clang's compiler-rt (scripts/setup.sh).
# 3. Runs them, as many at a time as there are cores, each from its corpus
#    ($FUZZ_BUILD/corpus/<target>, kept between runs) and the seeds. A crash, a sanitizer report,
#    a leak or an input slower than 30 s fails the script, which prints the fuzzer's report and
#    keeps the input in $FUZZ_BUILD/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|*[!0-9]*) [[ -z "${1:-}" ]] || { usage >&2; exit 2; } ;;
esac
seconds=${1:-${FUZZ_SECONDS:-60}}
plain=${BUILD:-build}
fb=${FUZZ_BUILD:-build-fuzz}
jobs=$(nproc 2>/dev/null || echo 2)

# 1. Seeds from the tests that build parser inputs.
rm -rf "$fb/seeds"
mkdir -p "$fb/seeds" "$fb/corpus" "$fb/artifacts" "$fb/logs"
for t in test_json test_safetensors test_images test_datasets test_pipeline_api; do
  if [[ ! -x "$plain/$t" ]]; then
    echo "fuzz: $plain/$t is not built (run make test first, or set BUILD)" >&2
    exit 1
  fi
  BEAMLET_FUZZ_SEEDS=$(pwd)/$fb/seeds "$plain/$t" > "$fb/logs/seed-$t.log" 2>&1 ||
    { cat "$fb/logs/seed-$t.log"; echo "fuzz: $t failed while writing seeds" >&2; exit 1; }
done

# 2. The targets.
cmake -S . -B "$fb" -DCMAKE_C_COMPILER=clang -DBEAMLET_FUZZ=ON -DBEAMLET_WITH_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_FLAGS:-} > "$fb/logs/configure.log" ||
  { cat "$fb/logs/configure.log"; exit 1; }
cmake --build "$fb" --target fuzz -j "$jobs"

# The clang line each fuzz file's header gives for building it by hand still builds (it needs
# a configured build's layer trees: the header's build/layers/... is this build's).
for src in tests/fuzz/fuzz_*.c; do
  t=$(basename "$src" .c)
  line=$(sed -n '/^ \*   clang /,/-o \/tmp\//p' "$src" | sed 's/^ \*   *//; s/\\$//' | tr '\n' ' ')
  if [[ -z "$line" ]]; then echo "fuzz: $src has no clang line in its header" >&2; exit 1; fi
  line=${line//build\/layers/$fb\/layers}
  line=$(echo "$line" | sed "s#-o /tmp/[^ ]*#-o $fb/byhand-$t#")
  bash -c "$line" > "$fb/logs/byhand-$t.log" 2>&1 ||
    { cat "$fb/logs/byhand-$t.log"; echo "fuzz: the command in $src's header fails: $line" >&2; exit 1; }
done
echo "fuzz: the clang lines in the fuzz files' headers build"

# 3. Bounded runs, `jobs` at a time.
run_one() { # TARGET
  local t=$1 dict=()
  [[ $t == fuzz_json || $t == fuzz_safetensors ]] && dict=(-dict=tests/fuzz/safetensors.dict)
  mkdir -p "$fb/corpus/$t" "$fb/seeds/$t"
  "$fb/fuzz/$t" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$fb/artifacts/$t-" "${dict[@]}" "$fb/corpus/$t" "$fb/seeds/$t" > "$fb/logs/$t.log" 2>&1
}
targets=()
for exe in "$fb"/fuzz/fuzz_*; do targets+=("$(basename "$exe")"); done
failed=()
declare -A pid_of=()
i=0
while [[ $i -lt ${#targets[@]} || ${#pid_of[@]} -gt 0 ]]; do
  while [[ $i -lt ${#targets[@]} && ${#pid_of[@]} -lt $jobs ]]; do
    run_one "${targets[$i]}" &
    pid_of[$!]=${targets[$i]}
    i=$((i + 1))
  done
  # Reap whichever finished first.
  wait -n -p done_pid && status=0 || status=$?
  t=${pid_of[$done_pid]}
  unset "pid_of[$done_pid]"
  runs=$(grep -o 'Done [0-9]* runs' "$fb/logs/$t.log" | tail -1 || true)
  if [[ $status -eq 0 ]]; then
    echo "fuzz: $t ok (${runs:-no stats}, $(ls "$fb/corpus/$t" | wc -l) inputs in its corpus)"
  else
    echo "fuzz: $t FAILED (exit $status); its report:"
    grep -v '^#[0-9]' "$fb/logs/$t.log" | tail -60
    failed+=("$t")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; inputs in $fb/artifacts/ (replay: $fb/fuzz/TARGET INPUT)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no finding"
