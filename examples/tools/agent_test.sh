#!/usr/bin/env bash
# End-to-end test of pipemode-agent, run by CTest ("tools: pipemode-agent").
#
# Usage: agent_test.sh PIPEMODE_AGENT PIPEMODE_GEN PIPEMODE_CAT WORK_DIR SOURCE_DIR
#
# A job description (the shape of boto3's create_training_job arguments) with two channels:
# train, a local S3Prefix of RecordIO-protobuf files from pipemode-gen, ShardedByS3Key and
# shuffled; validation, gzip files, FullyReplicated, RecordWrapperType RecordIO. Two agents
# (hosts algo-1 and algo-2, each with its own data directory) stream 3 epochs while
# pipemode-cat reads their FIFOs: in every complete epoch the two hosts' train digests add up
# to pipemode-gen's (each record once, on one host), and every validation epoch is each
# inflated file as one record. Host algo-1 leaves epoch 1 after 10 records and still gets
# epoch 2 whole. Also: the files written into the config directory, SIGTERM (exit 143, FIFOs
# removed), refused configurations (exit 2) and a FIFO path that escapes the data directory
# (exit 1), and s3:// through moto_server with --endpoint-url when it is installed.
set -euo pipefail
trap 'echo "FAIL: agent_test.sh stopped at line $LINENO" >&2' ERR

agent=$1
gen=$2
cat=$3
work=$4
source_dir=$5

rm -rf "$work"
mkdir -p "$work"
cd "$work"

: >failures.log
fail() {
    echo "FAIL: $*" >&2
    echo "$*" >>"$work/failures.log"
}
pass() { echo "ok: $*"; }
field() { sed -n "s/^ *$1: //p" <<<"$2"; }

# Runs pipemode-cat on the FIFO $1 (options before it) once it exists; prints its output.
cat_fifo() {
    local fifo=${*: -1}
    wait_for "$fifo" || { fail "$fifo never appeared"; return 0; }
    "$cat" "$@" 2>>"$work/cat.err" || true
}

# The digest of two shards' digests ("count=N hash=SUM XOR", sum mod 2^64 and xor).
add_digests() {
    python3 - "$1" "$2" <<'EOF'
import sys
def parse(d):
    count, h = d.split()
    return int(count.split("=")[1]), int(h[5:21], 16), int(h[21:37], 16)
a, b = parse(sys.argv[1]), parse(sys.argv[2])
print("count=%d hash=%016x%016x" % (a[0] + b[0], (a[1] + b[1]) % 2**64, a[2] ^ b[2]))
EOF
}

# Waits up to 30 s for the path $1 to exist (an epoch's FIFO appears once the previous epoch
# has ended, and after the listing for the first).
wait_for() {
    for _ in $(seq 300); do
        [[ -e $1 ]] && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# The data and the job.

# About 10 MB, 5 MB per host and epoch: far more than a pipe and pipemode-cat's reads hold, so
# a reader that leaves early is seen leaving.
gen_out=$("$gen" --out train --rows 40000 --files 6 --dim 60 --seed 21)
all=$(field digest "$gen_out")
mkdir validation
for i in 0 1 2; do
    seq 1 $((i * 4000 + 7)) | gzip >"validation/part-$i.txt.gz"
done
# pipemode-cat --raw prints each record as {"length": N, "hex": "..."}: each inflated file, in
# listing order (FullyReplicated, not shuffled).
want_validation=$(for i in 0 1 2; do
    python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); print("{\"length\": %d, \"hex\": \"%s\"}" % (len(d), d.hex()))' \
        <(seq 1 $((i * 4000 + 7)))
done)

