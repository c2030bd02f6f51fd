# Checks that the folders of include/pipemode include only the layers below them (see
# docs/architecture.md, "Layers"): the layering is a rule the compiler does not enforce, and a
# single stray #include (http/ reaching up into s3/, sources/ into pipeline/) makes a cycle that
# nobody notices until the folders can no longer be used or tested apart. Run by CTest as
#   cmake -DINCLUDE_DIR=<source>/include/pipemode -P pipemode_layering_test.cmake
# which fails, listing every offending #include, when a header breaks the table below; or as
#   cmake -DSELF_TEST_DIR=<scratch directory> -P pipemode_layering_test.cmake
# which checks the checker: it writes a small tree with known violations and fails unless
# exactly those are reported.
cmake_minimum_required(VERSION 3.25)

# The layers, bottom to top, and what each may include. Same-layer includes are allowed; a
# layer never includes one above it or one beside it that is not listed.
#
#   base         config.hpp, core/, detail/, concurrency/: vocabulary, no I/O
#   local        framing/, parsers/, sinks/, sources/: local stages, no pipeline
#   pipeline     pipeline/: composing stages, planning, data sets, the reader
#   cache        cache/: the local cache that wraps any object store (never a concrete remote one)
#   fanout       fanout/: one download per host, shared with the host's processes (beside cache/)
#   http         http/: transport only (client, retry on statuses and transport errors)
#   s3_protocol  s3/ except the store headers: URIs, XML, errors, SigV4, credentials, listings
#   remote       remote/: the object stream and the HTTP store
#   s3_store     s3/data_set.hpp, s3/store.hpp (and their impl/): S3 data sets over remote/
#   top          sagemaker/, pipemode.hpp
set(pipemode_layers base local pipeline cache fanout http s3_protocol remote s3_store top)
set(pipemode_may_include_base base)
set(pipemode_may_include_local base local)
set(pipemode_may_include_pipeline base local pipeline)
set(pipemode_may_include_cache base local pipeline cache)
set(pipemode_may_include_fanout base local pipeline fanout)
set(pipemode_may_include_http base local http)
set(pipemode_may_include_s3_protocol base local http s3_protocol)
set(pipemode_may_include_remote base local pipeline cache fanout http s3_protocol remote)
set(pipemode_may_include_s3_store base local pipeline cache fanout http s3_protocol remote s3_store)
set(pipemode_may_include_top base local pipeline cache fanout http s3_protocol remote s3_store top)

# Sets `out` to the layer of `path` (relative to include/pipemode), or to "" when no layer
# holds it: a new folder must be placed in the table before it is used.
function(pipemode_layer_of path out)
    set(layer "")
    if(path MATCHES "^(config\\.hpp|core/|detail/|concurrency/)")
        set(layer base)
    elseif(path MATCHES "^(framing|parsers|sinks|sources)/")
        set(layer local)
    elseif(path MATCHES "^pipeline/")
        set(layer pipeline)
    elseif(path MATCHES "^cache/")
        set(layer cache)
    elseif(path MATCHES "^fanout/")
        set(layer fanout)
    elseif(path MATCHES "^http/")
        set(layer http)
    elseif(path MATCHES "^s3/((impl|detail)/)?(data_set|store)\\.hpp$")
        set(layer s3_store)
    elseif(path MATCHES "^s3/")
        set(layer s3_protocol)
    elseif(path MATCHES "^remote/")
        set(layer remote)
    elseif(path MATCHES "^(sagemaker/|pipemode\\.hpp$)")
        set(layer top)
    endif()
    set(${out} "${layer}" PARENT_SCOPE)
endfunction()

# Scans every header below `root` (an include/pipemode directory) and sets `out` to one line
# per broken rule: "<header>:<line>: <layer> may not include <target> (<layer>)".
function(pipemode_check_layers root out)
    file(GLOB_RECURSE headers RELATIVE "${root}" "${root}/*.hpp" "${root}/*.ipp" "${root}/*.h")
    list(SORT headers)
    set(problems)
    foreach(header IN LISTS headers)
        pipemode_layer_of("${header}" from)
        if(from STREQUAL "")
            list(APPEND problems "${header}: its folder has no layer, add it to the table in cmake/pipemode_layering_test.cmake and docs/architecture.md")
            continue()
        endif()
        file(STRINGS "${root}/${header}" lines)
        set(number 0)
        foreach(line IN LISTS lines)
            math(EXPR number "${number} + 1")
            if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*[<\"]pipemode/([^>\"]+)[>\"]")
                continue()
            endif()
            set(target "${CMAKE_MATCH_1}")
            pipemode_layer_of("${target}" to)
            if(to STREQUAL "")
                list(APPEND problems "${header}:${number}: includes ${target}, whose folder has no layer")
            elseif(NOT to IN_LIST pipemode_may_include_${from})
                list(APPEND problems "${header}:${number}: ${from} may not include ${target} (${to})")
            endif()
        endforeach()
    endforeach()
    set(${out} "${problems}" PARENT_SCOPE)
