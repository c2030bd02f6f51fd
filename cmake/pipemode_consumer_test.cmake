# Builds and runs one of the consumer projects in tests/consumers/, proving that a downstream
# project can use pipemode one way: add_subdirectory, FetchContent or find_package after
# cmake --install. Run by CTest as
#   cmake -DMODE=<add_subdirectory|fetch_content|find_package> -DPIPEMODE_SOURCE_DIR=...
#         -DPIPEMODE_BINARY_DIR=... -DWORK_DIR=... -DGENERATOR=... [-DMAKE_PROGRAM=...]
#         [-DCXX_COMPILER=...] [-DBUILD_TYPE=...] -P pipemode_consumer_test.cmake
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS MODE PIPEMODE_SOURCE_DIR PIPEMODE_BINARY_DIR WORK_DIR GENERATOR)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "pipemode_consumer_test.cmake: -D${var}=... is required")
    endif()
endforeach()

set(consumer_source "${PIPEMODE_SOURCE_DIR}/tests/consumers/${MODE}")
set(consumer_build "${WORK_DIR}/${MODE}/build")
set(prefix "${WORK_DIR}/${MODE}/prefix")

if(NOT EXISTS "${consumer_source}/CMakeLists.txt")
    message(FATAL_ERROR "no consumer project at ${consumer_source}")
endif()

# Runs a command; on failure prints its output and fails the test.
function(run what)
    execute_process(COMMAND ${ARGN}
        RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}\n${err}")
    endif()
    set(run_output "${out}" PARENT_SCOPE)
endfunction()

# A fresh consumer build every time: a cache left from an earlier run would hide a change in
# pipemode's option defaults.
file(REMOVE_RECURSE "${consumer_build}" "${prefix}")

set(configure_args -G "${GENERATOR}" "-DPIPEMODE_SOURCE_DIR=${PIPEMODE_SOURCE_DIR}")
if(MAKE_PROGRAM)
    list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
    list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(BUILD_TYPE)
    list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()

if(MODE STREQUAL "find_package")
    # Only the library's own component: the install must not depend on tools being built.
    run("cmake --install" "${CMAKE_COMMAND}" --install "${PIPEMODE_BINARY_DIR}"
        --prefix "${prefix}" --component pipemode)
    foreach(file IN ITEMS
            include/pipemode/config.hpp
            include/pipemode/core/batch.hpp
            include/pipemode/core/error.hpp)
        if(NOT EXISTS "${prefix}/${file}")
            message(FATAL_ERROR "cmake --install did not install ${file}")
        endif()
    endforeach()
    file(GLOB_RECURSE config_files "${prefix}/*/pipemodeConfig.cmake")
    file(GLOB_RECURSE version_files "${prefix}/*/pipemodeConfigVersion.cmake")
    file(GLOB_RECURSE target_files "${prefix}/*/pipemodeTargets.cmake")
    if(NOT config_files OR NOT version_files OR NOT target_files)
        message(FATAL_ERROR "cmake --install did not install the package files under ${prefix}")
    endif()
    list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${prefix}")
endif()

run("configuring the ${MODE} consumer" "${CMAKE_COMMAND}" -S "${consumer_source}" -B "${consumer_build}" ${configure_args})
run("building the ${MODE} consumer" "${CMAKE_COMMAND}" --build "${consumer_build}")
run("running the ${MODE} consumer" "${consumer_build}/pipemode_consumer")
message(STATUS "consumer says: ${run_output}")

set(expected "pipemode consumer: batch of 0 rows; memory:consumer, byte 16, record 2: bad RecordIO magic number")
string(FIND "${run_output}" "${expected}" at)
if(at EQUAL -1)
    message(FATAL_ERROR "the ${MODE} consumer printed\n  ${run_output}\nexpected\n  ${expected}")
endif()

# pipemode was not the top-level project, so none of its developer parts may be on.
file(STRINGS "${consumer_build}/CMakeCache.txt" cache)
if(MODE STREQUAL "find_package")
    list(FILTER cache INCLUDE REGEX "^pipemode_DIR:")
    if(NOT cache MATCHES "=${prefix}/")
        message(FATAL_ERROR "find_package found pipemode elsewhere than the test prefix: ${cache}")
    endif()
else()
    foreach(part IN ITEMS TESTS EXAMPLES BENCHMARKS)
        set(lines "${cache}")
        list(FILTER lines INCLUDE REGEX "^PIPEMODE_BUILD_${part}:")
        if(NOT lines STREQUAL "PIPEMODE_BUILD_${part}:BOOL=OFF")
            message(FATAL_ERROR "pipemode as a subproject set '${lines}'; it must default to OFF")
        endif()
    endforeach()
    if(EXISTS "${consumer_build}/CTestTestfile.cmake")
        message(FATAL_ERROR "the consumer build registered tests: pipemode's tests leaked into it")
    endif()
endif()
