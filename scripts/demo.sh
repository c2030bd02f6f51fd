#!/usr/bin/env bash
# The main job: Pipe versus File (issue 5, docs/pipe-vs-file.md). Installs what is missing,
# configures the release preset and builds what the comparison runs (pipemode-gen,
# pipemode-pca, pipemode-kmeans, bench_pipe_vs_file), then runs scripts/bench_pipe_vs_file.sh:
# 1 GiB of dense float32 protobuf RecordIO in 64 objects on a loopback nginx, PCA (one pass)
# and K-Means (3 epochs) trained in File mode (download with pipemode, `aws s3 cp` and
# `rclone copy`, then train) and in Stream mode (train from the server), each configuration 3
# times. Prints the table of medians and the ratios against the targets, and writes the CSV,
# the raw log and a PNG chart under build/pipe-vs-file/. About 5 minutes on 2 cores once
# built; the data set is written once and cached under build/pipe-vs-file-data/.
#
# Usage: scripts/demo.sh [--size SIZE] [--files N] [--repeats N] [--quick] [--jobs N]
#   --size SIZE    data set size: MiB, or with a suffix M or G (default 1G)
#   --files N      number of objects (default 64)
#   --repeats N    runs of each configuration, medians reported (default 3)
#   --quick        a smoke run: 64 MiB in 8 objects, once
#   --jobs N       parallel compile jobs (default: the preset's)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

bench_args=()
jobs=""
while (($#)); do
    case "$1" in
        --size|--files|--repeats)
            [[ $# -ge 2 ]] || { echo "demo.sh: $1 needs a value" >&2; exit 2; }
            bench_args+=("$1" "$2"); shift ;;
        --size=*|--files=*|--repeats=*) bench_args+=("${1%%=*}" "${1#*=}") ;;
        --quick) bench_args+=(--quick) ;;
        --jobs)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "demo.sh: --jobs needs a positive number" >&2; exit 2; }
            jobs="$2"; shift ;;
        --jobs=*) jobs="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "demo.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

pipemode_install_deps

# Only the four programs the comparison runs: the whole preset (every benchmark and tool)
# would double the build time on a fresh 2-core machine.
build_args=()
[[ -z $jobs ]] || build_args=(--parallel "$jobs")
cmake --preset release
cmake --build --preset release "${build_args[@]}" \
    --target bench_pipe_vs_file pipemode-gen pipemode-pca pipemode-kmeans

# bench_pipe_vs_file.sh installs rclone and the aws CLI (Debian's awscli) when missing; the
# packages above are already there.
exec scripts/bench_pipe_vs_file.sh --build-dir build/release "${bench_args[@]}"
