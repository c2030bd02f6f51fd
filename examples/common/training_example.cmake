# pipemode_training_example(NAME): the build and tests of a training example under
# examples/NAME/ (pca, kmeans), shared so that both are built and checked the same way:
#
#   pipemode-NAME          the program (NAME_main.cpp), linked with pipemode_training (the
#                          compiled training library of examples/common: channels, sources,
#                          HTTP/S3, MPI, metrics, model files, prediction) and Eigen
#   test_examples_NAME     its unit tests (NAME.test.cpp, Catch2), registered case by case as
#                          "examples/NAME:<case>"
#   "examples/NAME: reference"      NAME_test.py: the program's output against a NumPy
#                                   reference on small data, dense and sparse (/usr/bin/python3
#                                   with numpy; skipped, as CTest's SKIP, when it is missing)
#   "examples/NAME: mpi reference"  the same under `mpirun -np 3`, against the single process;
#                                   registered only when MPI was found
function(pipemode_training_example name)
    set(target pipemode-${name})
    add_executable(${target} ${name}_main.cpp)
    # Eigen (Debian's libeigen3-dev, header-only) for dense linear algebra.
    find_package(Eigen3 3.3 REQUIRED NO_MODULE)
    target_link_libraries(${target} PRIVATE pipemode_training Eigen3::Eigen)
    pipemode_use_precompiled_headers(${target})
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
            --program "$<TARGET_FILE:${target}>" --work "${work}/single")
    set_tests_properties("examples/${name}: reference" PROPERTIES
        LABELS "examples" TIMEOUT 120 SKIP_RETURN_CODE 77)
    find_program(PIPEMODE_MPIRUN NAMES mpirun)
    if(MPI_CXX_FOUND AND PIPEMODE_MPIRUN)
        add_test(NAME "examples/${name}: mpi reference"
            COMMAND ${python} "${CMAKE_CURRENT_SOURCE_DIR}/${name}_test.py"
                --program "$<TARGET_FILE:${target}>" --work "${work}/mpi" --mpirun "${PIPEMODE_MPIRUN}")
        set_tests_properties("examples/${name}: mpi reference" PROPERTIES
            LABELS "examples;mpi" TIMEOUT 180 SKIP_RETURN_CODE 77)
        if(PIPEMODE_MPI_SANITIZER_ENVIRONMENT)
            set_tests_properties("examples/${name}: mpi reference" PROPERTIES
                ENVIRONMENT "${PIPEMODE_MPI_SANITIZER_ENVIRONMENT}")
        endif()
    endif()
    if(PIPEMODE_SANITIZER_ENVIRONMENT)
        set_tests_properties("examples/${name}: reference" PROPERTIES ENVIRONMENT "${PIPEMODE_SANITIZER_ENVIRONMENT}")
    endif()
endfunction()