write_job() {  # $1: train URI, $2: validation URI, $3: train channel name
    cat <<EOF
{
    "TrainingJobName": "pca-pipe-mode-test",
    "AlgorithmSpecification": {"TrainingImage": "382416733822.dkr.ecr.us-east-1.amazonaws.com/pca:latest",
                               "TrainingInputMode": "Pipe"},
    "RoleArn": "arn:aws:iam::123456789012:role/example",
    "HyperParameters": {"num_components": "10", "feature_dim": "60", "mini_batch_size": "1000"},
    "InputDataConfig": [
        {"ChannelName": "${3:-train}",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "$1",
                                         "S3DataDistributionType": "ShardedByS3Key"}},
         "ContentType": "application/x-recordio-protobuf", "CompressionType": "None",
         "RecordWrapperType": "None", "ShuffleConfig": {"Seed": 42}},
        {"ChannelName": "validation",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "$2",
                                         "S3DataDistributionType": "FullyReplicated"}},
         "ContentType": "text/plain", "CompressionType": "Gzip", "RecordWrapperType": "RecordIO"}
    ],
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 10},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600}
}
EOF
}
write_job "file://$work/train/" "$work/validation" >job.json

# ---------------------------------------------------------------------------------------------
# Two hosts, 3 epochs, through FIFOs.

pids=()
for host in algo-1 algo-2; do
    "$agent" --config job.json --data-dir "$host/data" --config-dir "$host/config" --epochs 3 \
        --hosts algo-1,algo-2 --current-host "$host" --reader-timeout 60 2>"$host.log" &
    pids+=($!)
done

declare -A train_digest
for e in 0 1 2; do
    for host in algo-1 algo-2; do
        got=$(cat_fifo --raw "$host/data/validation_$e")
        if [[ $got == "$want_validation" ]]; then
            pass "$host validation_$e: each inflated file as one RecordIO record"
        else
            fail "$host validation_$e: '${got:0:200}'"
        fi
        if [[ $host == algo-1 && $e == 1 ]]; then
            out=$(cat_fifo --limit 10 --batch-size 10 --read-size 64K "$host/data/train_$e")
            if [[ $(field records "$out") == 10 ]]; then pass "algo-1 left train_1 after 10 records"; else fail "algo-1 train_1 --limit 10: '$out'"; fi
            continue
        fi
        train_digest[$host.$e]=$(field digest "$(cat_fifo "$host/data/train_$e")")
    done
done
for i in 0 1; do
    if wait "${pids[$i]}"; then status=0; else status=$?; fi
    if [[ $status == 0 ]]; then pass "agent algo-$((i + 1)) exited 0"; else fail "agent algo-$((i + 1)) exited $status: $(cat "algo-$((i + 1)).log")"; fi
done
for e in 0 2; do
    both=$(add_digests "${train_digest[algo-1.$e]:-count=0 hash=00000000000000000000000000000000}" \
        "${train_digest[algo-2.$e]:-count=0 hash=00000000000000000000000000000000}")
    if [[ $both == "$all" && ${train_digest[algo-1.$e]} != "$all" ]]; then
        pass "train epoch $e: the two hosts' shards add up to the data set: $both"
    else
        fail "train epoch $e: algo-1 '${train_digest[algo-1.$e]:-}' + algo-2 '${train_digest[algo-2.$e]:-}' = '$both', want '$all'"
    fi
done
if grep -q "train_1: the reader closed it" algo-1.log; then pass "algo-1's agent saw the early close"; else fail "no early close in algo-1.log: $(cat algo-1.log)"; fi
left=$(find algo-1/data algo-2/data -mindepth 1)
if [[ -z $left ]]; then pass "no FIFO left behind"; else fail "left behind: $left"; fi
if grep -q '"current_host": "algo-2"' algo-2/config/resourceconfig.json \
    && grep -q '"S3DistributionType": "ShardedByS3Key"' algo-2/config/inputdataconfig.json \
    && grep -q '"CompressionType": "Gzip"' algo-2/config/inputdataconfig.json; then
    pass "resourceconfig.json and inputdataconfig.json written"
else
    fail "config files: $(cat algo-2/config/*.json)"
fi
echo "--- algo-1's log:"
cat algo-1.log

# ---------------------------------------------------------------------------------------------
# Two consumers on one host, through the cache, 2 epochs: validation (FullyReplicated) whole in
# each consumer's FIFOs, train (ShardedByS3Key) dealt between them; every object in the cache.

