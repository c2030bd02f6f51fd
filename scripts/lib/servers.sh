# shellcheck shell=bash
# shellcheck disable=SC2034 # the PIPEMODE_* variables are outputs, read by the sourcing script
# Loopback test servers for the network tests and benchmarks: nginx serving a directory over
# HTTP (Range and If-Match built in) and moto_server speaking the S3 API. Both listen on
# 127.0.0.1 only, on a free port, and are stopped by the PID recorded here, never by name.
#
# Usage (from a bash script):
#   source scripts/lib/servers.sh
#   trap pipemode_stop_servers EXIT
#   pipemode_start_nginx /path/to/data    # sets PIPEMODE_NGINX_PORT, PIPEMODE_NGINX_PID
#   pipemode_start_moto                   # sets PIPEMODE_MOTO_PORT, PIPEMODE_MOTO_PID
#   curl "http://127.0.0.1:$PIPEMODE_NGINX_PORT/file.bin"
#   pipemode_aws s3api create-bucket --bucket data    # aws CLI aimed at moto, fake credentials
#
# The nginx configuration matches tests/support/test_servers.hpp, so benchmarks and tests
# measure the same server: sendfile, keep-alive for 100000 requests, no access log.

# The directory holding each server's configuration, logs and PID file (empty: none yet).
PIPEMODE_NGINX_DIR=""
PIPEMODE_MOTO_DIR=""
PIPEMODE_NGINX_PORT=""
PIPEMODE_NGINX_PID=""
PIPEMODE_MOTO_PORT=""
PIPEMODE_MOTO_PID=""

