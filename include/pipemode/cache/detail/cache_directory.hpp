// pipemode: the files of a cache directory, shared by every process of a host: entries,
// partial files, the lock and the budget. Blocking calls only; run them off the network thread.
#pragma once

#include <pipemode/config.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pipemode::cache {

/// What a file system has: free bytes an unprivileged writer may use, and its size.
struct file_system_space {
    std::uint64_t free = 0;
    std::uint64_t total = 0;
};

/// Measures the file system holding a directory (`statvfs()` by default; tests inject one).
using space_function = std::function<file_system_space(const std::string& directory)>;

} // namespace pipemode::cache

namespace pipemode::cache::detail {

/// An entry file is the item's bytes, then the key (text), then this trailer: key length,
/// item length (little-endian u64 each) and the magic. The key travels inside the file, so the
/// rename that commits the bytes commits the key with them, and a restart rebuilds the index
/// from the directory alone.
inline constexpr std::string_view trailer_magic = "PMCACHE1";
inline constexpr std::size_t trailer_fixed_bytes = 24;

/// What identifies a cached item: the store, the object (URI, size, ETag) and the byte range.
struct entry_key {
    std::string store;
    std::string uri;
    std::uint64_t size = 0;
    std::string etag;
    std::uint64_t first = 0;
    std::uint64_t end = 0;  ///< one past the item's last byte

    std::uint64_t bytes() const noexcept { return end - first; }

    std::string text() const
    {
        std::ostringstream out;
        out << "pipemode-cache-key 1\n" << store << '\n' << uri << '\n' << size << '\n' << etag << '\n' << first << '\n' << end << '\n';
        return out.str();
    }