"$agent" --config job.json --data-dir fan/data --config-dir fan/config --epochs 2 --consumers 2 \
    --cache-dir fan/cache --cache-size 64M --reader-timeout 60 2>fan.log &
pid=$!
for e in 0 1; do
    for c in 0 1; do
        # Side by side: a replicated channel streams once both consumers have opened it.
        cat_fifo --raw "fan/data/consumer-$c/validation_$e" >"fan-validation-$c" &
        cat_fifo "fan/data/consumer-$c/train_$e" >"fan-train-$c" &
    done
    wait $(jobs -p | grep -v "^$pid\$")
    for c in 0 1; do
        if [[ $(cat "fan-validation-$c") == "$want_validation" ]]; then
            pass "--consumers 2: consumer-$c/validation_$e whole"
        else
            fail "--consumers 2: consumer-$c/validation_$e: '$(head -c 200 "fan-validation-$c")'"
        fi
    done
    both=$(add_digests "$(field digest "$(cat fan-train-0)")" "$(field digest "$(cat fan-train-1)")")
    if [[ $both == "$all" ]]; then pass "--consumers 2: train_$e's two shards add up to the data set"; else fail "--consumers 2: train_$e: '$both', want '$all'"; fi
done
if wait "$pid"; then status=0; else status=$?; fi
if [[ $status == 0 ]]; then pass "the agent with 2 consumers and a cache exited 0"; else fail "the agent with --consumers 2 exited $status: $(cat fan.log)"; fi
entries=$(find fan/cache -name '*.data' | wc -l)
if [[ $entries == 9 ]]; then pass "--cache-dir: the 9 objects are in the cache"; else fail "--cache-dir: $entries entries, want 9: $(ls fan/cache)"; fi
expect_usage() {  # $1: text the message must hold, the rest: arguments
    local text=$1 status
    shift
    if "$agent" --config job.json "$@" >usage.out 2>usage.err; then status=0; else status=$?; fi
    if [[ $status == 2 ]] && grep -qF -- "$text" usage.err; then pass "$*: exit 2"; else fail "$*: exit $status, '$(cat usage.err)'"; fi
}
expect_usage "--cache-size" --cache-dir fan/cache2
expect_usage "--cache-size" --cache-in-memory
expect_usage "give one" --cache-dir fan/cache2 --cache-in-memory --cache-size 1G
expect_usage "--cache-in-memory" --cache-size 1G
expect_usage "--consumers" --consumers 0

# ---------------------------------------------------------------------------------------------
# SIGTERM while waiting for readers: exit 143, the FIFOs removed.

"$agent" --config job.json --data-dir term/data --config-dir term/config 2>term.log &
pid=$!
if wait_for term/data/train_0 && wait_for term/data/validation_0; then
    kill -TERM "$pid"
    if wait "$pid"; then status=0; else status=$?; fi
    if [[ $status == 143 && -z $(ls term/data) ]]; then
        pass "SIGTERM: exit 143, FIFOs removed"
    else
        fail "SIGTERM: exit $status, left: $(ls term/data), log: $(cat term.log)"
    fi
else
    kill -KILL "$pid" 2>/dev/null || true
    fail "the FIFOs never appeared: $(cat term.log)"
fi

# ---------------------------------------------------------------------------------------------
# Refused: exit 2 (usage, configuration) or 1 (at run time), with a message.

