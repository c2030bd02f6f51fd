#!/usr/bin/env bash
# pipemode-linear-learner over the network: the same model.json and metrics.json from http://
# URLs and s3:// keys (nginx on 127.0.0.1, started and stopped here by PID through
# scripts/lib/servers.sh) as from the same files on disk, dense and sparse, for the training
# channel and the validation and test channels, single process and (with MPIRUN) 3 ranks.
#
# Usage: linear_learner_network_test.sh PROGRAM WORK_DIR SOURCE_DIR [MPIRUN]
# Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without NumPy, nginx
# or pipemode::http.
set -euo pipefail
trap 'echo "FAIL: linear_learner_network_test.sh stopped at line $LINENO" >&2' ERR

program=$1
work=$2
source_dir=$3
mpirun=${4:-}

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

# A planted binary classifier in 4 parts, dense and sparse, and a validation file.
/usr/bin/python3 - "$source_dir/examples/common" www/bucket <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import recordio_protobuf as rp
rng = np.random.default_rng(11)
x = rng.normal(size=(2400, 16)).astype(np.float32)
x[rng.random(size=x.shape) < 0.5] = 0
y = (x @ rng.normal(size=16) + 0.3 * rng.normal(size=2400) > 0).astype(np.float32)
rp.write_parts(sys.argv[2] + "/dense", x[:2000], 4, labels=y[:2000])
rp.write_parts(sys.argv[2] + "/sparse", x[:2000], 4, sparse=True, labels=y[:2000])
rp.write_dense(sys.argv[2] + "/validation.rec", x[2000:], labels=y[2000:])
PY

source "$source_dir/scripts/lib/servers.sh"
trap pipemode_stop_servers EXIT
pipemode_start_nginx www
base=http://127.0.0.1:$PIPEMODE_NGINX_PORT
s3=(--endpoint-url "$base" --path-style --no-sign-request)
hyper=(--predictor_type binary_classifier --num_models 4 --epochs 3 --mini_batch_size 150
       --binary_classifier_model_selection_criteria f_beta)

status=0
"$program" "${hyper[@]}" --quiet --model-dir missing "$base/bucket/nope.rec" >missing.out 2>&1 || status=$?
if grep -q "built without pipemode::http" missing.out; then
    echo "skipped: the program was built without pipemode::http"
    exit 77
fi

train() {
    local dir=$1
    shift
    if ! "$@" --quiet --model-dir "$dir" >"$dir.out" 2>&1; then
        fail "'$*' failed: $(tail -n 3 "$dir.out")"
    fi
}

check_same() {
    local what=$1 a=$2 b=$3 file
    for file in model.json metrics.json; do
        if [[ -s $a/$file ]] && cmp -s "$a/$file" "$b/$file"; then
            pass "$what: the same $file as from local files"
        else
            fail "$what: $file differs from the local files' (or is missing)"
        fi
    done
}

launchers=(single)
[[ -n $mpirun ]] && launchers+=(mpi)
for launcher in "${launchers[@]}"; do
    run=()
    [[ $launcher == mpi ]] && run=("$mpirun" --allow-run-as-root --oversubscribe -np 3)
    for layout in dense sparse; do
        files=(www/bucket/$layout/part-*.rec)
        names=("${files[@]#www/bucket/}")
        urls=("${names[@]/#/$base/bucket/}")
        keys=("${names[@]/#/s3://bucket/}")
        name=${layout}_$launcher
        train "local_$name" "${run[@]}" "$program" "${hyper[@]}" --validation www/bucket/validation.rec \
            --test www/bucket/validation.rec "${files[@]}"
        train "http_$name" "${run[@]}" "$program" "${hyper[@]}" --validation "$base/bucket/validation.rec" \
            --test "$base/bucket/validation.rec" "${urls[@]}"
        train "s3_$name" "${run[@]}" "$program" "${hyper[@]}" "${s3[@]}" --validation s3://bucket/validation.rec \
            --test s3://bucket/validation.rec "${keys[@]}"
        check_same "$layout, $launcher, http://" "local_$name" "http_$name"
        check_same "$layout, $launcher, s3://" "local_$name" "s3_$name"
        # The line a SageMaker metric definition's regex picks up, with the value metrics.json holds.
        printed=$(sed -n 's/^#metric validation:binary_f_beta=\([^[:space:]]*\)$/\1/p' "local_$name.out")
        stored=$(sed -n 's/^ *"validation:binary_f_beta": \([^,]*\),\{0,1\}$/\1/p' "local_$name/metrics.json")
        if [[ -n $printed && $printed == "$stored" ]]; then
            pass "$layout, $launcher: #metric validation:binary_f_beta=$printed on its own line, as in metrics.json"
        else
            fail "$layout, $launcher: no #metric validation:binary_f_beta line equal to metrics.json's ($stored) in $(cat "local_$name.out")"
        fi
        if grep -q '^#metric validation:objective_loss=[^[:space:]]* epoch=3$' "local_$name.out"; then
            pass "$layout, $launcher: the third epoch's validation:objective_loss printed with epoch=3"
        else
            fail "$layout, $launcher: no '#metric validation:objective_loss=... epoch=3' line"
        fi
    done
done

if ((failures)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