endfunction()

if(DEFINED SELF_TEST_DIR)
    # A tree with one allowed include of each kind that was once wrong, and the violations the
    # check exists for; the check must report exactly the latter.
    set(root "${SELF_TEST_DIR}/include/pipemode")
    file(REMOVE_RECURSE "${SELF_TEST_DIR}")
    file(WRITE "${root}/http/retry.hpp" "#include <pipemode/config.hpp>\n#include <pipemode/s3/error_response.hpp>\n")
    file(WRITE "${root}/http/client.hpp" "#include <pipemode/pipeline/source_provider.hpp>\n")
    file(WRITE "${root}/sources/gunzip.hpp" "#include <pipemode/sources/gzip_source.hpp>\n  #  include \"pipemode/pipeline/data_set.hpp\"\n")
    file(WRITE "${root}/s3/error_response.hpp" "#include <pipemode/http/retry.hpp>\n#include <pipemode/remote/object_stream.hpp>\n")
    file(WRITE "${root}/s3/store.hpp" "#include <pipemode/remote/http_store.hpp>\n#include <pipemode/s3/data_set.hpp>\n")
    file(WRITE "${root}/s3/listing.hpp" "#include <pipemode/s3/store.hpp>\n")
    file(WRITE "${root}/pipeline/reader.hpp" "#include <pipemode/sources/file_source.hpp>\n#include <pipemode/http/client.hpp>\n")
    file(WRITE "${root}/remote/object_stream.hpp" "#include <pipemode/pipeline/source_provider.hpp>\n#include <pipemode/s3/error_response.hpp>\n#include <pipemode/sagemaker/channel.hpp>\n")
    file(WRITE "${root}/widgets/gadget.hpp" "#include <pipemode/config.hpp>\n")
    file(WRITE "${root}/core/batch.hpp" "#include <pipemode/gizmos/thing.hpp>\n")
    file(WRITE "${root}/pipemode.hpp" "#include <pipemode/sagemaker/agent.hpp>\n#include <pipemode/s3/store.hpp>\n")
    pipemode_check_layers("${root}" found)
    set(expected
        "core/batch.hpp:1: includes gizmos/thing.hpp, whose folder has no layer"
        "http/client.hpp:1: http may not include pipeline/source_provider.hpp (pipeline)"
        "http/retry.hpp:2: http may not include s3/error_response.hpp (s3_protocol)"
        "pipeline/reader.hpp:2: pipeline may not include http/client.hpp (http)"
        "remote/object_stream.hpp:3: remote may not include sagemaker/channel.hpp (top)"
        "s3/error_response.hpp:2: s3_protocol may not include remote/object_stream.hpp (remote)"
        "s3/listing.hpp:1: s3_protocol may not include s3/store.hpp (s3_store)"
        "sources/gunzip.hpp:2: local may not include pipeline/data_set.hpp (pipeline)"
        "widgets/gadget.hpp: its folder has no layer, add it to the table in cmake/pipemode_layering_test.cmake and docs/architecture.md")
    if(NOT found STREQUAL expected)
        list(JOIN found "\n  " found_text)
        list(JOIN expected "\n  " expected_text)
        message(FATAL_ERROR "the layering check reported\n  ${found_text}\nexpected\n  ${expected_text}")
    endif()
    list(LENGTH expected count)
    message(STATUS "the layering check reports each of the ${count} planted violations and nothing else")
    return()
endif()

if(NOT DEFINED INCLUDE_DIR)
    message(FATAL_ERROR "pipemode_layering_test.cmake: -DINCLUDE_DIR=<source>/include/pipemode is required")
endif()
if(NOT IS_DIRECTORY "${INCLUDE_DIR}")
    message(FATAL_ERROR "pipemode_layering_test.cmake: ${INCLUDE_DIR} is not a directory")
endif()
pipemode_check_layers("${INCLUDE_DIR}" problems)
if(problems)
    list(LENGTH problems count)
    list(JOIN problems "\n  " text)
    message(FATAL_ERROR "${count} #include(s) break the layering of include/pipemode "
        "(docs/architecture.md, \"Layers\"):\n  ${text}")
endif()
message(STATUS "include/pipemode: every #include follows the layers")