expect() {  # $1: exit status, $2: text the message must hold, $3: what, the rest: arguments
    local want=$1 text=$2 what=$3 status
    shift 3
    if "$agent" "$@" >refused.out 2>refused.err; then status=0; else status=$?; fi
    if [[ $status == "$want" ]] && grep -qF -- "$text" refused.err; then
        pass "$what: exit $status, $(head -1 refused.err)"
    else
        fail "$what: exit $status (want $want), message '$(cat refused.err)'"
    fi
}
write_job "file://$work/train/" "$work/validation" "../escape" >bad-name.json
expect 2 "../escape" "a channel name with a path in it" --config bad-name.json --data-dir bad/data --config-dir bad/config
expect 2 "no channel 'trian'" "--channel naming no channel" --config job.json --channel trian --data-dir bad/data --config-dir bad/config
expect 2 "byte-range" "--shard-mode byte-range" --config job.json --shard-mode byte-range
expect 2 "--current-host" "--hosts without --current-host" --config job.json --hosts algo-1,algo-2
expect 2 "no-such-job.json" "a missing config file" --config no-such-job.json
mkdir -p escape/data
echo "keep me" >outside.txt
ln -s "$work/outside.txt" escape/data/train_0
expect 1 "symbolic link" "a FIFO path that is a link out of the data directory" \
    --config job.json --channel train --data-dir escape/data --config-dir escape/config
if [[ $(cat outside.txt) == "keep me" ]]; then pass "the link's target is untouched"; else fail "outside.txt was changed"; fi
if [[ -z $(find bad -type p 2>/dev/null) ]]; then pass "refused configurations created no FIFO"; else fail "FIFOs after a refusal: $(find bad -type p)"; fi

# ---------------------------------------------------------------------------------------------
# s3:// through moto_server, with --endpoint-url.

if ! command -v moto_server >/dev/null || ! command -v aws >/dev/null; then
    echo "skipped: moto checks (moto_server or the aws CLI is not installed)"
else
    # shellcheck source=../../scripts/lib/servers.sh
    source "$source_dir/scripts/lib/servers.sh"
    trap pipemode_stop_servers EXIT
    pipemode_start_moto
    endpoint=http://127.0.0.1:$PIPEMODE_MOTO_PORT
    with_fake_credentials() {
        env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 \
            AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
            AWS_CONFIG_FILE="$work/no-aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/no-aws-credentials" \
            AWS_EC2_METADATA_DISABLED=true "$@"
    }
    mkdir -p upload
    cp -r train validation upload/
    with_fake_credentials aws --endpoint-url "$endpoint" s3 mb s3://jobdata >/dev/null
    with_fake_credentials aws --endpoint-url "$endpoint" s3 cp --recursive --quiet upload s3://jobdata/
    write_job "s3://jobdata/train/" "s3://jobdata/validation/" >s3-job.json
    with_fake_credentials "$agent" --config s3-job.json --endpoint-url "$endpoint" --data-dir s3/data \
        --config-dir s3/config --epochs 2 --reader-timeout 60 2>s3.log &
    pid=$!
    for e in 0 1; do
        got=$(field digest "$(cat_fifo "s3/data/train_$e")")
        if [[ $got == "$all" ]]; then pass "s3:// train_$e from moto: $got"; else fail "s3:// train_$e: '$got', want '$all'"; fi
        got=$(cat_fifo --raw "s3/data/validation_$e")
        if [[ $got == "$want_validation" ]]; then pass "s3:// validation_$e from moto"; else fail "s3:// validation_$e differs"; fi
    done
    if wait "$pid"; then status=0; else status=$?; fi
    if [[ $status == 0 ]]; then pass "the agent over moto exited 0"; else fail "the agent over moto exited $status: $(cat s3.log)"; fi

    write_job "s3://no-such-bucket-here/train/" "s3://jobdata/validation/" >nobucket-job.json
    if with_fake_credentials "$agent" --config nobucket-job.json --channel train --endpoint-url "$endpoint" \
        --data-dir s3b/data --config-dir s3b/config 2>nobucket.err; then status=0; else status=$?; fi
    message=$(cat nobucket.err)
    if [[ $status == 1 && $message == *no-such-bucket-here* && $message == *NoSuchBucket* ]]; then
        pass "a missing bucket: exit 1, '$message'"
    else
        fail "a missing bucket: exit $status, '$message'"
    fi
    pipemode_stop_servers
fi

failures=$(wc -l <"$work/failures.log")
if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all agent checks passed"
