#!/usr/bin/env bash
# End-to-end test of pipemode-gen and pipemode-cat, run by CTest ("tools: end to end").
#
# Usage: tools_test.sh PIPEMODE_GEN PIPEMODE_CAT WORK_DIR SOURCE_DIR
#
# pipemode-gen states the digest of what it wrote from the numbers it encoded; pipemode-cat
# computes it from what the reader decoded. Agreement over several kinds of data (multi-file
# dense, sparse, int32 clusters, float64 without labels, odd batch and read sizes, a FIFO)
# shows every record arrived once and intact. Also checked: exact --raw and --json output,
# a truncated file's exit status and message, --limit, and usage errors. Then the same data
# through servers on loopback (scripts/lib/servers.sh): nginx for http:// URLs and for s3://
# with --path-style and --no-sign-request, and moto_server for a signed prefix listing and a
# manifest, checking that the secret key never reaches the output. Each server's checks are
# skipped, with a line saying so, when it is not installed.
set -euo pipefail
trap 'echo "FAIL: tools_test.sh stopped at line $LINENO" >&2' ERR

gen=$1
cat=$2
work=$3
source_dir=$4

rm -rf "$work"
mkdir -p "$work"
cd "$work"

# Failures are appended to a file, so that checks run in subshells ($(...)) count too.
: >failures.log
fail() {
    echo "FAIL: $*" >&2
    echo "$*" >>"$work/failures.log"
}
pass() { echo "ok: $*"; }

# The value of summary field $1 in the text $2 ("digest: count=..." gives "count=...").
field() { sed -n "s/^ *$1: //p" <<<"$2"; }

# Runs a command that must succeed and prints its stdout; a failure is reported and gives "".
run() {
    local out status
    if out=$("$@" 2>stderr.txt); then status=0; else status=$?; fi
    if ((status != 0)); then
        fail "'$*' exited with $status ($(cat stderr.txt))"
        return 0
    fi
    printf '%s\n' "$out"
}

# Generates a data set with the given pipemode-gen options into directory $1, reads it back
# with pipemode-cat (extra cat options in CAT_ARGS) and compares the digests.
check_round_trip() {
    local name=$1 dir=$2
    shift 2
    local g c
    g=$(run "$gen" --out "$dir" "$@")
    c=$(run "$cat" ${CAT_ARGS:-} "$dir"/part-*.rec)
    local gd cd
    gd=$(field digest "$g")
    cd=$(field digest "$c")
    if [[ -z $gd || $gd != "$cd" ]]; then
        fail "$name: pipemode-gen digest '$gd' != pipemode-cat digest '$cd'"
    elif [[ $(field records "$c") != "$(field rows "$g")" ]]; then
        fail "$name: pipemode-cat read $(field records "$c") records, pipemode-gen wrote $(field rows "$g")"
    elif [[ $(field bytes "$c") != "$(field bytes "$g")" ]]; then
        fail "$name: pipemode-cat read $(field bytes "$c") bytes, pipemode-gen wrote $(field bytes "$g")"
    else
        pass "$name: $gd"
    fi
}

# ---------------------------------------------------------------------------------------------
# Digests: what pipemode-gen says it wrote is what pipemode-cat reads.

check_round_trip "dense float32, 3 files" dense --rows 2503 --files 3 --dim 17 --seed 3
check_round_trip "sparse float32, 2 files" sparse --rows 1500 --files 2 --dim 300 --format sparse --density 0.05 --seed 4
check_round_trip "int32 clusters" clusters --rows 1000 --files 2 --dim 9 --dtype int32 --clusters 4 --seed 5
check_round_trip "sparse float64, no label" sparse64 --rows 700 --files 3 --dim 40 --format sparse --density 0.5 --dtype float64 --no-label
check_round_trip "more files than rows" tiny --rows 3 --files 5 --dim 2
CAT_ARGS="--batch-size 1 --read-size 1000" \
    check_round_trip "batches of 1, reads of 1000 bytes" oddsizes --rows 300 --files 2 --dim 100 --seed 6
CAT_ARGS="--batch-size 7 --read-size 64" \
    check_round_trip "sparse with reads of 64 bytes" sparse_small_reads --rows 400 --dim 1000 --format sparse --density 0.01

