#!/usr/bin/env bash
# The link benchmark (issue 12): pipemode-cat against an S3-like link emulated on loopback,
# beside curl's parallel download (the ceiling) and rclone (a peer), in one table.
#
# Installs what is missing (scripts/lib/deps.sh: the build's packages plus nginx's echo
# module, curl, rclone and GNU time), builds pipemode-cat and pipemode-gen with the release
# preset, writes protobuf RecordIO data sets into a temporary directory and serves them with
# one nginx (scripts/lib/servers.sh) on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (the same port, so
# a client that spreads its connections over a host's addresses can). The link: every request
# waits --first-byte-ms before its answer starts (the echo module's echo_sleep, then an
# internal redirect to the file, which keeps Range and If-Match), and every connection sends
# at most --connection-rate MB/s (limit_rate). The server speaks enough path-style S3 for
# pipemode and rclone: GET /BUCKET?list-type=2... answers a ListObjectsV2 page written here
# (keys, sizes, nginx's own ETags) and GET /BUCKET/KEY serves the object (ranged or whole);
# signatures are ignored. nginx is stopped by PID and the data removed on any exit.
#
# Rows: N objects x 16 MiB listed from s3://big/data/; M objects x 256 KiB listed from
# s3://small/data/ (sizes known from the listing); the same M objects as http:// URLs on
# pipemode-cat's command line (sizes unknown); one large object s3://huge/data/part-00000.rec.
# Columns: pipemode-cat with default options; pipemode-cat with --tuned-flags; curl
# --parallel --parallel-immediate --parallel-max 64 over the same objects into /dev/null (the
# ceiling; objects over 64 MiB in 8 MiB ranges, or one connection would cap them); rclone
# copy --transfers 32 into a local directory (File mode's parallel downloader; the s3 backend,
# and the http backend over nginx's directory index for the URL row). Per cell, medians of
# --repeats runs: MB/s (payload bytes / wall seconds), the ratio to curl, CPU seconds per GB
# (user + sys of the client, from GNU time), peak RSS (GNU time's maximum RSS) and, for
# pipemode, the time to the first batch. Once per row, every pipemode run's digest must equal
# pipemode-cat's on the local files, curl must fetch every byte and rclone's copy must have
# the same size, or the script exits 1.
#
# Usage: scripts/bench_link.sh [--connection-rate MBPS] [--first-byte-ms MS] [--repeats N]
#            [--quick] [--tuned-flags "FLAGS"] [--rows LIST] [--columns LIST]
#            [--build-dir DIR] [--no-deps]
#   --connection-rate MBPS  bytes each connection may send, in MB/s (10^6; default 50)
#   --first-byte-ms MS      wait before each answer, in ms (default 30)
#   --repeats N             runs of each cell; medians are reported (default 3)
#   --quick                 8 x 16 MiB, 100 x 256 KiB, a 256 MiB object, 1 run (a smoke test)
#   --big-objects N         objects of the 16 MiB row (default 32)
#   --small-objects M       objects of the 256 KiB rows (default 1000, at most 1000: one
#                           listing page)
#   --huge-mib S            size of the single object, MiB (default 1024)
#   --tuned-flags "FLAGS"   pipemode-cat's options for the "tuned" column (default
#                           "--connections 64 --memory-budget 1G"); word-split, so that the
#                           flags of whatever pipemode-cat is built can be given
#   --rows LIST             big,small,urls,huge (default all)
#   --columns LIST          default,tuned,curl,rclone (default all)
#   --build-dir DIR         use (and update with ninja) this build tree instead of the release
#                           preset's build/release
#   --no-deps               do not check or install Debian packages
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
# shellcheck source=scripts/lib/servers.sh
source scripts/lib/servers.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "bench_link.sh: $*" >&2; exit 1; }

number() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "bench_link.sh: $1 needs a positive number, not '$2'" >&2; exit 2; }
}
value() {
    [[ $# -ge 2 ]] || { echo "bench_link.sh: $1 needs a value" >&2; exit 2; }
}

rate_mbps=50
first_byte_ms=30
repeats=3
big_objects=32
small_objects=1000
huge_mib=1024
tuned_flags="--connections 64 --memory-budget 1G"
rows=big,small,urls,huge
columns=default,tuned,curl,rclone
build_dir=""
deps=1
while (($#)); do
    case "$1" in
        --connection-rate) number "$1" "${2:-}"; rate_mbps=$2; shift ;;
        --first-byte-ms) [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "bench_link.sh: --first-byte-ms needs a number" >&2; exit 2; }
            first_byte_ms=$2; shift ;;
        --repeats) number "$1" "${2:-}"; repeats=$2; shift ;;
        --quick) big_objects=8; small_objects=100; huge_mib=256; repeats=1 ;;
        --big-objects) number "$1" "${2:-}"; big_objects=$2; shift ;;
        --small-objects) number "$1" "${2:-}"; small_objects=$2; shift ;;
        --huge-mib) number "$1" "${2:-}"; huge_mib=$2; shift ;;
        --tuned-flags) value "$@"; tuned_flags=$2; shift ;;
        --rows) value "$@"; rows=$2; shift ;;
        --columns) value "$@"; columns=$2; shift ;;
        --build-dir) value "$@"; build_dir=$2; shift ;;
        --no-deps) deps=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench_link.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
