// pipemode: a fixed set of threads that run one job together and are joined after each.
#pragma once

#include <pipemode/config.hpp>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace pipemode {

/// Runs a job on `size()` threads at once, the calling thread being one of them, and returns
/// when every thread has finished it: the shape of the reader's decode workers, which parse
/// the batches of one read together and then deliver them in order.
///
/// The extra threads are started once and sleep between jobs. Starting a job costs one
/// notification and allocates nothing, so it may run for every read of a few MiB.
///
/// Thread safety: `run()` is called by one thread at a time (the owner's); the job it is given
/// runs on every thread at once and must divide its work itself (an atomic counter of work
/// items is the usual way).
class fork_join_pool {
public:
    /// A pool of `threads` threads in all: the caller of `run()` and `threads - 1` more.
    /// `threads` of 0 is taken as 1 (no extra thread: `run()` is a plain call).
    explicit fork_join_pool(std::size_t threads)
    {
        const std::size_t extra = threads > 1 ? threads - 1 : 0;
        threads_.reserve(extra);
        for (std::size_t i = 0; i < extra; ++i)
            threads_.emplace_back([this, w = i + 1] { serve(w); });
    }

    fork_join_pool(const fork_join_pool&) = delete;
    fork_join_pool& operator=(const fork_join_pool&) = delete;

    /// Stops the extra threads and joins them; a job is never running then (`run()` returns
    /// only once it is over).
    ~fork_join_pool()
    {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        start_.notify_all();
        for (auto& t : threads_)
            t.join();
    }

    /// Threads a job runs on, the caller's included.
    std::size_t size() const noexcept { return threads_.size() + 1; }

    /// Calls `job(w)` on every thread, with `w` from 0 (the calling thread) to `size() - 1`,
    /// and returns when every call has returned. If calls throw, the first exception caught is
    /// rethrown here after all of them have ended.
    template <class Job>
        requires std::is_invocable_v<Job&, std::size_t>
    void run(Job& job)
    {
        if (threads_.empty()) {
            job(std::size_t{0});
            return;
        }
        {
            std::lock_guard lock(mutex_);
            job_ = &job;
            call_ = [](void* j, std::size_t w) { (*static_cast<Job*>(j))(w); };
            running_ = threads_.size();
            error_ = nullptr;
            ++generation_;
        }
        start_.notify_all();
        try {
            job(std::size_t{0});
        } catch (...) {
            std::lock_guard lock(mutex_);
            if (!error_)
                error_ = std::current_exception();
        }
        std::unique_lock lock(mutex_);
        // Every extra thread must be done with the job (it lives in the caller's frame)
        // before this returns, whatever happened on this thread.
        done_.wait(lock, [&] { return running_ == 0; });
        job_ = nullptr;
        if (auto e = std::exchange(error_, nullptr))
            std::rethrow_exception(e);
    }

private:
    void serve(std::size_t w)
    {
        std::uint64_t seen = 0;
        std::unique_lock lock(mutex_);
        for (;;) {
            start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_)
                return;
            seen = generation_;
            void* job = job_;
            void (*call)(void*, std::size_t) = call_;
            lock.unlock();
            std::exception_ptr failure;
            try {
                call(job, w);
            } catch (...) {
                failure = std::current_exception();
            }
            lock.lock();
            if (failure && !error_)
                error_ = std::move(failure);
            if (--running_ == 0)
                done_.notify_one();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable start_;  // a job was posted, or the pool stops
    std::condition_variable done_;   // the last extra thread finished the job
    // Guarded by mutex_.
    void* job_ = nullptr;
    void (*call_)(void*, std::size_t) = nullptr;
    std::size_t running_ = 0;  // extra threads still in the current job
    std::uint64_t generation_ = 0;
    std::exception_ptr error_;
    bool stopping_ = false;
};

} // namespace pipemode