# The check can fail: a file left out, or another seed, gives another digest.
all=$(field digest "$(run "$cat" dense/part-*.rec)")
two=$(field digest "$(run "$cat" dense/part-00000.rec dense/part-00002.rec)")
reseeded=$(field digest "$(run "$gen" --out reseeded --rows 2503 --files 3 --dim 17 --seed 99)")
if [[ $all == "$two" || $all == "$reseeded" || -z $all ]]; then
    fail "digests do not tell data sets apart: '$all' '$two' '$reseeded'"
else
    pass "a missing file and another seed change the digest"
fi

# The same seed gives the same bytes.
run "$gen" --out again --rows 2503 --files 3 --dim 17 --seed 3 >/dev/null
if cmp -s dense/part-00001.rec again/part-00001.rec; then
    pass "same seed, same files"
else
    fail "the same seed gave different files"
fi

# --size-mib: dense float32 rows have one size, so the files hold 1 MiB plus less than a row.
sized=$(run "$gen" --out sized --size-mib 1 --dim 50 --files 2)
sized_bytes=$(field bytes "$sized")
if ((sized_bytes >= 1048576 && sized_bytes < 1048576 + 300)); then
    pass "--size-mib 1 wrote $sized_bytes bytes"
else
    fail "--size-mib 1 wrote '$sized_bytes' bytes"
fi

# ---------------------------------------------------------------------------------------------
# Exact output

# A fixed seed's records, as JSON: pins the generator (same numbers with any standard library)
# and the JSON path end to end.
run "$gen" --out pinned --rows 3 --dim 4 --seed 42 >/dev/null
run "$cat" --json pinned/part-00000.rec >pinned.json
cat >pinned.expected <<'EOF'
{"features": {"values": {"tensor": "float32", "values": [0.51031107, 0.2780628, 0.5042904, -0.72745466], "keys": [], "shape": []}}, "label": {"values": {"tensor": "float32", "values": [1], "keys": [], "shape": []}}}
{"features": {"values": {"tensor": "float32", "values": [0.8065379, -0.81186336, 0.14914061, -0.2542246], "keys": [], "shape": []}}, "label": {"values": {"tensor": "float32", "values": [0], "keys": [], "shape": []}}}
{"features": {"values": {"tensor": "float32", "values": [-0.4522518, -0.21945824, -0.97523445, 0.047411177], "keys": [], "shape": []}}, "label": {"values": {"tensor": "float32", "values": [0], "keys": [], "shape": []}}}
EOF
if diff pinned.expected pinned.json >/dev/null; then
    pass "--json of seed 42"
else
    fail "--json of seed 42 differs: $(diff pinned.expected pinned.json)"
fi

# Raw RecordIO written byte by byte: "hello" (padded to 8 bytes), an empty payload, and a
# 4-byte payload that needs no padding.
printf '\x0a\x23\xd7\xce\x05\x00\x00\x00hello\x00\x00\x00' >known.rec
printf '\x0a\x23\xd7\xce\x00\x00\x00\x00' >>known.rec
printf '\x0a\x23\xd7\xce\x04\x00\x00\x00\x00\x01\xfe\xff' >>known.rec
run "$cat" --raw known.rec >known.json
printf '%s\n' '{"length": 5, "hex": "68656c6c6f"}' '{"length": 0, "hex": ""}' '{"length": 4, "hex": "0001feff"}' >known.expected
if diff known.expected known.json >/dev/null; then
    pass "--raw of a hand-made file"
else
    fail "--raw output differs: $(diff known.expected known.json)"
fi

# --raw reads any RecordIO: as many payloads as pipemode-gen wrote records.
raw_lines=$(run "$cat" --raw dense/part-00001.rec | wc -l)
if [[ $raw_lines == 834 ]]; then pass "--raw of a generated file"; else fail "--raw gave $raw_lines lines, not 834"; fi

# ---------------------------------------------------------------------------------------------
# Errors and --limit

