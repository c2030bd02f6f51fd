#!/usr/bin/env bash
# Reads a data set as N separate processes, one per rank, with pipemode-cat's data-set options,
# and checks that the shards are disjoint and together hold every record exactly once: the
# ranks' record counts and order-independent digests (count, sum and xor of record hashes)
# add up to the digest of the whole data set read by one process.
#
# Usage: scripts/shard_check.sh PIPEMODE_CAT WORLD_SIZE MODE [pipemode-cat options and SOURCEs...]
#   MODE is object, bytes or byte-range. Prints one line per rank and a verdict; exits 1 when
#   the shards do not add up to the whole.
# Example:
#   build/release/examples/tools/pipemode-gen --out /tmp/d --rows 20000 --files 5
#   scripts/shard_check.sh build/release/examples/tools/pipemode-cat 7 byte-range --shuffle-seed 42 /tmp/d/
set -euo pipefail

if (($# < 4)); then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
fi
cat_tool=$1
world=$2
mode=$3
shift 3

work=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-shards-XXXXXX")
trap 'rm -rf "$work"' EXIT

"$cat_tool" --epochs 1 "$@" >"$work/whole.txt"
pids=()
for ((r = 0; r < world; r++)); do
    "$cat_tool" --rank "$r" --world-size "$world" --shard-mode "$mode" "$@" >"$work/rank-$r.txt" 2>"$work/rank-$r.err" &
    pids+=($!)
done
status=0
for ((r = 0; r < world; r++)); do
    if ! wait "${pids[$r]}"; then
        echo "rank $r failed: $(cat "$work/rank-$r.err")" >&2
        status=1
    fi
done
((status == 0)) || exit 1

# count=N hash=<16 hex digits of the sum><16 hex digits of the xor>
python3 - "$work" "$world" "$mode" <<'PY'
import re, sys
work, world, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def digest(path):
    text = open(path).read()
    m = re.search(r"digest: count=(\d+) hash=([0-9a-f]{16})([0-9a-f]{16})", text)
    if not m:
        sys.exit(f"no digest in {path}: {text!r}")
    return int(m.group(1)), int(m.group(2), 16), int(m.group(3), 16)
whole = digest(f"{work}/whole.txt")
count, total, xor = 0, 0, 0
for r in range(world):
    c, s, x = digest(f"{work}/rank-{r}.txt")
    print(f"rank {r} of {world} ({mode}): {c} records, digest count={c} hash={s:016x}{x:016x}")
    count += c
    total = (total + s) % 2**64
    xor ^= x
merged = (count, total, xor)
print(f"ranks together: count={count} hash={total:016x}{xor:016x}")
print(f"one process:    count={whole[0]} hash={whole[1]:016x}{whole[2]:016x}")
if merged != whole:
    sys.exit("the shards do NOT add up to the data set")
print("the shards are disjoint and cover every record exactly once")
PY
