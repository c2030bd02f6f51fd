# Compiler flags for pipemode's own developer targets (tests, examples, benchmarks): warnings,
# the sanitizer chosen by PIPEMODE_SANITIZER and the linker (PIPEMODE_LINKER). Applied per
# directory with pipemode_use_dev_options(), so they never reach the exported pipemode:: targets
# and a consumer's build is never sanitized, -Werror'd or relinked by us.
include_guard(GLOBAL)

# Standard C++20, not gnu++20: our code must build with any conforming compiler. (The exported
# targets only require cxx_std_20 and leave extensions to the consumer.)
if(NOT DEFINED CMAKE_CXX_EXTENSIONS)
    set(CMAKE_CXX_EXTENSIONS OFF)
endif()

set(_pipemode_sanitizers none asan tsan fuzz)
if(NOT PIPEMODE_SANITIZER IN_LIST _pipemode_sanitizers)
    message(FATAL_ERROR
        "PIPEMODE_SANITIZER is '${PIPEMODE_SANITIZER}'; set it to one of: ${_pipemode_sanitizers}.")
endif()

# Boost, Catch2 and libprotobuf live under /usr/include, a system directory, so their
# warnings stay silent and cannot fail a -Werror build.
set(PIPEMODE_WARNING_OPTIONS -Wall -Wextra -Wpedantic)
if(PIPEMODE_WERROR)
    list(APPEND PIPEMODE_WARNING_OPTIONS -Werror)
endif()

set(PIPEMODE_SANITIZER_COMPILE_OPTIONS)
set(PIPEMODE_SANITIZER_LINK_OPTIONS)
set(PIPEMODE_SANITIZER_ENVIRONMENT)

set(_pipemode_asan_environment
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")

if(PIPEMODE_SANITIZER STREQUAL "asan")
    set(PIPEMODE_SANITIZER_COMPILE_OPTIONS
        -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
    set(PIPEMODE_SANITIZER_LINK_OPTIONS -fsanitize=address,undefined)
    set(PIPEMODE_SANITIZER_ENVIRONMENT ${_pipemode_asan_environment})
elseif(PIPEMODE_SANITIZER STREQUAL "tsan")
    set(PIPEMODE_SANITIZER_COMPILE_OPTIONS -fsanitize=thread)
    set(PIPEMODE_SANITIZER_LINK_OPTIONS -fsanitize=thread)
    set(PIPEMODE_SANITIZER_ENVIRONMENT "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
elseif(PIPEMODE_SANITIZER STREQUAL "fuzz")
    # libFuzzer ships with clang only (Debian: clang and libclang-rt-14-dev). Everything is
    # instrumented for coverage; only the *.fuzz.cpp targets link libFuzzer's main.
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR
            "PIPEMODE_SANITIZER=fuzz needs clang (libFuzzer): install the Debian packages clang and "
            "libclang-rt-14-dev and configure with -DCMAKE_CXX_COMPILER=clang++ (or use the fuzz preset).")
    endif()
    # -fno-sanitize=function: clang 14's function-type check breaks code generation for
    # coroutines ("Cannot represent a difference across sections", llvm/llvm-project#49689),
    # and Asio's awaitables are coroutines.
    set(PIPEMODE_SANITIZER_COMPILE_OPTIONS
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function
        -fno-sanitize-recover=all -fno-omit-frame-pointer)
    set(PIPEMODE_SANITIZER_LINK_OPTIONS -fsanitize=address,undefined -fno-sanitize=function)
    set(PIPEMODE_SANITIZER_ENVIRONMENT ${_pipemode_asan_environment})
endif()

# Programs started by mpirun (the examples' MPI tests): the same, except that leaks Open MPI
# keeps past MPI_Finalize are suppressed (cmake/lsan-open-mpi.supp). Matching them needs whole
# stacks (the slow unwinder: Open MPI is built without frame pointers) and module names (its
# components stay loaded instead of being dlclose'd at exit). Leaks of pipemode's own remain
# errors here, and the same code runs without MPI in every other test.
set(PIPEMODE_MPI_SANITIZER_ENVIRONMENT ${PIPEMODE_SANITIZER_ENVIRONMENT})
if(PIPEMODE_SANITIZER MATCHES "^(asan|fuzz)$")
    list(APPEND PIPEMODE_MPI_SANITIZER_ENVIRONMENT
        "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/lsan-open-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0"
        "OMPI_MCA_mca_base_component_disable_dlclose=1")
endif()

# For code that is not ours to debug: Catch2's main and the protoc-generated reference code.
# Under ASan/UBSan they stay uninstrumented (Catch's main alone takes three times as long to
# compile instrumented, for checks of code we do not own); under TSan they are instrumented,
# since accesses TSan cannot see can hide the happens-before edges between our threads.
set(PIPEMODE_SUPPORT_COMPILE_OPTIONS)
if(PIPEMODE_SANITIZER MATCHES "^(asan|fuzz)$")
    set(PIPEMODE_SUPPORT_COMPILE_OPTIONS -fno-sanitize=all)
elseif(PIPEMODE_SANITIZER STREQUAL "tsan")
    set(PIPEMODE_SUPPORT_COMPILE_OPTIONS ${PIPEMODE_SANITIZER_COMPILE_OPTIONS})
endif()

# The linker for our own executables. Each test links a debug build of Asio, libcurl and Catch2
# code (30-40 MB objects): lld links one in a fifth of the CPU time of the default GNU ld
# (0.3 s against 1.4 s for tests/remote/object_stream), and a preset links some 70 of them.
# Debian: lld (scripts/lib/deps.sh). Empty, or a linker the compiler cannot use, keeps the
# compiler's default.
set(PIPEMODE_LINKER "lld" CACHE STRING
    "Linker for pipemode's own tests, examples and benchmarks (-fuse-ld=...); empty for the compiler's default")
set(PIPEMODE_LINKER_OPTIONS)
if(PIPEMODE_LINKER)
    include(CheckLinkerFlag)
    check_linker_flag(CXX "-fuse-ld=${PIPEMODE_LINKER}" PIPEMODE_HAVE_LINKER_${PIPEMODE_LINKER})
    if(PIPEMODE_HAVE_LINKER_${PIPEMODE_LINKER})
        set(PIPEMODE_LINKER_OPTIONS "-fuse-ld=${PIPEMODE_LINKER}")
    else()
        message(STATUS "pipemode: the compiler cannot link with -fuse-ld=${PIPEMODE_LINKER} "
            "(Debian: install ${PIPEMODE_LINKER}); using its default linker")
    endif()
endif()

# Applies the warnings, the sanitizer and the linker to every target created from here on in the
# calling directory and its subdirectories.
function(pipemode_use_dev_options)
    add_compile_options(${PIPEMODE_WARNING_OPTIONS} ${PIPEMODE_SANITIZER_COMPILE_OPTIONS})
    add_link_options(${PIPEMODE_SANITIZER_LINK_OPTIONS} ${PIPEMODE_LINKER_OPTIONS})
endfunction()
