# pipemode_training_example(NAME [PROGRAM program] [OPTIMIZE level] [PYTHON_PATH dir]
#                           [REFERENCE_TIMEOUT seconds]): the build and tests of a training
# example under examples/NAME/ (pca, kmeans, linear_learner), shared so that every trainer is
# built and checked the same way:
#
#   pipemode-NAME          the program (NAME_main.cpp), linked with pipemode_training (the
#                          compiled training library of examples/common: channels, sources,
#                          HTTP/S3, MPI, metrics, model files, prediction) and Eigen; PROGRAM
#                          names it otherwise (pipemode-linear-learner for linear_learner)
#   test_examples_NAME     its unit tests (NAME.test.cpp, Catch2), registered case by case as
#                          "examples/NAME:<case>"
#   "examples/NAME: reference"      NAME_test.py: the program's output against a NumPy
#                                   reference on small data, dense and sparse (/usr/bin/python3
#                                   with numpy; skipped, as CTest's SKIP, when it is missing);
#                                   PYTHON_PATH is passed as --python-path (where the test
#                                   finds scikit-learn and SciPy, which apt cannot install here)
#   "examples/NAME: mpi reference"  the same under `mpirun -np 3`, against the single process;
#                                   registered only when MPI was found
#
# OPTIMIZE (e.g. -O2) compiles the program at that level in every preset, sanitizers included,
# and without the precompiled header, which GCC refuses under other -O flags (-Winvalid-pch, an
# error here): for a trainer whose Eigen products at -O0 would make the reference test's
# trainings, not its checks, most of its time. REFERENCE_TIMEOUT (default 120) bounds the
# reference tests; the MPI one gets 60 s more.
function(pipemode_training_example name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "PROGRAM;OPTIMIZE;PYTHON_PATH;REFERENCE_TIMEOUT" "")
    set(target pipemode-${name})
    if(arg_PROGRAM)
        set(target ${arg_PROGRAM})
    endif()
    set(timeout 120)
    if(arg_REFERENCE_TIMEOUT)
        set(timeout ${arg_REFERENCE_TIMEOUT})
    endif()
    math(EXPR mpi_timeout "${timeout} + 60")
    set(python_args)
    if(arg_PYTHON_PATH)
        set(python_args --python-path "${arg_PYTHON_PATH}")
    endif()

    add_executable(${target} ${name}_main.cpp)
    # Eigen (Debian's libeigen3-dev, header-only) for dense linear algebra.
    find_package(Eigen3 3.3 REQUIRED NO_MODULE)
    target_link_libraries(${target} PRIVATE pipemode_training Eigen3::Eigen)
    if(arg_OPTIMIZE)
        target_compile_options(${target} PRIVATE ${arg_OPTIMIZE})
    else()
        pipemode_use_precompiled_headers(${target})
    endif()
    set_target_properties(${target} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
    # A trainer written against the header-only training_program.hpp (not yet ported to
    # training.hpp) compiles the URL and S3 sources itself.
    if(TARGET pipemode::http)
        target_link_libraries(${target} PRIVATE pipemode::http)
    else()
        target_compile_definitions(${target} PRIVATE PIPEMODE_TOOLS_NO_HTTP=1)
    endif()

    if(NOT PIPEMODE_BUILD_TESTS)
        return()
    endif()

    set(unit test_examples_${name})
    add_executable(${unit} ${name}.test.cpp)
    target_link_libraries(${unit} PRIVATE pipemode_catch_main pipemode_training Eigen3::Eigen)
    pipemode_use_precompiled_headers(${unit})
    catch_discover_tests(${unit}
        TEST_PREFIX "examples/${name}:"
        PROPERTIES LABELS "examples" TIMEOUT 120)

    find_package(MPI COMPONENTS CXX QUIET)
    set(python /usr/bin/python3)
    set(work "${CMAKE_CURRENT_BINARY_DIR}/${name}_test_work")
    add_test(NAME "examples/${name}: reference"
        COMMAND ${python} "${CMAKE_CURRENT_SOURCE_DIR}/${name}_test.py"
            --program "$<TARGET_FILE:${target}>" --work "${work}/single" ${python_args})
    set_tests_properties("examples/${name}: reference" PROPERTIES
        LABELS "examples" TIMEOUT ${timeout} SKIP_RETURN_CODE 77)
    find_program(PIPEMODE_MPIRUN NAMES mpirun)
    if(MPI_CXX_FOUND AND PIPEMODE_MPIRUN)
        add_test(NAME "examples/${name}: mpi reference"
            COMMAND ${python} "${CMAKE_CURRENT_SOURCE_DIR}/${name}_test.py"
                --program "$<TARGET_FILE:${target}>" --work "${work}/mpi" ${python_args}
                --mpirun "${PIPEMODE_MPIRUN}")
        set_tests_properties("examples/${name}: mpi reference" PROPERTIES
            LABELS "examples;mpi" TIMEOUT ${mpi_timeout} SKIP_RETURN_CODE 77)
        if(PIPEMODE_MPI_SANITIZER_ENVIRONMENT)
            set_tests_properties("examples/${name}: mpi reference" PROPERTIES
                ENVIRONMENT "${PIPEMODE_MPI_SANITIZER_ENVIRONMENT}")
        endif()
    endif()
    if(PIPEMODE_SANITIZER_ENVIRONMENT)
        set_tests_properties("examples/${name}: reference" PROPERTIES ENVIRONMENT "${PIPEMODE_SANITIZER_ENVIRONMENT}")
    endif()
endfunction()
