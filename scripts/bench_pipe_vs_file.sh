#!/usr/bin/env bash
# Pipe versus File (issue 5, docs/pipe-vs-file.md): SageMaker's Pipe-mode launch experiment on
# this machine. Writes a synthetic data set of dense float32 protobuf RecordIO rows (cached
# under build/pipe-vs-file-data/, keyed by size and file count), serves it from a loopback
# nginx, and trains pipemode-pca (one pass) and pipemode-kmeans (3 epochs) on it in File mode
# (download everything with pipemode's downloader, `aws s3 cp --recursive` and `rclone copy`,
# then train from local disk) and in Stream mode (train from the server directly). Prints the
# measured table (medians), writes it as CSV and draws a PNG chart with gnuplot.
#
# Also checks the S3 listing path once: a few of the objects go into a moto_server bucket and
# pipemode-pca reads them back from s3://BUCKET/PREFIX/ (moto reads a whole object for every
# ranged GET, so it is too slow to time anything on; nginx serves the timed runs).
#
# Usage: scripts/bench_pipe_vs_file.sh [--size SIZE] [--files N] [--repeats N] [--quick]
#            [--downloaders LIST] [--algorithms LIST] [--connection-rate MIB_S]
#            [--first-byte-ms MS] [--cache LIST] [--stream-connections N] [--out PREFIX]
#            [--build-dir DIR] [--no-deps]
#   --size SIZE         data set size: MiB, or with a suffix M or G (default 1G)
#   --files N           number of objects (default 64)
#   --repeats N         runs of each configuration; medians are reported (default 3)
#   --quick             a smoke run: 64 MiB in 8 objects, 1 repetition (about 15 s once built
#                       and the data set is cached; writing it takes 2 s)
#   --downloaders LIST  File-mode downloaders, comma-separated: pipemode, aws, rclone (8
#                       transfers), rclone32 (32 transfers) (default pipemode,aws,rclone; with
#                       --connection-rate or --first-byte-ms, rclone32 is added)
#   --algorithms LIST   pca,kmeans (default both)
#   --connection-rate N nginx sends at most N MiB/s on each connection (limit_rate), a stand-in
#                       for S3's per-connection bandwidth, so downloads are bound by the
#                       network rather than by this machine's CPU (default: no limit)
#   --first-byte-ms MS  nginx waits MS ms before each answer (echo module's echo_sleep), a
#                       stand-in for S3's first-byte latency; with --connection-rate 50 and
#                       --first-byte-ms 30 the link is scripts/bench_link.sh's (default: none)
#   --cache LIST        also run Stream mode through the local cache (docs/cache.md), once for
#                       each budget of LIST: full (the data set's bytes plus 8 KiB an object for
#                       each entry's key and last block), half (half the data set: fill then
#                       freeze keeps about half of epochs 2 and later), or a size such as 512M;
#                       each job starts with a fresh, empty cache directory, and the table
#                       gives the directory's du beside the budget (default: no cache rows;
#                       --cache full,half is the issue-14 run)
#   --stream-connections N  the Stream-mode trainers' --connections (default: theirs, 32-63
#                       adaptive), so that --connection-rate makes the link the bottleneck for
#                       Stream mode too: 8 is what the stream used before issue 12
#   --out PREFIX        write PREFIX.csv and PREFIX.png (default
#                       build/pipe-vs-file/<size>-<files>/pipe-vs-file)
#   --build-dir DIR     use (and update with ninja) this build tree instead of the release
#                       preset's build/release
#   --no-deps           do not check or install Debian packages
#   --replot            only redraw PREFIX.png from an existing PREFIX.csv (with --out)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

number() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "bench_pipe_vs_file.sh: $1 needs a positive number, not '$2'" >&2; exit 2; }
}

