// A downstream program: uses pipemode's vocabulary the way a training job would, to prove the
// headers and targets work from outside pipemode's own build.
#include <pipemode/core/batch.hpp>
#include <pipemode/core/error.hpp>

#include <iostream>

int main()
{
    pipemode::batch batch;
    pipemode::data_error error(pipemode::errc::bad_magic, {"memory:consumer", 16, 2});
    std::cout << "pipemode consumer: batch of " << batch.size() << " rows; " << error.what() << '\n';
    return batch.empty() && error.code() == pipemode::errc::bad_magic ? 0 : 1;
}