((small_objects <= 1000)) || { echo "bench_link.sh: --small-objects is at most 1000 (one listing page)" >&2; exit 2; }
for r in ${rows//,/ }; do
    [[ $r =~ ^(big|small|urls|huge)$ ]] || { echo "bench_link.sh: --rows takes big, small, urls, huge, not '$r'" >&2; exit 2; }
done
for c in ${columns//,/ }; do
    [[ $c =~ ^(default|tuned|curl|rclone)$ ]] || { echo "bench_link.sh: --columns takes default, tuned, curl, rclone, not '$c'" >&2; exit 2; }
done
has() { [[ ,$1, == *,$2,* ]]; }

# The build's packages, and what this benchmark runs beside them.
if ((deps)); then
    pipemode_install_deps
    mapfile -t missing < <(pipemode_missing_packages "${PIPEMODE_DEPS_BENCH[@]}")
    if ((${#missing[@]})); then
        [[ $(id -u) -eq 0 ]] || die "missing Debian packages: ${missing[*]} (sudo apt-get install --no-install-recommends ${missing[*]})"
        echo "bench_link.sh: installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
fi
echo_module=/usr/lib/nginx/modules/ngx_http_echo_module.so
[[ -f $echo_module ]] || die "nginx's echo module ($echo_module) is missing: apt-get install libnginx-mod-http-echo"
command -v curl >/dev/null || die "curl is not installed: apt-get install curl"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is not installed: apt-get install time"
if has "$columns" rclone; then
    command -v rclone >/dev/null || die "rclone is not installed: apt-get install rclone (or leave it out with --columns)"
fi

targets=(pipemode-cat pipemode-gen)
if [[ -n $build_dir ]]; then
    ninja -C "$build_dir" "${targets[@]}"
else
    build_dir=build/release
    cmake --preset release >/dev/null
    cmake --build --preset release --target "${targets[@]}"
fi
cat_bin=$(cd "$build_dir/examples/tools" && pwd)/pipemode-cat
gen=$build_dir/examples/tools/pipemode-gen

work=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-bench-link.XXXXXX")
cleanup() {
    pipemode_stop_servers
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The data: one bucket per data set, each with its objects under data/ (so the listed prefix
# is s3://BUCKET/data/). pipemode-gen sizes sets by total MiB, so objects come out about, not
# exactly, the nominal size; every rate below uses the real bytes.
root=$work/root
mkdir -p "$root" "$work/listings"
declare -A set_of=([big]=big [small]=small [urls]=small [huge]=huge)
declare -A wanted_set=()
for r in ${rows//,/ }; do wanted_set[${set_of[$r]}]=1; done
gen_set() {  # bucket, objects, total MiB, seed
    echo "=== bench_link.sh: writing $2 object(s), $3 MiB, into bucket $1"
    "$gen" --out "$root/$1/data" --files "$2" --size-mib "$3" --seed "$4" >"$work/gen-$1.txt"
}
[[ -z ${wanted_set[big]:-} ]] || gen_set big "$big_objects" $((big_objects * 16)) 1
[[ -z ${wanted_set[small]:-} ]] || gen_set small "$small_objects" $(((small_objects + 3) / 4)) 2
[[ -z ${wanted_set[huge]:-} ]] || gen_set huge 1 "$huge_mib" 3

# One ListObjectsV2 page per bucket (at most 1000 keys: no continuation). The ETag is nginx's
# own ("hex mtime-hex size"), since clients send the listed one back as If-Match.
for b in "${!wanted_set[@]}"; do
    files=("$root/$b/data"/*)
    {
        echo '<?xml version="1.0" encoding="UTF-8"?>'
        echo '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        echo "<Name>$b</Name><Prefix>data/</Prefix><KeyCount>${#files[@]}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
        for f in "${files[@]}"; do
            mtime=$(stat -c %Y "$f")
            size=$(stat -c %s "$f")
            printf '<Contents><Key>data/%s</Key><LastModified>%s</LastModified><ETag>"%x-%x"</ETag><Size>%s</Size><StorageClass>STANDARD</StorageClass></Contents>\n' \
                "${f##*/}" "$(date -u -d "@$mtime" +%Y-%m-%dT%H:%M:%S.000Z)" "$mtime" "$size" "$size"
        done
        echo '</ListBucketResult>'
    } >"$work/listings/$b.xml"
done

# The emulated link (replaces servers.sh's plain configuration; pipemode_start_nginx still
# picks the port, starts nginx and records its PID). sendfile_max_chunk 512k: nginx applies
# limit_rate between sendfile chunks, so with the default 2 MiB chunk the first 2 MiB of every
# answer would leave unthrottled.
pipemode_write_nginx_conf() {
    local dir=$1 data=$2 port=$3 user_line="" sleep_s
    [[ $(id -u) -ne 0 ]] || user_line="user root;"
    sleep_s=$(awk -v ms="$first_byte_ms" 'BEGIN {printf "%.3f", ms / 1000}')
    cat >"$dir/nginx.conf" <<EOF
load_module $echo_module;
$user_line
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    sendfile_max_chunk 512k;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    etag on;
    default_type application/octet-stream;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        listen 127.0.0.2:$port;
        listen 127.0.0.3:$port;
        server_name localhost;
        root $data;
        # GET /BUCKET?list-type=2&prefix=...: the bucket's one listing page.
        location ~ ^/([A-Za-z0-9.-]+)/?\$ {
            echo_sleep $sleep_s;
            echo_exec /.listing/\$1.xml;
        }
        location ^~ /.listing/ {
            internal;
            default_type application/xml;
            alias $work/listings/;
        }
        # GET /BUCKET/KEY: the first-byte wait, then the file (Range and If-Match still
        # apply after the internal redirect), at most the link's rate.
        location / {
            echo_sleep $sleep_s;
            echo_exec @object;
        }
        location @object {
            # A directory is a key only with its trailing slash (rclone's http backend reads
            # its index); without one it is no object, as in S3, rather than a redirect.
            set \$directory_key "";
            if (-d \$request_filename) {
                set \$directory_key d;
            }
            if (\$uri ~ "[^/]\$") {
                set \$directory_key "\${directory_key}k";
            }
            if (\$directory_key = dk) {
                return 404;
            }
            limit_rate $((rate_mbps * 1000000));
            autoindex on;
        }
    }
}
EOF
}
pipemode_start_nginx "$root" || die "nginx did not start"
port=$PIPEMODE_NGINX_PORT
endpoint="http://127.0.0.1:$port"
for a in 127.0.0.2 127.0.0.3; do
    curl -s -o /dev/null --fail "http://$a:$port/.none" 2>/dev/null || [[ $? -eq 22 ]] \
        || die "nginx does not answer on $a:$port"
done

# Dummy credentials and a region: pipemode and rclone sign, nginx ignores the signatures. No
# AWS_CA_BUNDLE (rclone honours it and then fails on plain-http endpoints) nor any profile or
# endpoint from the environment.
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_DEFAULT_PROFILE
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
cat >"$work/rclone.conf" <<EOF
[link]
type = s3
provider = Other
env_auth = false
access_key_id = bench
secret_access_key = bench-secret
region = us-east-1
endpoint = $endpoint
force_path_style = true
list_version = 2
list_url_encode = false
EOF

# The link as one connection sees it, printed so the table can be read against it.
probe_bytes=$((16 * 1048576))
probe_file=$(find "$root" -name '*.rec' -size +16M | head -n 1)
if [[ -n $probe_file ]]; then
    probe_url=$endpoint/${probe_file#"$root"/}
    read -r probe_ttfb probe_speed < <(curl -s -o /dev/null --fail -w '%{time_starttransfer} %{speed_download}\n' \
        -H "Range: bytes=0-$((probe_bytes - 1))" "$probe_url")
    link_probe=$(awk -v t="$probe_ttfb" -v s="$probe_speed" 'BEGIN {printf "one connection, 16 MiB ranged GET: first byte %.1f ms, %.1f MB/s overall", t * 1000, s / 1e6}')
else
    link_probe="(no object of 16 MiB or more to probe the link with)"
fi
echo "=== bench_link.sh: link: $rate_mbps MB/s per connection, $first_byte_ms ms to the first byte; $link_probe"

# --- Running one cell ---------------------------------------------------------------------

# Runs "$@" under GNU time; sets cell_wall (s), cell_cpu (user + sys s), cell_rss (KiB) and
# leaves its stdout in $work/out. Fails the script, with its stderr, when the command fails.
timed() {
    local t0 t1 user sys rss
    t0=$(date +%s%N)
    if ! /usr/bin/time -f '%U %S %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err"; then
        echo "bench_link.sh: failed: $*" | cut -c 1-300 >&2
        tail -n 20 "$work/err" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    read -r user sys rss < <(tail -n 1 "$work/time")
    cell_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f", (b - a) / 1e9}')
    cell_cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
    cell_rss=$rss
}

# A field of pipemode-cat's summary ("   digest: ..."), from $work/out.
summary_field() {
    awk -v key="$1:" '{ sub(/^ +/, "") } index($0, key) == 1 { print substr($0, length(key) + 2); exit }' "$work/out"
}

# The sources of row $1 for pipemode-cat, one per line.
pipemode_sources() {
    case "$1" in
        big) echo "s3://big/data/" ;;
        small) echo "s3://small/data/" ;;
        urls) for f in "$root"/small/data/*; do echo "$endpoint/small/data/${f##*/}"; done ;;
        huge) echo "s3://huge/data/part-00000.rec" ;;
    esac
}

# curl's configuration for the objects of bucket $1: one entry per object, or per 8 MiB
# range of objects over 64 MiB. Each entry carries its own options and ends with "next",
# since a range given once would apply to every URL (the caller drops the last "next").
curl_config() {
    local f size off part=$((8 * 1048576)) entry='fail\nwrite-out = "%%{size_download}\\n"\nnext\n'
    for f in "$root/$1/data"/*; do
        size=$(stat -c %s "$f")
        if ((size > 64 * 1048576)); then
            for ((off = 0; off < size; off += part)); do
                # shellcheck disable=SC2059 # $entry is part of the format on purpose
                printf "url = \"%s\"\noutput = \"/dev/null\"\nrange = \"%d-%d\"\n$entry" \
                    "$endpoint/$1/data/${f##*/}" "$off" "$(( off + part < size ? off + part - 1 : size - 1 ))"
            done
        else
            # shellcheck disable=SC2059
            printf "url = \"%s\"\noutput = \"/dev/null\"\n$entry" "$endpoint/$1/data/${f##*/}"
        fi
    done
}