# Prints SIZE (a number of MiB, or with a suffix M or G) in MiB.
size_mib_of() {
    local v=${1^^}
    case "$v" in
        *G|*GIB|*GB) v=${v%%G*}; [[ $v =~ ^[1-9][0-9]*$ ]] && { echo $((v * 1024)); return; } ;;
        *M|*MIB|*MB) v=${v%%M*}; [[ $v =~ ^[1-9][0-9]*$ ]] && { echo "$v"; return; } ;;
        *) [[ $v =~ ^[1-9][0-9]*$ ]] && { echo "$v"; return; } ;;
    esac
    echo "bench_pipe_vs_file.sh: --size takes MiB or a size like 512M or 4G, not '$1'" >&2
    exit 2
}

# Draws $1.png from $1.csv ($2: the per-connection rate, if any): start-up (log scale) and
# total time of every configuration, File mode in one colour and Stream mode in another; in
# the total, the download's share is hatched. The title's figures come from the CSV, so a
# chart can be redrawn later (--replot).
draw_chart() {
    local out=$1 rate=$2 terminal tmp size_mib files repeats
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-chart.XXXXXX")
    IFS=, read -r size_mib files repeats < <(awk -F, 'NR == 2 {printf "%d,%d,%d\n", $5 / 1048576, $6, $4}' "$out.csv")
    if gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo; then
        terminal="pngcairo size 1300,600 font 'sans,10'"
    else
        terminal="png size 1300,600"  # libgd's terminal, when gnuplot lacks cairo
    fi
    awk -F, 'NR > 1 {
        name = ($1 == "pca" ? "PCA" : "K-Means") "\\n" ($2 == "file" ? "File " $3 : ($3 == "none" ? "Stream" : "Stream\\n" $3))
        printf "\"%s\" %s %s %s %s\n", name, ($2 == "file" ? 1 : 2), $8, $12, $10
    }' "$out.csv" >"$tmp/chart.dat"
    gnuplot <<EOF
set terminal $terminal
set output '$out.png'
set multiplot layout 1,2 title "Pipe vs File: PCA (1 pass) and K-Means (3 epochs) on $size_mib MiB in $files objects from a loopback nginx${rate:+ at $rate MiB/s a connection} (medians of $repeats)"
set boxwidth 0.7
set grid ytics
set xtics font ',8'
set bmargin 4
unset key
set title 'Time to first batch (s, log scale); File mode includes the download'
set logscale y
set yrange [0.001:*]
set offsets 0, 0, graph 0.08, 0
set style fill solid 0.8 border -1
plot '$tmp/chart.dat' using 0:3:(\$2 == 1 ? 0xd95f02 : 0x1b9e77):xtic(1) with boxes lc rgb variable, \
     '' using 0:3:(sprintf(\$3 < 0.1 ? '%.3f' : '%.2f', \$3)) with labels offset 0,0.7 font ',8'
unset logscale y
set title 'Total time (s); hatched: the download'
set yrange [0:*]
set offsets 0, 0, graph 0.05, 0
plot '$tmp/chart.dat' using 0:4:(\$2 == 1 ? 0xd95f02 : 0x1b9e77):xtic(1) with boxes lc rgb variable fs solid 0.8 border -1, \
     '' using 0:5 with boxes lc rgb 'black' fs pattern 4 transparent border -1, \
     '' using 0:4:(sprintf('%.2f', \$4)) with labels offset 0,0.7 font ',8'
unset multiplot
EOF
    rm -rf -- "$tmp"
}