# A file cut inside a record: exit status 1 and a message naming path, byte, record.
head -c 200 dense/part-00000.rec >truncated.rec
# (Failing commands run as if-conditions, which neither stop the script nor trip the ERR trap.)
if "$cat" truncated.rec >truncated.out 2>truncated.err; then status=0; else status=$?; fi
message=$(cat truncated.err)
if [[ $status == 1 && $message == *truncated.rec* && $message == *byte* && $message == *record* && $message == pipemode-cat:* ]]; then
    pass "a truncated file: exit 1, '$message'"
else
    fail "a truncated file: exit $status, message '$message'"
fi

# ... which --bad-records skip turns into a counted skip.
skipped=$(run "$cat" --bad-records skip truncated.rec)
if [[ $(field "bad records" "$skipped") == 1 ]]; then pass "--bad-records skip"; else fail "--bad-records skip: $skipped"; fi

limited=$(run "$cat" --limit 7 dense/part-*.rec)
limited_json=$(run "$cat" --json --limit 7 --batch-size 3 dense/part-*.rec | wc -l)
run "$cat" --json dense/part-*.rec >dense.json
first7=$(head -n 7 dense.json | cksum)
limited7=$(run "$cat" --json --limit 7 dense/part-*.rec | cksum)
if [[ $(field records "$limited") == 7 && $(field digest "$limited") == count=7\ * && $limited_json == 7 && $first7 == "$limited7" ]]; then
    pass "--limit 7"
else
    fail "--limit 7: records '$(field records "$limited")', $limited_json JSON lines, first 7 equal: $([[ $first7 == "$limited7" ]] && echo yes || echo no)"
fi
zero=$(run "$cat" --limit 0 dense/part-*.rec)
if [[ $(field records "$zero") == 0 ]]; then pass "--limit 0"; else fail "--limit 0: $zero"; fi

expect_status() {
    local want=$1
    shift
    local got
    if "$@" >/dev/null 2>&1; then got=0; else got=$?; fi
    if [[ $got == "$want" ]]; then pass "exit $want: ${*##*/}"; else fail "'$*' exited with $got, not $want"; fi
}
expect_status 2 "$cat"
expect_status 2 "$cat" --no-such-option dense/part-00000.rec
expect_status 2 "$cat" --batch-size 0 dense/part-00000.rec
expect_status 2 "$cat" --json --raw dense/part-00000.rec
expect_status 2 "$cat" --bad-records maybe dense/part-00000.rec
expect_status 2 "$cat" ftp://host/part-00000.rec
expect_status 2 "$cat" --manifest dense/part-00000.rec
expect_status 2 "$cat" --connections 0 s3://bucket/key
expect_status 2 "$cat" --part-size 0 s3://bucket/key
expect_status 2 "$cat" --endpoint-url not-a-url s3://bucket/key
expect_status 1 "$cat" no/such/file.rec
expect_status 0 "$cat" --help
expect_status 2 "$gen" --rows 5
expect_status 2 "$gen" --out x --rows 5 --size-mib 1
expect_status 2 "$gen" --out x --format ragged
expect_status 0 "$gen" --help

# ---------------------------------------------------------------------------------------------
# Every format the library reads: --content-type, the guess from extensions, gzip recognised
# by its magic bytes or named by --compression, and --json and --limit for each format.

# Checks that a command succeeds and prints exactly the lines of file $2 (name in $1).
expect_output() {
    local name=$1 expected=$2
    shift 2
    run "$@" >got.txt
    if diff "$expected" got.txt >diff.txt; then
        pass "$name"
    else
        fail "$name: output differs from $expected: $(cat diff.txt)"
    fi
}

# The stderr of a command, whatever its exit status (grep -q on a pipe could stop the command
# early, and pipefail would then count its SIGPIPE).
stderr_of() { "$@" 2>&1 >/dev/null || true; }

# Runs a command that must fail with exit status $1 and a message on stderr containing $2.
expect_failure() {
    local want=$1 text=$2
    shift 2
    local status
    if "$@" >failure.out 2>failure.err; then status=0; else status=$?; fi
    if [[ $status == "$want" && $(cat failure.err) == pipemode-cat:*"$text"* ]]; then
        pass "exit $want with '$text': $(head -n 1 failure.err)"
    else
        fail "'$*': exit $status (want $want), stderr '$(cat failure.err)' lacks '$text'"
    fi
}