# Prints the median of the numbers on stdin ("-" when there are none).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A result=()  # "row column metric" -> list of values, one per run
declare -A payload=() reference=()
row_label() {
    case "$1" in
        big) echo "$big_objects x 16 MiB, listed" ;;
        small) echo "$small_objects x 256 KiB, listed (sizes known)" ;;
        urls) echo "$small_objects x 256 KiB as URLs (sizes unknown)" ;;
        huge) echo "1 x $huge_mib MiB" ;;
    esac
}

for row in ${rows//,/ }; do
    bucket=${set_of[$row]}
    payload[$row]=$(find "$root/$bucket/data" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
    # The reference digest: pipemode-cat over the same files, read locally in key order.
    "$cat_bin" "$root/$bucket/data"/* >"$work/out"
    reference[$row]=$(summary_field digest)
    [[ -n ${reference[$row]} ]] || die "no digest from pipemode-cat on the local files of $row"
    mapfile -t sources < <(pipemode_sources "$row")
    curl_config "$bucket" | sed '$d' >"$work/curl-$bucket.conf"  # no "next" after the last
    echo "=== bench_link.sh: $(row_label "$row"): ${payload[$row]} bytes, $repeats run(s) of $columns"
    for ((i = 0; i < repeats; i++)); do
        for col in ${columns//,/ }; do
            case "$col" in
                default|tuned)
                    flags=()
                    # shellcheck disable=SC2206 # word-splitting the user's flags is the point
                    [[ $col == default ]] || flags=($tuned_flags)
                    timed "$cat_bin" --endpoint-url "$endpoint" --path-style "${flags[@]}" "${sources[@]}"
                    digest=$(summary_field digest)
                    [[ $digest == "${reference[$row]}" ]] \
                        || die "$row, pipemode $col: digest $digest, but the local files give ${reference[$row]}"
                    bytes=$(summary_field bytes)
                    result["$row $col ttfb"]+="$(summary_field 'first batch ms') "
                    ;;
                curl)
                    timed curl --parallel --parallel-immediate --parallel-max 64 -s -S -K "$work/curl-$bucket.conf"
                    bytes=$(awk '{ s += $1 } END { print s }' "$work/out")
                    ;;
                rclone)
                    rm -rf -- "$work/copy"
                    if [[ $row == urls ]]; then
                        # Sizes from nginx's directory index, no HEAD per object.
                        timed rclone copy --config /dev/null --http-url "$endpoint/small/data/" --http-no-head \
                            --transfers 32 :http: "$work/copy"
                    else
                        timed rclone copy --config "$work/rclone.conf" --transfers 32 "link:$bucket/data" "$work/copy"
                    fi
                    bytes=$(find "$work/copy" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
                    rm -rf -- "$work/copy"
                    ;;
            esac
            [[ $bytes == "${payload[$row]}" ]] || die "$row, $col: $bytes bytes read, the objects hold ${payload[$row]}"
            result["$row $col mbps"]+="$(awk -v b="$bytes" -v w="$cell_wall" 'BEGIN {printf "%.1f", b / 1e6 / w}') "
            result["$row $col cpu"]+="$(awk -v b="$bytes" -v c="$cell_cpu" 'BEGIN {printf "%.2f", c / (b / 1e9)}') "
            result["$row $col rss"]+="$(awk -v k="$cell_rss" 'BEGIN {printf "%.0f", k / 1024}') "
            echo "    run $((i + 1)) $col: $(awk -v b="$bytes" -v w="$cell_wall" 'BEGIN {printf "%.1f MB/s in %.2f s", b / 1e6 / w, w}'), cpu ${cell_cpu} s, rss $((cell_rss / 1024)) MiB"
        done
    done
    echo "=== bench_link.sh: $row: every pipemode digest equals the local files' (${reference[$row]}); curl and rclone fetched every byte"
done

# --- The table ----------------------------------------------------------------------------

med() { tr ' ' '\n' <<<"${result["$1"]:-}" | grep -v '^$' | median; }
declare -A col_label=([default]="pipemode, defaults" [tuned]="pipemode, $tuned_flags"
    [curl]="curl, 64 at once" [rclone]="rclone copy, 32 transfers")
echo
echo "Link: $rate_mbps MB/s per connection, $first_byte_ms ms to the first byte, nginx on 127.0.0.1-3:$port; $link_probe. Medians of $repeats run(s); the ratio is to curl's MB/s in the same row."
echo
echo "| data set | client | MB/s | / curl | CPU s/GB | peak RSS MiB | first batch ms |"
echo "|---|---|---|---|---|---|---|"
for row in ${rows//,/ }; do
    ceiling=$(med "$row curl mbps")
    for col in ${columns//,/ }; do
        mbps=$(med "$row $col mbps")
        ratio=$(awk -v a="$mbps" -v c="$ceiling" 'BEGIN { if (c == "-" || c + 0 == 0) print "-"; else printf "%.2f", a / c }')
        ttfb=-
        [[ $col != default && $col != tuned ]] || ttfb=$(med "$row $col ttfb")
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(row_label "$row")" "${col_label[$col]}" \
            "$mbps" "$ratio" "$(med "$row $col cpu")" "$(med "$row $col rss")" "$ttfb"
    done
done
