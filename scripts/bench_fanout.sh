#!/usr/bin/env bash
# Measures the per-host fan-out (issue 14, docs/fanout.md): several local processes read one
# replicated data set over HTTP for several epochs, once each on its own and once as one
# fan-out group, and the bytes nginx sent are counted from its access log ($body_bytes_sent).
# Builds pipemode-cat and pipemode-gen with the release preset, writes a RecordIO-protobuf data
# set into a temporary directory, serves it with a loopback nginx (scripts/lib/servers.sh),
# and prints a table: bytes served per epoch, seconds, and whether every process's digest
# equals the digest of one direct read. Stops nginx and removes the data at the end.
#
# Usage: scripts/bench_fanout.sh [--size-mib N] [--files K] [--members M] [--epochs E]
#                                [--build-dir DIR]
#   --size-mib N     the data set (default 1024)
#   --files K        its files (default 64)
#   --members M      local consumer processes (default 4)
#   --epochs E       epochs each reads (default 2)
#   --build-dir DIR  use (and update with ninja) this build tree instead of build/release
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

number() {
    [[ $2 =~ ^[0-9]+$ ]] || { echo "bench_fanout.sh: $1 needs a number, not '$2'" >&2; exit 2; }
}

size_mib=1024
files=64
members=4
epochs=2
build_dir=""
while (($#)); do
    case "$1" in
        --size-mib) number "$1" "${2:-}"; size_mib=$2; shift ;;
        --files) number "$1" "${2:-}"; files=$2; shift ;;
        --members) number "$1" "${2:-}"; members=$2; shift ;;
        --epochs) number "$1" "${2:-}"; epochs=$2; shift ;;
        --build-dir) [[ $# -ge 2 ]] || { echo "bench_fanout.sh: --build-dir needs a directory" >&2; exit 2; }
            build_dir=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench_fanout.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
((size_mib > 0 && files > 0 && members > 0 && epochs > 0)) || { echo "bench_fanout.sh: every number must be positive" >&2; exit 2; }

pipemode_install_deps
if [[ -n $build_dir ]]; then
    ninja -C "$build_dir" pipemode-cat pipemode-gen
else
    build_dir=build/release
    cmake --preset release >/dev/null
    cmake --build --preset release --target pipemode-cat pipemode-gen
fi
cat_bin=$build_dir/examples/tools/pipemode-cat
gen=$build_dir/examples/tools/pipemode-gen

work=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-bench-fanout.XXXXXX")
cleanup() {
    pipemode_stop_servers
    rm -rf -- "$work"
}
trap cleanup EXIT

# nginx as the project's scripts start it, plus an access log of the bytes of every answer's
# body: what a store would bill and a link would carry.
eval "$(declare -f pipemode_write_nginx_conf | sed '1s/pipemode_write_nginx_conf/pipemode_write_nginx_conf_plain/')"
pipemode_write_nginx_conf() {
    pipemode_write_nginx_conf_plain "$@"
    sed -i "s|^    access_log off;|    log_format body_bytes '\$body_bytes_sent';\n    access_log $1/access.log body_bytes;|" "$1/nginx.conf"
}

echo "=== bench_fanout.sh: writing $size_mib MiB in $files files under $work/data"
"$gen" --out "$work/data" --size-mib "$size_mib" --files "$files" >/dev/null
data_bytes=$(du -sb "$work/data" | cut -f1)
pipemode_start_nginx "$work"
log=$PIPEMODE_NGINX_DIR/access.log
url="http://127.0.0.1:$PIPEMODE_NGINX_PORT/data/"
common=(--epochs "$epochs" --shuffle-seed 11 --batch-size 1000 "$url")

# %.0f, not %d: mawk's %d stops at 2^31 - 1.
served() { awk '{ s += $1 } END { printf "%.0f", s }' "$log"; }
digest_of() { awk -F': ' '$1 ~ /digest$/ { print $2 }' "$1"; }

# Runs $1 processes of pipemode-cat with the extra options after it, all at once; sets
# run_seconds, run_bytes and run_digests (one line per process).
run_group() {
    local n=$1 start end i status=0
    shift
    : >"$log"
    start=$(date +%s.%N)
    local pids=()
    for ((i = 0; i < n; i++)); do
        "$cat_bin" "$@" "${common[@]}" >"$work/out.$i" 2>"$work/err.$i" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || status=$?
    done
    end=$(date +%s.%N)
    if ((status != 0)); then
        echo "bench_fanout.sh: a pipemode-cat failed; its stderr:" >&2
        cat "$work"/err.* >&2
        exit 1
    fi
    # nginx writes a request's log line when the answer is done; the readers have their bytes.
    sleep 0.5
    run_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    run_bytes=$(served)
    run_digests=$(for ((i = 0; i < n; i++)); do digest_of "$work/out.$i"; done)
}

echo "=== bench_fanout.sh: one direct read, for the reference digest"
run_group 1
reference=$run_digests
direct_bytes=$run_bytes
direct_seconds=$run_seconds

echo "=== bench_fanout.sh: $members processes, each on its own: $cat_bin ${common[*]}"
run_group "$members"
alone_bytes=$run_bytes
alone_seconds=$run_seconds
alone_equal=$( [[ $(sort -u <<<"$run_digests") == "$reference" && $(wc -l <<<"$run_digests") -eq $members ]] && echo yes || echo no)

group=bench-fanout-$$
echo "=== bench_fanout.sh: $members processes in one fan-out group: $cat_bin --fanout-group $group --fanout-members $members ${common[*]}"
run_group "$members" --fanout-group "$group" --fanout-members "$members"
fan_bytes=$run_bytes
fan_seconds=$run_seconds
fan_equal=$( [[ $(sort -u <<<"$run_digests") == "$reference" && $(wc -l <<<"$run_digests") -eq $members ]] && echo yes || echo no)

gib() { awk -v b="$1" -v d="$2" 'BEGIN { printf "%.3f", b / d / 1073741824 }'; }
echo
echo "data set: $(gib "$data_bytes" 1) GiB in $files files; $epochs epochs; digest of a direct read: $reference"
echo
echo "| run | processes | GiB served | GiB served per epoch | seconds | every digest equal to a direct read |"
echo "|---|---:|---:|---:|---:|---|"
echo "| direct read | 1 | $(gib "$direct_bytes" 1) | $(gib "$direct_bytes" "$epochs") | $direct_seconds | yes |"
echo "| each process on its own | $members | $(gib "$alone_bytes" 1) | $(gib "$alone_bytes" "$epochs") | $alone_seconds | $alone_equal |"
echo "| fan-out group | $members | $(gib "$fan_bytes" 1) | $(gib "$fan_bytes" "$epochs") | $fan_seconds | $fan_equal |"
[[ $alone_equal == yes && $fan_equal == yes ]]
