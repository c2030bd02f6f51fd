// pipemode: the cache in process memory: the entries every caching store of a process without a
// directory shares, with the bytes in use and the items being written.
#pragma once

#include <pipemode/config.hpp>
#include <pipemode/cache/detail/cache_directory.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pipemode::cache::detail {

/// A committed item held in memory: its key and its bytes, shared with the sources reading it.
struct memory_entry {
    entry_key key;
    std::shared_ptr<const std::vector<std::byte>> bytes;
};

/// The bytes an item counts against a memory budget: the item and its key text.
inline std::uint64_t memory_charge(std::uint64_t item_bytes, std::size_t key_bytes) noexcept { return item_bytes + key_bytes; }

/// The memory cache of a process, the counterpart of a cache directory: every `caching_store`
/// without a directory, on any thread, reserves, commits and finds items here, so that the
/// readers of one process (one per epoch, as the example trainers make them, or several at
/// once) share what any of them read. Thread-safe: every member takes the mutex.
class memory_cache {
public:
    /// The one of this process. Never destroyed before exit, so a source still reading an
    /// entry at exit is not left with a dangling cache.
    static memory_cache& process()
    {
        static memory_cache* const instance = new memory_cache;
        return *instance;
    }

    /// The entry of `key_text`, or null.
    std::shared_ptr<const std::vector<std::byte>> find(const std::string& key_text) const
    {
        const std::lock_guard lock(mutex_);
        const auto it = entries_.find(key_text);
        return it == entries_.end() ? nullptr : it->second.bytes;
    }

    /// Reserves `charge` bytes for the item of `key_text`: only when it is neither held nor
    /// being written, and the bytes in use stay within `budget` with it. `used` is set to the
    /// bytes in use (with the reservation, when made).
    refusal reserve(const std::string& key_text, std::uint64_t charge, std::uint64_t budget, std::uint64_t& used)
    {
        const std::lock_guard lock(mutex_);
        used = used_;
        if (entries_.contains(key_text))
            return refusal::present;
        if (writing_.contains(key_text))
            return refusal::being_written;
        if (used_ + charge > budget)
            return refusal::budget;
        used_ += charge;
        used = used_;
        writing_.insert(key_text);
        return refusal::none;
    }

    /// Makes a reserved item an entry: readers planned from now on find it.
    void commit(entry_key key, std::string key_text, std::shared_ptr<const std::vector<std::byte>> bytes)
    {
        const std::lock_guard lock(mutex_);
        writing_.erase(key_text);
        entries_.emplace(std::move(key_text), memory_entry{std::move(key), std::move(bytes)});
    }

    /// Gives a reservation back (an item read only in part).
    void abandon(const std::string& key_text, std::uint64_t charge)
    {
        const std::lock_guard lock(mutex_);
        if (writing_.erase(key_text) != 0)
            used_ -= charge;
    }

    /// Removes the entries of `store` whose object is listed with another size or ETag: the
    /// object changed, and its old bytes must never be served.
    template <class Listed>
    void remove_changed(const std::string& store, const Listed& listed)
    {
        const std::lock_guard lock(mutex_);
        for (auto it = entries_.begin(); it != entries_.end();) {
            const entry_key& k = it->second.key;
            const auto l = k.store == store ? listed.find(k.uri) : listed.end();
            if (l != listed.end() && (l->second.size != k.size || l->second.etag != k.etag)) {
                used_ -= memory_charge(k.bytes(), it->first.size());
                it = entries_.erase(it);
            } else {
                ++it;
            }
        }
    }

    /// Bytes in use: entries and reservations.
    std::uint64_t bytes() const
    {
        const std::lock_guard lock(mutex_);
        return used_;
    }

    /// Forgets every entry (items being written stay reserved). Sources reading an entry keep
    /// its bytes until they are done.
    void clear()
    {
        const std::lock_guard lock(mutex_);
        for (const auto& [text, e] : entries_)
            used_ -= memory_charge(e.key.bytes(), text.size());
        entries_.clear();
    }

private:
    memory_cache() = default;

    mutable std::mutex mutex_;
    std::unordered_map<std::string, memory_entry> entries_;  ///< by key text
    std::unordered_set<std::string> writing_;                ///< key texts with a reservation
    std::uint64_t used_ = 0;
};

} // namespace pipemode::cache::detail
