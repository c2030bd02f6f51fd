#!/usr/bin/env bash
# Installs what is missing, builds the release preset, then runs the main job: generate about
# --size-mib MiB of dense float32 protobuf RecordIO (8 files, 50 features a record) into a
# temporary directory and stream it back through pipemode, which prints records, bytes, MB/s
# and records/s. The temporary data is removed on exit.
#
# Usage: scripts/demo.sh [--size-mib N] [--jobs N]
#   --size-mib N   how much data to generate (default 256)
#   --jobs N       parallel compile jobs (default: the preset's 2)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

size_mib=256
jobs=""
while (($#)); do
    case "$1" in
        --size-mib)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "demo.sh: --size-mib needs a positive number" >&2; exit 2; }
            size_mib="$2"; shift ;;
        --size-mib=*) size_mib="${1#*=}" ;;
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

build_args=()
[[ -z $jobs ]] || build_args=(--parallel "$jobs")
cmake --preset release
cmake --build --preset release "${build_args[@]}"

tools=build/release/examples/tools
for tool in pipemode-gen pipemode-cat; do
    if [[ ! -x $tools/$tool ]]; then
        echo "demo.sh: $tools/$tool was not built (examples/tools/ not there yet?)" >&2
        exit 1
    fi
done

data=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-demo.XXXXXX")
trap 'rm -rf "$data" "$data.gen" "$data.cat"' EXIT

# A dense record of 50 float32 values and its label take about 248 bytes of RecordIO (header,
# protobuf framing, 200 bytes of values; pipemode-gen wrote 302,599,928 bytes for 1,220,161
# records).
files=8
rows=$(( size_mib * 1024 * 1024 / 248 ))

echo "=== pipemode demo: generating $rows records (~$size_mib MiB) in $files files under $data"
"$tools/pipemode-gen" --out "$data" --rows "$rows" --dim 50 --files "$files" --format dense | tee "$data.gen"
du -sh "$data" | awk '{print "=== pipemode demo: generated " $1}'

echo "=== pipemode demo: reading it back with pipemode-cat"
"$tools/pipemode-cat" "$data"/* | tee "$data.cat"

# Both tools print a digest of every record's content: equal digests mean pipemode read back
# exactly what was written.
written=$(grep -m1 'digest:' "$data.gen" || true)
read_back=$(grep -m1 'digest:' "$data.cat" || true)
if [[ -n $written && $written == "$read_back" ]]; then
    echo "=== pipemode demo: ok, the records read back match the records written"
elif [[ -n $written && -n $read_back ]]; then
    echo "=== pipemode demo: MISMATCH: written [$written], read [$read_back]" >&2
    exit 1
fi