    static std::optional<entry_key> parse(const std::string& text)
    {
        std::istringstream in(text);
        std::string line;
        entry_key k;
        if (!std::getline(in, line) || line != "pipemode-cache-key 1")
            return std::nullopt;
        if (!std::getline(in, k.store) || !std::getline(in, k.uri) || !(in >> k.size) || !in.ignore(1)
            || !std::getline(in, k.etag) || !(in >> k.first >> k.end) || k.end < k.first)
            return std::nullopt;
        return k;
    }
};

/// FNV-1a, 64 bits: spreads keys over file names; the key inside the file settles collisions.
inline std::uint64_t hash_key(std::string_view s) noexcept
{
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

/// The entry's file name stem: 16 hex digits of the key's hash.
inline std::string entry_stem(const std::string& key_text)
{
    static constexpr char hex[] = "0123456789abcdef";
    std::uint64_t h = hash_key(key_text);
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i, h >>= 4)
        out[static_cast<std::size_t>(i)] = hex[h & 15];
    return out;
}

/// The bytes an entry's file takes: item, key and trailer.
inline std::uint64_t entry_file_bytes(std::uint64_t item_bytes, std::size_t key_bytes) noexcept
{
    return item_bytes + key_bytes + trailer_fixed_bytes;
}

/// A process named by its id and its start time (clock ticks since boot, from
/// `/proc/<pid>/stat`), so that a reused id is not taken for the writer that died.
struct process_tag {
    long pid = 0;
    std::uint64_t start = 0;
};

/// The start time of process `pid`, or empty when it does not exist.
inline std::optional<std::uint64_t> process_start_time(long pid)
{
    // Plain read(2), not a stream: a process that exits while its file is read makes read()
    // fail with ESRCH, which libstdc++'s filebuf turns into an exception.
    const std::string path = "/proc/" + std::to_string(pid) + "/stat";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    std::string text;
    char buffer[512];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ::close(fd);
            return std::nullopt;
        }
        if (n == 0)
            break;
        text.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    const auto paren = text.rfind(')');
    if (paren == std::string::npos)
        return std::nullopt;
    // Field 22 (starttime) is the 20th after the command name's closing parenthesis.
    std::istringstream fields(text.substr(paren + 1));
    std::string field;
    for (int i = 0; i < 20; ++i)
        if (!(fields >> field))
            return std::nullopt;
    try {
        return std::stoull(field);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

inline process_tag this_process()
{
    const long pid = static_cast<long>(::getpid());
    return {pid, process_start_time(pid).value_or(0)};
}

/// Whether the process that wrote a partial file is still running.
inline bool process_alive(const process_tag& p)
{
    if (::kill(static_cast<pid_t>(p.pid), 0) != 0 && errno == ESRCH)
        return false;
    const auto start = process_start_time(p.pid);
    // Without /proc the id alone decides; with it, another start time is another process.
    return !start || p.start == 0 || *start == p.start;
}

/// The partial file's name: `<stem>.<pid>.<start>.partial`.
inline std::string partial_name(const std::string& stem, const process_tag& p)
{
    return stem + "." + std::to_string(p.pid) + "." + std::to_string(p.start) + ".partial";
}

/// Parses a partial file's name; empty when `name` is not one.
inline std::optional<std::pair<std::string, process_tag>> parse_partial_name(std::string_view name)
{
    if (!name.ends_with(".partial") || name.size() < 17 || name[16] != '.')
        return std::nullopt;
    std::string rest(name.substr(17, name.size() - 17 - 8));
    const auto dot = rest.find('.');
    if (dot == std::string::npos)
        return std::nullopt;
    try {
        return std::pair{std::string(name.substr(0, 16)), process_tag{std::stol(rest.substr(0, dot)), std::stoull(rest.substr(dot + 1))}};
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

inline std::system_error os_error(const std::string& what)
{
    return std::system_error(errno, std::generic_category(), "pipemode::cache: " + what);
}

/// The cache-wide lock: `flock()` on `<dir>/lock`, held while the object lives. The kernel
/// drops the lock of a process that dies, so a crash never leaves a stale lock behind.
class directory_lock {
public:
    explicit directory_lock(const std::string& dir)
    {
        const std::string path = dir + "/lock";
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0)
            throw os_error("cannot open the cache's lock file " + path);
        while (::flock(fd_, LOCK_EX) != 0)
            if (errno != EINTR) {
                const auto e = os_error("cannot lock " + path);
                ::close(fd_);
                throw e;
            }
    }
    directory_lock(const directory_lock&) = delete;
    directory_lock& operator=(const directory_lock&) = delete;
    ~directory_lock() { ::close(fd_); }  // closing the only descriptor releases the lock

private:
    int fd_ = -1;
};

/// A committed entry found in the directory.
struct entry_info {
    std::string key_text;
    std::uint64_t item_bytes = 0;
    std::uint64_t file_bytes = 0;
};

/// What a scan of the directory found.
struct scan_result {
    std::unordered_map<std::string, entry_info> entries;  ///< by stem
    std::unordered_set<std::string> writing;              ///< stems with a live writer
    std::uint64_t used = 0;                               ///< bytes of entries and live partials
};

/// Reads the key of an entry file; empty when the file is not a whole entry.
inline std::optional<entry_info> read_entry(const std::string& path)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    std::optional<entry_info> out;
    struct stat st {};
    unsigned char t[trailer_fixed_bytes];
    if (::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) >= trailer_fixed_bytes
        && ::pread(fd, t, sizeof t, st.st_size - static_cast<off_t>(sizeof t)) == static_cast<ssize_t>(sizeof t)
        && std::memcmp(t + 16, trailer_magic.data(), 8) == 0) {
        std::uint64_t key_len = 0, item = 0;
        for (int i = 7; i >= 0; --i) {
            key_len = (key_len << 8) | t[i];
            item = (item << 8) | t[8 + i];
        }
        const auto size = static_cast<std::uint64_t>(st.st_size);
        if (key_len < size && item == size - trailer_fixed_bytes - key_len) {
            std::string key(key_len, '\0');
            if (::pread(fd, key.data(), key_len, static_cast<off_t>(item)) == static_cast<ssize_t>(key_len))
                out = entry_info{std::move(key), item, size};
        }
    }
    ::close(fd);
    return out;
}

/// Lists the directory, with the lock held: removes partial files whose writer is dead and
/// entry files that are not whole, and counts the bytes of the rest.
inline scan_result scan(const std::string& dir)
{
    scan_result out;
    DIR* d = ::opendir(dir.c_str());
    if (!d)
        throw os_error("cannot list the cache directory " + dir);
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d))
        names.emplace_back(e->d_name);
    ::closedir(d);
    for (const auto& name : names) {
        const std::string path = dir + "/" + name;
        if (auto partial = parse_partial_name(name)) {
            if (!process_alive(partial->second)) {
                ::unlink(path.c_str());
                continue;
            }
            struct stat st {};
            if (::stat(path.c_str(), &st) == 0) {
                out.used += static_cast<std::uint64_t>(st.st_size);
                out.writing.insert(partial->first);
            }
        } else if (name.size() == 21 && name.ends_with(".data")) {
            if (auto entry = read_entry(path)) {
                out.used += entry->file_bytes;
                out.entries.emplace(name.substr(0, 16), std::move(*entry));
            } else {
                ::unlink(path.c_str());
            }
        }
    }
    return out;
}

