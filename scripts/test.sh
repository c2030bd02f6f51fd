#!/usr/bin/env bash
# Installs what is missing, then configures, builds and tests pipemode under each preset
# (asan, tsan, fuzz by default; fuzz runs each libFuzzer target for 10 seconds, see
# docs/fuzzing.md, and the header check with clang), reusing the build trees under build/. The
# asan preset is every test, the examples and the layering and consumer checks with warnings as
# errors, so the dev preset would build and run the same tests again without the sanitizers;
# --quick runs dev alone, for a fast first answer. Runs every preset even after one
# fails, prints one summary line per preset, and exits non-zero if any failed.
#
# Usage: scripts/test.sh [--quick] [--preset NAME]... [--long] [--jobs N]
#   --quick        the dev preset only (no sanitizers: the quickest full answer)
#   --preset NAME  this preset (repeatable; instead of the default list)
#   --long         also the long soak runs and longer fuzz replays (exports PIPEMODE_LONG_TESTS=1;
#                  the long libFuzzer run is scripts/fuzz.sh)
#   --jobs N       parallel compile jobs and tests (default: the presets' 2)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

presets=()
quick=0
jobs=""
while (($#)); do
    case "$1" in
        --quick) quick=1 ;;
        --preset)
            [[ $# -ge 2 ]] || { echo "test.sh: --preset needs a name" >&2; exit 2; }
            presets+=("$2"); shift ;;
        --preset=*) presets+=("${1#*=}") ;;
        --long) export PIPEMODE_LONG_TESTS=1 ;;
        --jobs)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "test.sh: --jobs needs a positive number" >&2; exit 2; }
            jobs="$2"; shift ;;
        --jobs=*) jobs="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "test.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ((${#presets[@]} == 0)); then
    if ((quick)); then presets=(dev); else presets=(asan tsan fuzz); fi
fi

pipemode_install_deps

build_args=()
test_args=()
if [[ -n $jobs ]]; then
    build_args=(--parallel "$jobs")
    test_args=(--parallel "$jobs")
fi

# scikit-learn for the examples' reference tests, unpacked into build/PRESET (a failed download
# only skips those tests), when PRESET builds the examples: tsan and fuzz don't, and unpacked its
# 91 MB for nothing. Read from the configured cache, so a preset that changes its mind is followed.
fetch_python_reference() {
    if grep -qx 'PIPEMODE_BUILD_EXAMPLES:BOOL=ON' "build/$1/CMakeCache.txt"; then
        pipemode_fetch_python_reference "build/$1/python-reference" || true
    fi
}

summary=()
failed=0
for preset in "${presets[@]}"; do
    echo "=== pipemode: preset $preset"
    start=$SECONDS
    step=""
    if ! { step=configure && cmake --preset "$preset" && fetch_python_reference "$preset"; } ||
       ! { step=build && cmake --build --preset "$preset" "${build_args[@]}"; } ||
       ! { step=test && ctest --preset "$preset" "${test_args[@]}"; }; then
        summary+=("$(printf '%-8s FAILED at %s (%ds)' "$preset" "$step" $((SECONDS - start)))")
        failed=1
    else
        summary+=("$(printf '%-8s ok (%ds)' "$preset" $((SECONDS - start)))")
    fi
done

echo
echo "=== pipemode: summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
