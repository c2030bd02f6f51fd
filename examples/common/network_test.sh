#!/usr/bin/env bash
# The training examples over the network, run by CTest ("examples: over http and s3").
#
# Usage: network_test.sh PIPEMODE_PCA PIPEMODE_KMEANS WORK_DIR SOURCE_DIR [MPIRUN]
#
# Writes a small clustered data set (examples/common/recordio_protobuf.py), serves it with
# nginx on loopback (scripts/lib/servers.sh) and checks that pipemode-pca and pipemode-kmeans
# write byte for byte the same model.json from http:// URLs and from s3:// keys (path-style,
# unsigned) as from the local files: the same records in the same order must give the same
# doubles. With MPIRUN, the same for 3 ranks. Exits 77 (CTest's skip) when nginx, NumPy or
# pipemode::http is missing.
set -euo pipefail
trap 'echo "FAIL: network_test.sh stopped at line $LINENO" >&2' ERR

pca=$1
kmeans=$2
work=$3
source_dir=$4
mpirun=${5:-}

rm -rf "$work"
mkdir -p "$work"
cd "$work"

if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    echo "skipped: NumPy is not installed for /usr/bin/python3 (Debian: python3-numpy)"
    exit 77
fi
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    echo "skipped: nginx is not installed (scripts/test.sh installs nginx-light)"
    exit 77
fi

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

# ROOT/bucket/net/part-*.rec: nginx serves it at /bucket/net/..., which is also the
# path-style s3://bucket/net/....
/usr/bin/python3 - "$source_dir/examples/common" www/bucket/net <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import recordio_protobuf as rp
rng = np.random.default_rng(7)
centres = rng.uniform(-10, 10, size=(5, 12))
labels = rng.integers(0, 5, size=3000)
x = (centres[labels] + rng.normal(size=(3000, 12))).astype(np.float32)
rp.write_parts(sys.argv[2], x, 4, labels=labels)
EOF
files=(www/bucket/net/part-*.rec)
names=("${files[@]#www/bucket/net/}")

# shellcheck source=scripts/lib/servers.sh
source "$source_dir/scripts/lib/servers.sh"
trap pipemode_stop_servers EXIT
pipemode_start_nginx www
base=http://127.0.0.1:$PIPEMODE_NGINX_PORT
urls=("${names[@]/#/$base/bucket/net/}")
keys=("${names[@]/#/s3://bucket/net/}")
s3=(--endpoint-url "$base" --path-style --no-sign-request)

# A missing object stops the run with exit status 1 and names it (a 404 is not retried). A
# build without pipemode::http says so instead: then there is nothing more to test here.
status=0
"$pca" --num_components 2 --quiet --model-dir missing "$base/bucket/net/nope.rec" >missing.out 2>&1 || status=$?
if grep -q "built without pipemode::http" missing.out; then
    echo "skipped: the examples were built without pipemode::http"
    exit 77
fi
if [[ $status == 1 ]] && grep -q "nope.rec" missing.out && grep -q "404" missing.out; then
    pass "a missing URL: exit 1, the URL and the 404 in the message"
else
    fail "a missing URL: exit $status, $(cat missing.out)"
fi

# Runs PROGRAM ARGS... writing into model dir $1; a failure is reported.
train() {
    local dir=$1
    shift
    if ! "$@" --quiet --model-dir "$dir" >"$dir.out" 2>&1; then
        fail "'$*' failed: $(tail -n 3 "$dir.out")"
    fi
}

check_same() {
    local what=$1 a=$2 b=$3
    if [[ -s $a/model.json ]] && cmp -s "$a/model.json" "$b/model.json"; then
        pass "$what: the same model.json as from local files"
    else
        fail "$what: model.json differs from the local files' (or is missing)"
    fi
}

launchers=(single)
[[ -n $mpirun ]] && launchers+=(mpi)
for launcher in "${launchers[@]}"; do
    run=()
    [[ $launcher == mpi ]] && run=("$mpirun" --allow-run-as-root --oversubscribe -np 3)
    pca_args=(--num_components 4 --mini_batch_size 300)
    km_args=(--k 5 --epochs 2 --init_method kmeans++ --mini_batch_size 300 --init_sample_size 1000)
    train "pca_local_$launcher" "${run[@]}" "$pca" "${pca_args[@]}" "${files[@]}"
    train "pca_http_$launcher" "${run[@]}" "$pca" "${pca_args[@]}" "${urls[@]}"
    train "pca_s3_$launcher" "${run[@]}" "$pca" "${pca_args[@]}" "${s3[@]}" "${keys[@]}"
    check_same "pca, $launcher, http://" "pca_local_$launcher" "pca_http_$launcher"
    check_same "pca, $launcher, s3://" "pca_local_$launcher" "pca_s3_$launcher"
    train "km_local_$launcher" "${run[@]}" "$kmeans" "${km_args[@]}" "${files[@]}"
    train "km_http_$launcher" "${run[@]}" "$kmeans" "${km_args[@]}" "${urls[@]}"
    train "km_s3_$launcher" "${run[@]}" "$kmeans" "${km_args[@]}" "${s3[@]}" "${keys[@]}"
    check_same "kmeans, $launcher, http://" "km_local_$launcher" "km_http_$launcher"
    check_same "kmeans, $launcher, s3://" "km_local_$launcher" "km_s3_$launcher"
done

if ((failures)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
