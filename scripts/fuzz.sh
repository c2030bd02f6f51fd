#!/usr/bin/env bash
# The long fuzzing run: configures and builds the fuzz preset (reusing build/fuzz), then runs
# each libFuzzer target for a fixed time on its persistent corpus
# (build/fuzz/tests/fuzz_corpus/<target>, shared with the short run of scripts/test.sh) plus
# its seeds (tests/<dir>/<name>.corpus/), and prints one row per target: seconds, executions,
# executions per second, corpus files and crashes. A crashing input is written to
# build/fuzz/tests/fuzz_artifacts/<target>/; each run's output is in build/fuzz/fuzz_logs/.
# Exits non-zero if any target crashed (or the build failed). See docs/fuzzing.md.
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs N] [TARGET...]
#   --seconds N  how long each target fuzzes (default 600)
#   --jobs N     targets fuzzing at once (default 1; each target uses one core)
#   TARGET       only these targets (fuzz_framing_recordio, or framing/recordio); default all
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

seconds=600
jobs=1
wanted=()
while (($#)); do
    case "$1" in
        --seconds)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --seconds needs a positive number" >&2; exit 2; }
            seconds="$2"; shift ;;
        --seconds=*) seconds="${1#*=}" ;;
        --jobs)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --jobs needs a positive number" >&2; exit 2; }
            jobs="$2"; shift ;;
        --jobs=*) jobs="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "fuzz.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *) name="${1//\//_}"; wanted+=("fuzz_${name#fuzz_}") ;;
    esac
    shift
done
[[ $seconds =~ ^[1-9][0-9]*$ && $jobs =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --seconds and --jobs take positive numbers" >&2; exit 2; }

build=build/fuzz
cmake --preset fuzz >/dev/null

# The targets this build registers (a fuzz test "<dir>/<name>: fuzz" runs fuzz_<dir>_<name>).
mapfile -t all < <(ctest --test-dir "$build" -N -L '^fuzz$' | sed -n 's/^ *Test *#[0-9]*: \(.*\): fuzz$/\1/p' | tr '/' '_' | sed 's/^/fuzz_/')
((${#all[@]})) || { echo "fuzz.sh: the fuzz build registers no fuzz targets" >&2; exit 1; }
targets=()
if ((${#wanted[@]})); then
    for t in "${wanted[@]}"; do
        if [[ " ${all[*]} " == *" $t "* ]]; then
            targets+=("$t")
        else
            echo "fuzz.sh: no fuzz target '$t'; the targets are: ${all[*]}" >&2
            exit 2
        fi
    done
else
    targets=("${all[@]}")
fi

echo "=== pipemode: building ${#targets[@]} fuzz targets"
cmake --build "$build" --target "${targets[@]}"

# The same sanitizer settings as the fuzz tests registered with CTest.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

logs="$build/fuzz_logs"
mkdir -p "$logs"

# tests/<dir>/<name>.corpus/ of target fuzz_<dir>_<name>, found by its source file.
seeds_of() {
    local source
    for source in $(find tests -name '*.fuzz.cpp' | sort); do
        local rel="${source#tests/}" dir name
        dir=$(dirname "$rel"); name=$(basename "$rel" .fuzz.cpp)
        dir="${dir//\//_}"; name=$(printf '%s' "$name" | tr -c 'A-Za-z0-9_' '_')
        if [[ "fuzz_${dir}_${name}" == "$1" && -d "${source%.fuzz.cpp}.corpus" ]]; then
            echo "${source%.fuzz.cpp}.corpus"
            return
        fi
    done
}

count_files() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# Runs one target; writes "seconds rc crashes-before" to its .run file for the table.
run_target() {
    local t="$1" corpus="$build/tests/fuzz_corpus/$1" artifacts="$build/tests/fuzz_artifacts/$1" seeds start rc=0
    mkdir -p "$corpus" "$artifacts"
    seeds=$(seeds_of "$t")
    local before
    before=$(count_files "$artifacts")
    start=$SECONDS
    "$build/tests/$t" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$corpus" ${seeds:+"$seeds"} >"$logs/$t.log" 2>&1 || rc=$?
    echo "$((SECONDS - start)) $rc $before" >"$logs/$t.run"
}

echo "=== pipemode: fuzzing ${#targets[@]} targets for ${seconds}s each, $jobs at a time (logs in $logs)"
running=0
for t in "${targets[@]}"; do
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait || true

stat_of() { sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$logs/$1.log" | tail -1; }

printf '\n%-40s %8s %14s %10s %8s %8s\n' target seconds executions exec/s corpus crashes
failed=0
for t in "${targets[@]}"; do
    read -r took rc before <"$logs/$t.run"
    execs=$(stat_of "$t" number_of_executed_units)
    rate=$(stat_of "$t" average_exec_per_sec)
    corpus=$(count_files "$build/tests/fuzz_corpus/$t")
    crashes=$(($(count_files "$build/tests/fuzz_artifacts/$t") - before))
    # A run that failed without writing an input (a crash in startup, a build that is not a
    # libFuzzer binary) is still a failure.
    if ((rc != 0 && crashes == 0)); then crashes="rc=$rc"; fi
    printf '%-40s %8s %14s %10s %8s %8s\n' "$t" "$took" "${execs:--}" "${rate:--}" "$corpus" "$crashes"
    if [[ $crashes != 0 ]]; then failed=1; fi
done
if ((failed)); then
    echo
    echo "=== pipemode: crashes; reproduce with the target and the input in $build/tests/fuzz_artifacts/<target>/ (docs/fuzzing.md)"
fi
exit "$failed"
