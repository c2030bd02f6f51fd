// The one translation unit that holds Catch2's main(). Every test executable links it, so each
// test file compiles only its own cases.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