/// Measures with `statvfs()`.
inline file_system_space statvfs_space(const std::string& dir)
{
    struct statvfs s {};
    if (::statvfs(dir.c_str(), &s) != 0)
        throw os_error("cannot measure the file system of " + dir);
    return {static_cast<std::uint64_t>(s.f_bavail) * s.f_frsize, static_cast<std::uint64_t>(s.f_blocks) * s.f_frsize};
}

/// The room a writer reserved: its partial file, allocated to the entry's full size.
struct reservation {
    int fd = -1;
    std::string partial;  ///< path
    std::string final;    ///< path
};

/// Why an item was not admitted.
enum class refusal { none, present, being_written, budget, free_space, io };

/// Reserves the file of an entry under the lock: only when the entries and live partials
/// stay within `budget` with it, and the file system keeps `floor` bytes free after it.
/// `used` is set to the bytes in use the scan found (with the reservation, when made).
inline std::optional<reservation> reserve(const std::string& dir, const std::string& key_text, std::uint64_t item_bytes,
                                          std::uint64_t budget, std::uint64_t floor, const space_function& space,
                                          const process_tag& self, refusal& why, std::uint64_t& used)
{
    directory_lock lock(dir);
    scan_result s = scan(dir);
    used = s.used;
    const std::string stem = entry_stem(key_text);
    const auto file_bytes = entry_file_bytes(item_bytes, key_text.size());
    if (auto it = s.entries.find(stem); it != s.entries.end() && it->second.key_text == key_text) {
        why = refusal::present;
        return std::nullopt;
    }
    if (s.writing.contains(stem)) {
        why = refusal::being_written;
        return std::nullopt;
    }
    if (s.used + file_bytes > budget) {
        why = refusal::budget;
        return std::nullopt;
    }
    const file_system_space fs = space ? space(dir) : statvfs_space(dir);
    if (fs.free < file_bytes || fs.free - file_bytes < floor) {
        why = refusal::free_space;
        return std::nullopt;
    }
    reservation r{-1, dir + "/" + partial_name(stem, self), dir + "/" + stem + ".data"};
    r.fd = ::open(r.partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (r.fd < 0) {
        why = refusal::io;
        return std::nullopt;
    }
    // Allocated, not merely sized: the blocks are the reservation other writers count, and a
    // full disk shows here rather than halfway through the item.
    if (::posix_fallocate(r.fd, 0, static_cast<off_t>(file_bytes)) != 0) {
        ::close(r.fd);
        ::unlink(r.partial.c_str());
        why = refusal::io;
        return std::nullopt;
    }
    used = s.used + file_bytes;
    why = refusal::none;
    return r;
}

/// Writes the key and trailer after the item, flushes the file to disk and renames it to its
/// entry name: the entry appears whole or not at all. Returns false (and removes the partial
/// file) on failure.
inline bool commit(const std::string& dir, const reservation& r, const std::string& key_text, std::uint64_t item_bytes)
{
    std::string tail = key_text;
    std::uint64_t k = key_text.size(), n = item_bytes;
    for (int i = 0; i < 8; ++i, k >>= 8)
        tail.push_back(static_cast<char>(k & 0xff));
    for (int i = 0; i < 8; ++i, n >>= 8)
        tail.push_back(static_cast<char>(n & 0xff));
    tail.append(trailer_magic);
    bool ok = ::pwrite(r.fd, tail.data(), tail.size(), static_cast<off_t>(item_bytes)) == static_cast<ssize_t>(tail.size())
        && ::fsync(r.fd) == 0;
    if (ok) {
        directory_lock lock(dir);
        ok = ::rename(r.partial.c_str(), r.final.c_str()) == 0;
    }
    if (!ok) {
        ::unlink(r.partial.c_str());
        return false;
    }
    // The rename itself reaches the disk with the directory's next flush; flushing it here
    // is advice, since a lost rename only loses a cache entry.
    if (const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
        (void)::fsync(d);
        ::close(d);
    }
    return true;
}

/// Creates the directory (and its parents) when missing.
inline void make_directory(const std::string& dir)
{
    std::string path;
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        path = dir.substr(0, pos);
        if (!path.empty() && ::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
            throw os_error("cannot create the cache directory " + path);
    }
}

} // namespace pipemode::cache::detail
