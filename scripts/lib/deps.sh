# shellcheck shell=bash
# pipemode's Debian 12 dependencies, and an installer that installs only what is missing.
# Sourced by scripts/test.sh and scripts/demo.sh; call pipemode_install_deps.

# What building, testing and the demo need today.
PIPEMODE_DEPS_BUILD=(
    build-essential cmake ninja-build pkg-config
    libboost1.81-dev        # replaces the preinstalled libboost1.74-dev (apt removes it): expected
    libcurl4-openssl-dev libprotobuf-dev protobuf-compiler zlib1g-dev
    libssl-dev              # OpenSSL 3's libcrypto: SHA-256 and HMAC for the S3 signer
    catch2
    lld                     # links the tests in a fifth of GNU ld's time (PIPEMODE_LINKER)
    nginx-light             # loopback HTTP range server for the network tests
    openssl                 # self-signed certificates and a TLS server for the TLS verification test
)

# Needed by work that is landing next: plots and numeric checks (numpy for /usr/bin/python3,
# gnuplot), libFuzzer (clang, libclang-rt-14-dev) and the distributed-training example (MPI).
# gnuplot-nox is the gnuplot command without the Qt and GTK stack the "gnuplot" package drags
# in even with --no-install-recommends: plots go to files on a headless machine.
PIPEMODE_DEPS_UPCOMING=(
    python3-numpy gnuplot-nox
    clang libclang-rt-14-dev
    openmpi-bin libopenmpi-dev
    libeigen3-dev           # dense linear algebra of the example trainers (header-only)
)

# What scikit-learn and SciPy need at run time, for the reference parsers and algorithms of the
# examples' tests (examples/libsvm/libsvm_test.py). python3-sklearn and python3-scipy themselves
# cannot be installed beside libboost1.81-dev (SciPy depends on Pythran, which depends on Boost
# 1.74's dev package): pipemode_fetch_python_reference unpacks them into the build tree instead.
PIPEMODE_DEPS_REFERENCE=(
    liblbfgsb0 libgfortran5 libblas3 liblapack3 python3-joblib python3-threadpoolctl
    python3-torch           # autograd as the Neural Topic Model's gradient oracle; installs
                            # with apt (no Boost dev package), ~50 MB to fetch, a minute
)

# What the benchmark scripts run beside pipemode (scripts/bench_link.sh; bench_http.sh and
# bench_pipe_vs_file.sh take the peers they need from here too): curl as the ceiling, rclone
# as File mode's parallel downloader, GNU time for CPU and peak RSS, and nginx with Debian's
# echo module for the emulated S3-like link (echo_sleep's first-byte latency). nginx-light is
# kept for the tests; in Debian 12 it depends on nginx and the echo module anyway, and nginx
# loads the module with load_module.
PIPEMODE_DEPS_BENCH=(
    curl rclone time
    nginx libnginx-mod-http-echo
)

# Prints, one per line, the packages among "$@" that are not installed.
pipemode_missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [[ $status != "install ok installed" ]]; then
            echo "$pkg"
        fi
    done
}

# Installs the missing packages with apt-get (one update, one install), or does nothing when
# all are present. Exits 1 when packages are missing and we are not root.
pipemode_install_deps() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "pipemode: dpkg-query not found; these scripts expect Debian 12. Install the equivalents of:" >&2
        echo "  ${PIPEMODE_DEPS_BUILD[*]} ${PIPEMODE_DEPS_UPCOMING[*]} ${PIPEMODE_DEPS_REFERENCE[*]}" >&2
        exit 1
    fi
    local missing=()
    mapfile -t missing < <(pipemode_missing_packages "${PIPEMODE_DEPS_BUILD[@]}" "${PIPEMODE_DEPS_UPCOMING[@]}" "${PIPEMODE_DEPS_REFERENCE[@]}")
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "pipemode: missing Debian packages: ${missing[*]}" >&2
        echo "pipemode: run this script as root, or first: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "pipemode: installing missing Debian packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Unpacks Debian's scikit-learn and SciPy (python3-sklearn, python3-sklearn-lib, python3-scipy)
# into DIR without installing them, for /usr/bin/python3 with PYTHONPATH=DIR/usr/lib/python3/dist-packages
# (what the examples' reference tests do). The .deb files are kept in build/debs and reused.
# Does nothing when DIR already holds them; returns non-zero (and says why) when the packages
# cannot be downloaded, in which case the tests that need them are skipped.
pipemode_fetch_python_reference() {
    local dir=$1 debs deb
    if [[ -d $dir/usr/lib/python3/dist-packages/sklearn && -d $dir/usr/lib/python3/dist-packages/scipy ]]; then
        return 0
    fi
    debs="$(dirname "$dir")/../debs"
    mkdir -p "$debs" "$dir"
    if ! compgen -G "$debs/python3-sklearn_*.deb" >/dev/null || ! compgen -G "$debs/python3-sklearn-lib_*.deb" >/dev/null \
        || ! compgen -G "$debs/python3-scipy_*.deb" >/dev/null; then
        if ! (cd "$debs" && apt-get download python3-scipy python3-sklearn python3-sklearn-lib); then
            echo "pipemode: could not download python3-scipy, python3-sklearn and python3-sklearn-lib;" \
                "the scikit-learn reference tests will be skipped" >&2
            return 1
        fi
    fi
    for deb in "$debs"/python3-scipy_*.deb "$debs"/python3-sklearn_*.deb "$debs"/python3-sklearn-lib_*.deb; do
        dpkg-deb -x "$deb" "$dir"
    done
}