with_http_formats=yes
if [[ $(stderr_of "$cat" --endpoint-url not-a-url s3://bucket/key) == *"built without pipemode::http"* ]]; then
    with_http_formats=no  # augmented manifests are read through pipemode::sagemaker, which needs curl
fi

mkdir -p formats
cd formats

# The issue's case: a gzip-compressed RecordIO-protobuf file, read as a new user would.
run "$gen" --out gz --rows 500 --files 2 --dim 5 --seed 7 >/dev/null
gzip -c gz/part-00000.rec >part-0.rec.gz
gzip -c gz/part-00001.rec >part-1.rec.gz
plain=$(run "$cat" gz/part-00000.rec gz/part-00001.rec)
for args in "part-0.rec.gz part-1.rec.gz" "--compression Gzip part-0.rec.gz part-1.rec.gz" \
    "--compression gzip --read-size 7 part-0.rec.gz part-1.rec.gz" "--read-size 1 part-0.rec.gz part-1.rec.gz" \
    "gz/part-00000.rec part-1.rec.gz" "--world-size 1 --shuffle-seed 0 part-0.rec.gz part-1.rec.gz"; do
    # shellcheck disable=SC2086
    got=$(run "$cat" $args)
    if [[ -n $(field digest "$plain") && $(field digest "$got") == "$(field digest "$plain")" && $(field records "$got") == 500 ]]; then
        pass "gzip: '$args' reads the records of the uncompressed files"
    else
        fail "gzip: '$args' gave digest '$(field digest "$got")', records '$(field records "$got")'; uncompressed: '$(field digest "$plain")'"
    fi
done
run "$cat" --json gz/part-00000.rec >plain.json
expect_output "--json of part-0.rec.gz is that of the uncompressed file" plain.json "$cat" --json part-0.rec.gz
if [[ $(stderr_of "$cat" --verbose --limit 1 part-0.rec.gz) == *"'part-0.rec.gz' is gzip-compressed (it starts with 1f 8b)"* ]]; then
    pass "--verbose names the object found gzip-compressed"
else
    fail "--verbose does not say part-0.rec.gz is gzip: $("$cat" --verbose --limit 1 part-0.rec.gz 2>&1 >/dev/null)"
fi
# Told the wrong thing, the tool says what went wrong rather than guessing.
expect_failure 2 "--compression is None or Gzip (SageMaker's CompressionType), not 'zip'" "$cat" --compression zip part-0.rec.gz
expect_failure 1 "part-0.rec.gz" "$cat" --compression None part-0.rec.gz
grep -q "bad RecordIO magic number" failure.err && grep -q "'part-0.rec.gz' starts with gzip's magic bytes (1f 8b) but --compression None was given" failure.err ||
    fail "--compression None of a gzip file does not say why it failed: '$(cat failure.err)'"
expect_failure 1 "gz/part-00000.rec" "$cat" --compression Gzip gz/part-00000.rec
grep -q "corrupt gzip stream" failure.err || fail "--compression Gzip of a plain file: no word of gzip in '$(cat failure.err)'"

# CSV: label columns first, then features, as SageMaker's algorithms read text/csv.
printf '1,0.5,2\n0,-1.25,3e2\n7,8,9\n' >rows.csv
printf '%s\n' \
    '{"features": {"values": {"tensor": "float32", "values": [0.5, 2], "keys": [], "shape": []}}, "label": {"values": {"tensor": "float32", "values": [1], "keys": [], "shape": []}}}' \
    '{"features": {"values": {"tensor": "float32", "values": [-1.25, 300], "keys": [], "shape": []}}, "label": {"values": {"tensor": "float32", "values": [0], "keys": [], "shape": []}}}' \
    '{"features": {"values": {"tensor": "float32", "values": [8, 9], "keys": [], "shape": []}}, "label": {"values": {"tensor": "float32", "values": [7], "keys": [], "shape": []}}}' \
    >rows.expected
cp rows.csv rows.data
gzip -k rows.csv
expect_output "CSV with --content-type 'text/csv;label_size=1'" rows.expected "$cat" --json --content-type 'text/csv;label_size=1' rows.data
expect_output "CSV guessed from .csv" rows.expected "$cat" --json rows.csv
expect_output "CSV gzip-compressed, guessed from .csv.gz" rows.expected "$cat" --json rows.csv.gz
expect_output "CSV with --compression GZIP" rows.expected "$cat" --json --compression GZIP --content-type text/csv rows.csv.gz
head -n 2 rows.expected >rows2.expected
expect_output "CSV --limit 2" rows2.expected "$cat" --json --limit 2 rows.csv
printf '%s\n' '{"features": {"values": {"tensor": "float32", "values": [1, 0.5, 2], "keys": [], "shape": []}}, "label": {}}' >rows0.expected
expect_output "CSV with label_size=0" rows0.expected "$cat" --json --limit 1 --content-type 'text/csv; label_size=0' rows.csv
csv_summary=$(run "$cat" rows.csv.gz)
if [[ $(field records "$csv_summary") == 3 && $(field digest "$csv_summary") == count=3\ * ]]; then
    pass "CSV summary: 3 records"
else
    fail "CSV summary: $csv_summary"
fi
if [[ $(stderr_of "$cat" --verbose --limit 0 rows.csv) == *"content type text/csv (guessed from the extension of 'rows.csv'"* ]]; then
    pass "--verbose says the content type was guessed"
else
    fail "--verbose does not say what was guessed: $("$cat" --verbose --limit 0 rows.csv 2>&1 >/dev/null)"
fi
expect_failure 2 "label_size must be a whole number" "$cat" --content-type 'text/csv;label_size=x' rows.csv

# TFRecord, framed by an independent writer (bitwise CRC-32C in Python).
python3 -c '
import struct
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
def masked(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
def frame(p):
    n = struct.pack("<Q", len(p))
    return n + struct.pack("<I", masked(n)) + p + struct.pack("<I", masked(p))
assert crc32c(b"123456789") == 0xE3069283
with open("examples.tfrecord", "wb") as f:
    f.write(b"".join(frame(p) for p in [b"hello", b"", b"\x00\x01\xfe\xff"]))
'
printf '%s\n' '{"length": 5, "hex": "68656c6c6f"}' '{"length": 0, "hex": ""}' '{"length": 4, "hex": "0001feff"}' >tfrecord.expected
cp examples.tfrecord examples.bin
gzip -k examples.tfrecord
expect_output "TFRecord guessed from .tfrecord" tfrecord.expected "$cat" --json examples.tfrecord
expect_output "TFRecord gzip-compressed" tfrecord.expected "$cat" --json examples.tfrecord.gz
expect_output "TFRecord with --content-type application/x-tfrecord" tfrecord.expected "$cat" --json --content-type application/x-tfrecord examples.bin
expect_output "TFRecord --raw" tfrecord.expected "$cat" --raw examples.tfrecord
head -n 1 tfrecord.expected >tfrecord1.expected
expect_output "TFRecord --limit 1" tfrecord1.expected "$cat" --json --limit 1 examples.tfrecord.gz
expect_failure 1 "rows.csv" "$cat" --content-type application/x-tfrecord rows.csv examples.bin

# JSON Lines: --json prints each line as it is.
printf '%s\n' '{"a": 1}' '{"b": [2, 3], "c": "x\"y"}' '"just a string"' >records.jsonl
cp records.jsonl records.txt
gzip -k records.jsonl
expect_output "JSON Lines guessed from .jsonl" records.jsonl "$cat" --json records.jsonl
expect_output "JSON Lines gzip-compressed" records.jsonl "$cat" --json records.jsonl.gz
expect_output "JSON Lines with --content-type application/jsonlines" records.jsonl "$cat" --json --content-type application/jsonlines records.txt
head -n 2 records.jsonl >records2.expected
expect_output "JSON Lines --limit 2" records2.expected "$cat" --json --limit 2 records.jsonl
printf '%s\n' '{"length": 8, "hex": "7b2261223a20317d"}' >records_raw.expected
expect_output "JSON Lines --raw" records_raw.expected "$cat" --raw --limit 1 records.jsonl

# Opaque RecordIO payloads, and whole objects (one record per object).
cp ../known.rec known.data
expect_output "RecordIO with --content-type application/x-recordio" ../known.expected "$cat" --json --content-type application/x-recordio known.data
printf 'ab' >one.img
printf '\xff\xd8\xff' >two.img
printf '%s\n' '{"length": 2, "hex": "6162"}' '{"length": 3, "hex": "ffd8ff"}' >images.expected
expect_output "whole objects with --content-type application/x-image" images.expected "$cat" --json --content-type application/x-image one.img two.img

# Extensions that disagree: no guess, and --verbose says why.
if [[ $(stderr_of "$cat" --verbose rows.csv records.jsonl) == *"'rows.csv' and 'records.jsonl' disagree"* ]]; then
    pass "no guess when extensions disagree"
else
    fail "extensions that disagree: $("$cat" --verbose rows.csv records.jsonl 2>&1 >/dev/null)"
fi

# Augmented manifests: the records Pipe mode writes for a line (one RecordIO record per
# attribute), and a local manifest whose -ref objects are files beside it.
printf '\x0a\x23\xd7\xce\x02\x00\x00\x00ab\x00\x00' >grouped.rec
printf '\x0a\x23\xd7\xce\x03\x00\x00\x00"3"\x00' >>grouped.rec
printf '\x0a\x23\xd7\xce\x03\x00\x00\x00\xff\xd8\xff\x00' >>grouped.rec
printf '\x0a\x23\xd7\xce\x01\x00\x00\x005\x00\x00\x00' >>grouped.rec
printf '%s\n' '{"source-ref": {"length": 2, "hex": "6162"}, "class": "3"}' '{"source-ref": {"length": 3, "hex": "ffd8ff"}, "class": 5}' >manifest.expected
expect_output "augmented-manifest records grouped by attribute" manifest.expected "$cat" --json --attribute-names source-ref,class grouped.rec
grouped_summary=$(run "$cat" --attribute-names source-ref,class grouped.rec)
if [[ $(field records "$grouped_summary") == 2 ]]; then pass "augmented manifest summary: 2 rows"; else fail "augmented manifest summary: $grouped_summary"; fi
expect_failure 2 "--attribute-names is a comma-separated list" "$cat" --attribute-names source-ref,,class grouped.rec
if [[ $with_http_formats == yes ]]; then
    printf '%s\n' '{"source-ref": "one.img", "class": "3"}' '' '{"source-ref": "two.img", "class": 5, "other": 1}' >train.manifest
    expect_output "a local augmented manifest with -ref files" manifest.expected "$cat" --json --attribute-names source-ref,class train.manifest
    head -n 1 manifest.expected >manifest1.expected
    expect_output "an augmented manifest, --limit 1" manifest1.expected "$cat" --json --limit 1 --attribute-names source-ref,class train.manifest
    printf '%s\n' '{"source-ref": "one.img", "class": "3"}' '{"source-ref": "two.img", "class": 5, "other": 1}' >manifest_lines.expected
    expect_output ".manifest without --attribute-names reads as JSON Lines" manifest_lines.expected "$cat" --json train.manifest
else
    echo "skipped: augmented manifest files (pipemode-cat was built without pipemode::http)"
fi

cd "$work"

# ---------------------------------------------------------------------------------------------
# A FIFO, written by another process while pipemode-cat reads it.

if [[ -f $source_dir/include/pipemode/sources/fifo_source.hpp ]]; then
    mkfifo pipe
    cat dense/part-00001.rec >pipe &
    writer=$!
    from_fifo=$(run "$cat" dense/part-00000.rec pipe dense/part-00002.rec)
    wait "$writer" || fail "the FIFO writer failed"
    if [[ $(field digest "$from_fifo") == "$all" ]]; then
        pass "a FIFO among files: $all"
    else
        fail "through a FIFO: '$(field digest "$from_fifo")', from files: '$all'"
    fi
else
    echo "skipped: FIFO test (include/pipemode/sources/fifo_source.hpp does not exist yet)"
fi

# ---------------------------------------------------------------------------------------------
# Data-set options: shards read by separate processes add up to the whole data set, in every
# sharding mode (scripts/shard_check.sh compares the ranks' digests with one process's), and
# epochs repeat the data.

run "$gen" --out shards --rows 6000 --files 5 --dim 12 --seed 5 >/dev/null
for check in "3 object" "3 bytes" "7 byte-range"; do
    read -r world mode <<<"$check"
    if out=$(bash "$source_dir/scripts/shard_check.sh" "$cat" "$world" "$mode" --shuffle-seed 9 shards/ 2>&1); then
        pass "$world ranks by $mode: $(tail -n 1 <<<"$out")"
    else
        fail "$world ranks by $mode: $out"
    fi
done
two=$(run "$cat" --epochs 2 --shuffle-seed 3 --record-shuffle 100 shards/)
if [[ $(field records "$two") == 12000 ]]; then pass "2 epochs: 12000 records"; else fail "2 epochs gave '$(field records "$two")' records"; fi
# The same epochs through the memory cache and through a cache directory: the same records.
for cache in "--cache-in-memory" "--cache-dir shards-cache"; do
    # shellcheck disable=SC2086  # $cache is two words on purpose
    cached=$(run "$cat" --epochs 2 --shuffle-seed 3 --record-shuffle 100 $cache --cache-size 64M shards/)
    if [[ $(field digest "$cached") == "$(field digest "$two")" && $(field records "$cached") == 12000 ]]; then
        pass "2 epochs with $cache: the records of an uncached read"
    else
        fail "2 epochs with $cache: '$(field records "$cached")' records, digest '$(field digest "$cached")' against '$(field digest "$two")'"
    fi
done
if [[ -n $(find shards-cache -name '*.data') ]]; then pass "--cache-dir: entries written"; else fail "--cache-dir: no entry in shards-cache"; fi
expect_status 2 "$cat" --shard-mode diagonal shards/
expect_status 1 "$cat" --rank 6 --world-size 7 --shard-mode object shards/

# ---------------------------------------------------------------------------------------------
# The same data over HTTP and S3, from servers on loopback.

# The digest of the four files of "net", read locally, is what every network read must give.
run "$gen" --out net --rows 3000 --files 4 --dim 30 --seed 11 >/dev/null
net_local=$(field digest "$(run "$cat" net/part-*.rec)")
net_files=(part-00000.rec part-00001.rec part-00002.rec part-00003.rec)

# shellcheck source=../../scripts/lib/servers.sh
source "$source_dir/scripts/lib/servers.sh"
trap pipemode_stop_servers EXIT

# Without pipemode::http the tool refuses URLs with a sentence saying so (no I/O either way:
# with it, the bad endpoint is refused before any request).
with_http=yes
if [[ $(stderr_of "$cat" --endpoint-url not-a-url s3://bucket/key) == *"built without pipemode::http"* ]]; then
    with_http=no
fi

if [[ $with_http == no ]]; then
    echo "skipped: network checks (pipemode-cat was built without pipemode::http)"
elif ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    echo "skipped: nginx checks (nginx is not installed; scripts/test.sh installs nginx-light)"
else
    # nginx serves ROOT/NAME at /NAME, so ROOT/bucket/KEY is also the path-style s3://bucket/KEY.
    mkdir -p www/bucket/net
    cp net/part-*.rec www/
    cp net/part-*.rec www/bucket/net/
    pipemode_start_nginx www
    base=http://127.0.0.1:$PIPEMODE_NGINX_PORT

    got=$(field digest "$(run "$cat" "${net_files[@]/#/$base/}")")
    if [[ $got == "$net_local" ]]; then pass "http://: $got"; else fail "http:// digest '$got', local '$net_local'"; fi

    # Parts of 4 KiB with 3 connections: records straddle part boundaries, and --json is
    # byte for byte what the local files give.
    run "$cat" --json net/part-*.rec >net_local.json
    run "$cat" --json --part-size 4K --connections 3 --memory-budget 32M "${net_files[@]/#/$base/}" >net_http.json
    if cmp -s net_local.json net_http.json && [[ -s net_local.json ]]; then
        pass "--json over http:// with 4 KiB parts is the local output"
    else
        fail "--json over http:// differs from the local files'"
    fi
    raw_local=$(run "$cat" --raw --limit 100 net/part-00001.rec | cksum)
    raw_http=$(run "$cat" --raw --limit 100 "$base/part-00001.rec" | cksum)
    if [[ $raw_local == "$raw_http" ]]; then pass "--raw --limit 100 over http://"; else fail "--raw --limit 100 over http:// differs"; fi

    s3_args=(--endpoint-url "$base" --path-style --no-sign-request)
    got=$(field digest "$(run "$cat" "${s3_args[@]}" "${net_files[@]/#/s3://bucket/net/}")")
    if [[ $got == "$net_local" ]]; then pass "s3:// keys through nginx: $got"; else fail "s3:// digest '$got', local '$net_local'"; fi

    # Kinds mixed in one run, in argument order: a file, a URL, two S3 keys.
    got=$(field digest "$(run "$cat" "${s3_args[@]}" net/part-00000.rec "$base/part-00001.rec" \
        s3://bucket/net/part-00002.rec s3://bucket/net/part-00003.rec)")
    if [[ $got == "$net_local" ]]; then pass "a file, a URL and S3 keys in one run"; else fail "mixed sources: '$got', local '$net_local'"; fi

    # A missing object: exit 1, the URL and the status in the message.
    if "$cat" "$base/part-00000.rec" "$base/no-such.rec" >missing.out 2>missing.err; then status=0; else status=$?; fi
    message=$(cat missing.err)
    if [[ $status == 1 && $message == pipemode-cat:* && $message == *"$base/no-such.rec"* && $message == *404* ]]; then
        pass "a missing URL: exit 1, '$message'"
    else
        fail "a missing URL: exit $status, message '$message'"
    fi
    pipemode_stop_servers
fi

# moto_server: a signed ListObjectsV2 prefix and a manifest, with fake credentials in the
# environment whose secret must never be printed, even when the bucket does not exist.
secret=testing-secret-XYZ
if [[ $with_http == no ]]; then
    :
elif ! command -v moto_server >/dev/null || ! command -v aws >/dev/null; then
    echo "skipped: moto checks (moto_server or the aws CLI is not installed)"
else
    pipemode_start_moto
    endpoint=http://127.0.0.1:$PIPEMODE_MOTO_PORT
    with_fake_credentials() {
        env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 \
            AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=us-east-1 \
            AWS_CONFIG_FILE="$work/no-aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/no-aws-credentials" \
            AWS_EC2_METADATA_DISABLED=true "$@"
    }
    # One upload of a staged tree (each aws CLI run costs a second or more of Python start-up).
    mkdir -p upload/net
    cp net/part-*.rec upload/net/
    printf '[{"prefix": "s3://data/net/"}, "part-00003.rec", "part-00000.rec"]\n' >upload/manifest.json
    with_fake_credentials aws --endpoint-url "$endpoint" s3 mb s3://data >/dev/null
    with_fake_credentials aws --endpoint-url "$endpoint" s3 cp --recursive --quiet upload s3://data/

    prefix_out=$(run with_fake_credentials "$cat" --endpoint-url "$endpoint" s3://data/net/)
    got=$(field digest "$prefix_out")
    if [[ $got == "$net_local" ]]; then pass "a signed s3:// prefix listing from moto: $got"; else fail "s3:// prefix from moto: '$got', local '$net_local'"; fi

    # The endpoint from the environment, and a manifest naming two of the four files.
    manifest_out=$(run with_fake_credentials env AWS_ENDPOINT_URL_S3="$endpoint" "$cat" --manifest s3://data/manifest.json)
    two_local=$(field digest "$(run "$cat" net/part-00003.rec net/part-00000.rec)")
    got=$(field digest "$manifest_out")
    if [[ -n $got && $got == "$two_local" ]]; then pass "--manifest from moto: $got"; else fail "--manifest: '$got', local '$two_local'"; fi

    if with_fake_credentials "$cat" --endpoint-url "$endpoint" s3://no-such-bucket/net/ >nobucket.out 2>nobucket.err; then status=0; else status=$?; fi
    message=$(cat nobucket.err)
    if [[ $status == 1 && $message == *s3://no-such-bucket/net/* ]]; then
        pass "a missing bucket: exit 1, '$message'"
    else
        fail "a missing bucket: exit $status, message '$message'"
    fi
    if grep -qF -- "$secret" nobucket.out nobucket.err || [[ $prefix_out$manifest_out == *"$secret"* ]]; then
        fail "the secret access key was printed"
    else
        pass "the secret access key is never printed"
    fi
    pipemode_stop_servers
fi

failures=$(wc -l <"$work/failures.log")
if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all tool checks passed"