size_mib=1024
files=64
repeats=3
epochs=3
downloaders=""
algorithms=pca,kmeans
out=""
build_dir=""
deps=1
rate=""
first_byte_ms=""
replot=0
cache_list=""
stream_connections=""
while (($#)); do
    case "$1" in
        --size) [[ $# -ge 2 ]] || { echo "bench_pipe_vs_file.sh: --size needs a value" >&2; exit 2; }
            size_mib=$(size_mib_of "$2"); shift ;;
        --size=*) size_mib=$(size_mib_of "${1#*=}") ;;
        --files) number "$1" "${2:-}"; files=$2; shift ;;
        --repeats) number "$1" "${2:-}"; repeats=$2; shift ;;
        --quick) size_mib=64; files=8; repeats=1 ;;
        --downloaders) [[ $# -ge 2 ]] || { echo "bench_pipe_vs_file.sh: --downloaders needs a list" >&2; exit 2; }
            downloaders=$2; shift ;;
        --algorithms) [[ $# -ge 2 ]] || { echo "bench_pipe_vs_file.sh: --algorithms needs a list" >&2; exit 2; }
            algorithms=$2; shift ;;
        --out) [[ $# -ge 2 ]] || { echo "bench_pipe_vs_file.sh: --out needs a path prefix" >&2; exit 2; }
            out=$2; shift ;;
        --build-dir) [[ $# -ge 2 ]] || { echo "bench_pipe_vs_file.sh: --build-dir needs a directory" >&2; exit 2; }
            build_dir=$2; shift ;;
        --connection-rate) number "$1" "${2:-}"; rate=$2; shift ;;
        --first-byte-ms) number "$1" "${2:-}"; first_byte_ms=$2; shift ;;
        --cache) [[ $# -ge 2 && $2 != --* ]] || { echo "bench_pipe_vs_file.sh: --cache needs a list of budgets (full, half, 512M)" >&2; exit 2; }
            cache_list=$2; shift ;;
        --stream-connections) number "$1" "${2:-}"; stream_connections=$2; shift ;;
        --no-deps) deps=0 ;;
        --replot) replot=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench_pipe_vs_file.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ((replot)); then
    [[ -n $out && -f $out.csv ]] || { echo "bench_pipe_vs_file.sh: --replot needs --out PREFIX with an existing PREFIX.csv" >&2; exit 2; }
    draw_chart "$out" "$rate"
    echo "=== bench_pipe_vs_file.sh: wrote $out.png"
    exit 0
fi
label="${size_mib}MiB-${files}files"
[[ -n $out ]] || out="build/pipe-vs-file/$label${rate:+-${rate}MiBps}${first_byte_ms:+-${first_byte_ms}ms}${stream_connections:+-${stream_connections}conn}${cache_list:+-cache}/pipe-vs-file"
# On an emulated link, File mode also gets its parallel best: 8 transfers leave most of a
# link with a per-connection rate and a first-byte latency idle.
if [[ -z $downloaders ]]; then
    downloaders=pipemode,aws,rclone
    [[ -z $rate$first_byte_ms ]] || downloaders+=,rclone32
fi
echo_module=/usr/lib/nginx/modules/ngx_http_echo_module.so

# The build's packages, and the peers this benchmark runs: rclone, and the aws CLI unless one
# is already on the PATH (e.g. aws-cli from pip, as on the development machine), both from
# Debian.
if ((deps)); then
    pipemode_install_deps
    peers=(rclone)
    [[ -z $first_byte_ms ]] || peers+=(libnginx-mod-http-echo)
    if [[ ,$downloaders, == *,aws,* ]] && ! command -v aws >/dev/null; then
        peers+=(awscli)
    fi
    mapfile -t missing < <(pipemode_missing_packages "${peers[@]}")
    if ((${#missing[@]})); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "bench_pipe_vs_file.sh: missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
            exit 1
        fi
        echo "bench_pipe_vs_file.sh: installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
fi
if [[ -n $first_byte_ms && ! -f $echo_module ]]; then
    echo "bench_pipe_vs_file.sh: --first-byte-ms needs nginx's echo module ($echo_module): apt-get install libnginx-mod-http-echo" >&2
    exit 1
fi
if [[ ,$downloaders, == *,aws,* ]] && ! command -v aws >/dev/null; then
    echo "bench_pipe_vs_file.sh: the aws CLI is not on the PATH: apt-get install awscli (or pip)," >&2
    echo "  or leave it out with --downloaders pipemode,rclone" >&2
    exit 1
fi

targets=(bench_pipe_vs_file pipemode-gen pipemode-pca pipemode-kmeans)
if [[ -n $build_dir ]]; then
    ninja -C "$build_dir" "${targets[@]}"
else
    build_dir=build/release
    cmake --preset release >/dev/null
    cmake --build --preset release --target "${targets[@]}"
fi
bench=$build_dir/benchmarks/bench_pipe_vs_file
gen=$build_dir/examples/tools/pipemode-gen
pca=$build_dir/examples/pca/pipemode-pca
kmeans=$build_dir/examples/kmeans/pipemode-kmeans

# The data set, written once for each size and file count: 50 float32 values a row around 10
# cluster centres (so K-Means has clusters to find) and a label. The server's root holds one
# directory, "data", which is also the bucket name the aws CLI sees.
cache=build/pipe-vs-file-data/$label
if [[ ! -e $cache/complete ]]; then
    rm -rf -- "$cache"
    mkdir -p "$cache/data"
    echo "=== bench_pipe_vs_file.sh: writing $size_mib MiB in $files objects under $cache (once)"
    "$gen" --out "$cache/data" --size-mib "$size_mib" --files "$files" --dim 50 --clusters 10 --format dense >"$cache/gen.txt"
    touch "$cache/complete"
fi
cache=$(cd "$cache" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-pipe-vs-file.XXXXXX")
cleanup() {
    pipemode_stop_servers
    rm -rf -- "$work"
}
trap cleanup EXIT

# nginx also answers the aws CLI's ListObjectsV2 for the bucket "data" (GET /data?list-type=2,
# which a static server would redirect to /data/) with a listing written here, so `aws s3 cp
# --recursive` runs against the same fast server as the other downloaders. Its GETs of the
# objects are plain (ranged) GETs of /data/KEY; nginx ignores the signature.
listing=$work/listing.xml
{
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    echo "<Name>data</Name><Prefix></Prefix><KeyCount>$files</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
    # The ETag is nginx's own ("hex mtime-hex size"): the aws CLI sends the listed one back
    # as If-Match on its ranged GETs.
    for f in "$cache"/data/*; do
        mtime=$(stat -c %Y "$f")
        size=$(stat -c %s "$f")
        printf '<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>"%x-%x"</ETag><Size>%s</Size><StorageClass>STANDARD</StorageClass></Contents>\n' \
            "${f##*/}" "$(date -u -d "@$mtime" +%Y-%m-%dT%H:%M:%S.000Z)" "$mtime" "$size" "$size"
    done
    echo '</ListBucketResult>'
} >"$listing"
eval "$(declare -f pipemode_write_nginx_conf | sed '1s/pipemode_write_nginx_conf/pipemode_write_nginx_conf_plain/')"
pipemode_write_nginx_conf() {
    pipemode_write_nginx_conf_plain "$@"
    local listing_block object=/ sleep_s
    if [[ -z $first_byte_ms ]]; then
        listing_block="        location = /data {\n            default_type application/xml;\n            alias $listing;\n        }"
    else
        # Every answer waits first_byte_ms (echo_sleep), then an internal redirect serves it,
        # Range and If-Match included; the rate limit applies to the redirect's location.
        sleep_s=$(awk -v ms="$first_byte_ms" 'BEGIN {printf "%.3f", ms / 1000}')
        sed -i "1i load_module $echo_module;" "$1/nginx.conf"
        listing_block="        location = /data {\n            echo_sleep $sleep_s;\n            echo_exec /.listing;\n        }"
        listing_block+="\n        location = /.listing {\n            internal;\n            default_type application/xml;\n            alias $listing;\n        }"
        listing_block+="\n        location / {\n            echo_sleep $sleep_s;\n            echo_exec @object;\n        }"
        sed -i "s|^        location / {|        location @object {|" "$1/nginx.conf"
        object=@object
    fi
    sed -i "s|^        location $object {|$listing_block\n        location $object {|" "$1/nginx.conf"
    # Directory listings in JSON, which state each object's size: Stream mode with a cache
    # lists the directory (the cache keeps only objects whose listed size is in their key).
    sed -i "s|^            autoindex on;|            autoindex on;\n            autoindex_format json;|" "$1/nginx.conf"
    if [[ -n $rate ]]; then
        # limit_rate acts between sendfile chunks: with the default 2 MiB chunk the first
        # 2 MiB of every answer would leave unthrottled.
        sed -i "s|^        location $object {|        location $object {\n            limit_rate ${rate}m;|" "$1/nginx.conf"
        sed -i "s|^    sendfile on;|    sendfile on;\n    sendfile_max_chunk 512k;|" "$1/nginx.conf"
    fi
}
pipemode_start_nginx "$cache"
base="http://127.0.0.1:$PIPEMODE_NGINX_PORT"

# The aws CLI against loopback: fake credentials, path-style addressing, and no
# AWS_CA_BUNDLE (set for real endpoints, it breaks plain-http ones; rclone honours it too).
cat >"$work/aws-config" <<'EOF'
[default]
region = us-east-1
s3 =
    addressing_style = path
EOF
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
    AWS_CONFIG_FILE=$work/aws-config AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3

# The S3 listing path, on a few objects in moto: pipemode-pca lists s3://bench/data/ and must
# read the records it reads from the same local files. moto_server is not a Debian package
# (pip install "moto[server]"); the objects go in with the aws CLI. Without either, the check
# is skipped and says so.
if ! command -v moto_server >/dev/null || ! command -v aws >/dev/null; then
    echo "=== bench_pipe_vs_file.sh: moto_server or aws not on the PATH: S3 listing check SKIPPED"
else
    check_files=("$cache"/data/*)
    check_files=("${check_files[@]:0:3}")
    echo "=== bench_pipe_vs_file.sh: S3 listing check on moto_server (${#check_files[@]} objects)"
    pipemode_start_moto
    pipemode_aws s3api create-bucket --bucket bench >/dev/null
    for f in "${check_files[@]}"; do
        pipemode_aws s3 cp --only-show-errors "$f" "s3://bench/data/${f##*/}"
    done
    from_s3=$("$pca" --num-components 10 --quiet --model-dir "$work" \
        --endpoint-url "http://127.0.0.1:$PIPEMODE_MOTO_PORT" s3://bench/data/ | awk '$1 == "records:" {print $2}')
    local_records=$("$pca" --num-components 10 --quiet --model-dir "$work" "${check_files[@]}" | awk '$1 == "records:" {print $2}')
    if [[ -z $from_s3 || $from_s3 != "$local_records" ]]; then
        echo "bench_pipe_vs_file.sh: the S3 listing check failed: $from_s3 records from s3://bench/data/, $local_records from the files" >&2
        exit 1
    fi
    echo "=== bench_pipe_vs_file.sh: ok: $from_s3 records from s3://bench/data/ (listed by pipemode), as from the files"
    pipemode_stop_pid "$PIPEMODE_MOTO_PID" group
    PIPEMODE_MOTO_PID=""
fi

# Dropping the page cache before each job needs root; without it File mode's training and
# nginx read warm pages and the comparison says so in its header.
drop=()
if [[ -w /proc/sys/vm/drop_caches ]] && (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    drop=(--drop-caches)
else
    echo "=== bench_pipe_vs_file.sh: cannot drop the page cache (not root?): every job runs with warm caches"
fi

mkdir -p "$(dirname "$out")"
echo "=== bench_pipe_vs_file.sh: $label, $repeats repetition(s), downloaders $downloaders, algorithms $algorithms${rate:+, $rate MiB/s per connection}${first_byte_ms:+, $first_byte_ms ms to the first byte}${cache_list:+, Stream mode also with the cache at $cache_list}"
"$bench" --url "$base/data" --dir "$cache/data" --work "$work/jobs" --pca "$pca" --kmeans "$kmeans" \
    --s3-endpoint "$base" --bucket data --downloaders "$downloaders" --algorithms "$algorithms" \
    --repeats "$repeats" --epochs "$epochs" ${cache_list:+--cache "$cache_list"} ${stream_connections:+--stream-connections "$stream_connections"} "${drop[@]}" --csv "$out.csv" | tee "$out.txt"

draw_chart "$out" "$rate"
echo "=== bench_pipe_vs_file.sh: wrote $out.csv, $out.txt and $out.png"