# Prints a TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0).
# Another process may take it before the server binds it: the callers retry on a failed bind.
pipemode_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
pipemode_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits up to $3 tenths of a second for 127.0.0.1:$2 to accept connections while the process
# $1 lives. Returns 0 when ready, 1 when the process exited, 2 on timeout.
pipemode_wait_ready() {
    local pid=$1 port=$2 tenths=$3 i
    for ((i = 0; i < tenths; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if pipemode_port_open "$port"; then
            return 0
        fi
        sleep 0.1
    done
    return 2
}

# Stops the process (group when $2 is "group") $1: SIGTERM, up to 5 s, then SIGKILL.
pipemode_stop_pid() {
    local pid=$1 mode=${2:-} target i
    [[ -n $pid ]] || return 0
    target=$pid
    if [[ $mode == group ]]; then
        target=-$pid
    fi
    kill -TERM -- "$target" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 -- "$target" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "$target" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Writes the nginx configuration for serving $2 on port $3 into directory $1.
pipemode_write_nginx_conf() {
    local dir=$1 root=$2 port=$3 user_line=""
    # Workers drop to "nobody" when the master runs as root, and then cannot read a data
    # directory under a root-only temp dir.
    if [[ $(id -u) -eq 0 ]]; then
        user_line="user root;"
    fi
    cat >"$dir/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    sendfile on;
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
        server_name localhost;
        root $root;
        location / {
            autoindex on;
        }
    }
}
EOF
}

# Starts nginx serving directory $1 at http://127.0.0.1:$PIPEMODE_NGINX_PORT/ and sets
# PIPEMODE_NGINX_PORT and PIPEMODE_NGINX_PID. Returns 1, with the error log's tail on stderr,
# when nginx is missing or does not come up.
pipemode_start_nginx() {
    local root nginx attempt port pid status
    if [[ $# -ne 1 || ! -d $1 ]]; then
        echo "pipemode_start_nginx: needs one existing directory to serve" >&2
        return 1
    fi
    root=$(cd "$1" && pwd)
    nginx=$(command -v nginx || true)
    if [[ -z $nginx && -x /usr/sbin/nginx ]]; then
        nginx=/usr/sbin/nginx
    fi
    if [[ -z $nginx ]]; then
        echo "pipemode: nginx not found: run scripts/test.sh, which installs nginx-light" >&2
        return 1
    fi
    if [[ -n $PIPEMODE_NGINX_PID ]]; then
        echo "pipemode_start_nginx: nginx already running (PID $PIPEMODE_NGINX_PID)" >&2
        return 1
    fi
    PIPEMODE_NGINX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-nginx-XXXXXX")
    for attempt in 1 2 3 4 5; do
        port=$(pipemode_free_port)
        pipemode_write_nginx_conf "$PIPEMODE_NGINX_DIR" "$root" "$port"
        : >"$PIPEMODE_NGINX_DIR/error.log"
        : >"$PIPEMODE_NGINX_DIR/nginx.out"
        "$nginx" -p "$PIPEMODE_NGINX_DIR" -c "$PIPEMODE_NGINX_DIR/nginx.conf" \
            -e "$PIPEMODE_NGINX_DIR/error.log" </dev/null >>"$PIPEMODE_NGINX_DIR/nginx.out" 2>&1 &
        pid=$!
        status=0
        pipemode_wait_ready "$pid" "$port" 100 || status=$?
        if ((status == 0)); then
            PIPEMODE_NGINX_PORT=$port
            PIPEMODE_NGINX_PID=$pid
            return 0
        fi
        pipemode_stop_pid "$pid"
        # Only a lost race for the port is worth another try.
        if ! grep -q "Address already in use" "$PIPEMODE_NGINX_DIR/error.log" "$PIPEMODE_NGINX_DIR/nginx.out"; then
            break
        fi
    done
    echo "pipemode: nginx did not start (attempt $attempt); end of its error log:" >&2
    tail -n 20 "$PIPEMODE_NGINX_DIR/error.log" "$PIPEMODE_NGINX_DIR/nginx.out" >&2
    return 1
}

# Starts moto_server on 127.0.0.1 in its own process group and sets PIPEMODE_MOTO_PORT and
# PIPEMODE_MOTO_PID (the group's leader). Returns 1, with its log's tail on stderr, when it is
# missing or does not come up.
pipemode_start_moto() {
    local moto attempt port pid status
    moto=$(command -v moto_server || true)
    if [[ -z $moto ]]; then
        echo "pipemode: moto_server not found on the PATH: install it with 'python3 -m pip install \"moto[server]\"'" >&2
        return 1
    fi
    if [[ -n $PIPEMODE_MOTO_PID ]]; then
        echo "pipemode_start_moto: moto_server already running (PID $PIPEMODE_MOTO_PID)" >&2
        return 1
    fi
    PIPEMODE_MOTO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pipemode-moto-XXXXXX")
    for attempt in 1 2 3; do
        port=$(pipemode_free_port)
        : >"$PIPEMODE_MOTO_DIR/moto.log"
        # Its own process group, so stopping the group also stops anything it spawned. With job
        # control on, bash already gives each background job one; otherwise setsid makes one
        # without forking (the job is not a group leader), so $! stays the server's PID.
        if [[ $- == *m* ]]; then
            "$moto" -H 127.0.0.1 -p "$port" </dev/null >>"$PIPEMODE_MOTO_DIR/moto.log" 2>&1 &
        else
            setsid "$moto" -H 127.0.0.1 -p "$port" </dev/null >>"$PIPEMODE_MOTO_DIR/moto.log" 2>&1 &
        fi
        pid=$!
        status=0
        pipemode_wait_ready "$pid" "$port" 300 || status=$?
        if ((status == 0)); then
            PIPEMODE_MOTO_PORT=$port
            PIPEMODE_MOTO_PID=$pid
            return 0
        fi
        pipemode_stop_pid "$pid" group
        if ! grep -q "Address already in use" "$PIPEMODE_MOTO_DIR/moto.log"; then
            break
        fi
    done
    echo "pipemode: moto_server did not start (attempt $attempt); end of its log:" >&2
    tail -n 20 "$PIPEMODE_MOTO_DIR/moto.log" >&2
    return 1
}

# Runs the aws CLI against the running moto_server with fake credentials. AWS_CA_BUNDLE is
# unset because a CA bundle set for real endpoints breaks plain-http ones.
pipemode_aws() {
    if [[ -z $PIPEMODE_MOTO_PORT ]]; then
        echo "pipemode_aws: call pipemode_start_moto first" >&2
        return 1
    fi
    env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_SESSION_TOKEN \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        aws --endpoint-url "http://127.0.0.1:$PIPEMODE_MOTO_PORT" "$@"
}

# Stops whatever pipemode_start_nginx and pipemode_start_moto started, by PID, and removes
# their temp dirs. Safe to call twice and when nothing was started: install it as an EXIT trap.
pipemode_stop_servers() {
    if [[ -n $PIPEMODE_NGINX_PID ]]; then
        pipemode_stop_pid "$PIPEMODE_NGINX_PID"
        PIPEMODE_NGINX_PID=""
        PIPEMODE_NGINX_PORT=""
    fi
    if [[ -n $PIPEMODE_MOTO_PID ]]; then
        pipemode_stop_pid "$PIPEMODE_MOTO_PID" group
        PIPEMODE_MOTO_PID=""
        PIPEMODE_MOTO_PORT=""
    fi
    if [[ -n $PIPEMODE_NGINX_DIR ]]; then
        rm -rf -- "$PIPEMODE_NGINX_DIR"
        PIPEMODE_NGINX_DIR=""
    fi
    if [[ -n $PIPEMODE_MOTO_DIR ]]; then
        rm -rf -- "$PIPEMODE_MOTO_DIR"
        PIPEMODE_MOTO_DIR=""
    fi
    return 0
}
