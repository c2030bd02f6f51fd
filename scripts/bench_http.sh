#!/usr/bin/env bash
# Runs the HTTP streaming benchmark (benchmarks/http.cpp) from scratch: installs what is
# missing (the build's packages, plus curl and rclone), builds bench_http and pipemode-gen with
# the release preset, writes two protobuf RecordIO data sets into a temporary directory (the
# main set, and a big one for the time-to-first-batch and peak-RSS figures), serves them with
# a loopback nginx (scripts/lib/servers.sh), runs bench_http, which measures curl, rclone and
# pipemode in the same run and prints the tables, then stops nginx and removes the data.
#
# Usage: scripts/bench_http.sh [--size-mib N] [--files K] [--big-size-mib N] [--repeats N]
#                              [--quick] [--no-sweep] [--build-dir DIR]
#   --size-mib N      the main data set (default 1024)
#   --files K         files of each set (default 64)
#   --big-size-mib N  the big set, for first batch and peak RSS (default 4096; 0: none)
#   --repeats N       repetitions of each measurement, medians reported (default 3)
#   --quick           256 MiB in 16 files, a 1 GiB big set, 1 repetition: under 2 minutes
#   --no-sweep        skip the part size x connections sweep
#   --build-dir DIR   use (and update with ninja) this build tree instead of the release
#                     preset's build/release
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

number() {
    [[ $2 =~ ^[0-9]+$ ]] || { echo "bench_http.sh: $1 needs a number, not '$2'" >&2; exit 2; }
}

size_mib=1024
files=64
big_size_mib=4096
repeats=3
quick=0
sweep=1
build_dir=""
while (($#)); do
    case "$1" in
        --size-mib) number "$1" "${2:-}"; size_mib=$2; shift ;;
        --files) number "$1" "${2:-}"; files=$2; shift ;;
        --big-size-mib) number "$1" "${2:-}"; big_size_mib=$2; shift ;;
        --repeats) number "$1" "${2:-}"; repeats=$2; shift ;;
        --quick) quick=1 ;;
        --no-sweep) sweep=0 ;;
        --build-dir) [[ $# -ge 2 ]] || { echo "bench_http.sh: --build-dir needs a directory" >&2; exit 2; }
            build_dir=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench_http.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ((quick)); then
    size_mib=256
    files=16
    big_size_mib=1024
    repeats=1
fi
((size_mib > 0 && files > 0 && repeats > 0)) || { echo "bench_http.sh: sizes, files and repeats must be positive" >&2; exit 2; }

# The benchmark's own tools, beyond what the build needs: the baseline and the peer.
pipemode_install_deps
bench_deps=(curl rclone)
mapfile -t missing < <(pipemode_missing_packages "${bench_deps[@]}")
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "bench_http.sh: missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "bench_http.sh: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [[ -n $build_dir ]]; then
    ninja -C "$build_dir" bench_http pipemode-gen
else
    build_dir=build/release
    cmake --preset release
    cmake --build --preset release --target bench_http pipemode-gen
fi
bench=$build_dir/benchmarks/bench_http
gen=$build_dir/examples/tools/pipemode-gen

data=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-bench-http.XXXXXX")
cleanup() {
    pipemode_stop_servers
    rm -rf -- "$data"
}
trap cleanup EXIT

echo "=== bench_http.sh: writing $size_mib MiB in $files files (and $big_size_mib MiB) under $data"
"$gen" --out "$data/main" --size-mib "$size_mib" --files "$files" >/dev/null
big_args=()
if ((big_size_mib > 0)); then
    "$gen" --out "$data/big" --size-mib "$big_size_mib" --files "$files" --seed 2 >/dev/null
fi

pipemode_start_nginx "$data"
base="http://127.0.0.1:$PIPEMODE_NGINX_PORT"
if ((big_size_mib > 0)); then
    big_args=(--big-url "$base/big" --big-dir "$data/big")
fi
sweep_args=()
((sweep)) || sweep_args=(--no-sweep)
# nginx's master and its worker, whose CPU time bench_http reports apart (children by parent
# PID: only our own nginx's).
server_pids="$PIPEMODE_NGINX_PID $(pgrep -P "$PIPEMODE_NGINX_PID" | tr '\n' ' ')"

# rclone honours AWS_CA_BUNDLE, which breaks plain-http endpoints.
echo "=== bench_http.sh: $bench --url $base/main --dir $data/main ${big_args[*]} --repeats $repeats ${sweep_args[*]}"
env -u AWS_CA_BUNDLE "$bench" --url "$base/main" --dir "$data/main" "${big_args[@]}" --repeats "$repeats" \
    "${sweep_args[@]}" --server-pids "$server_pids"
