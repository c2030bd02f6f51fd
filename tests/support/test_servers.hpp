// Test support: real servers on 127.0.0.1 that a test starts and stops itself. nginx serves a
// directory over HTTP (Range, If-Match and ETag built in); moto_server speaks the S3 API.
// Each server runs in its own process group, is stopped by its PID in the destructor (also
// when a REQUIRE throws), and is sent SIGTERM by the kernel if the test process dies first, so
// a crashed or timed-out test leaves no server behind.
//
// scripts/lib/servers.sh starts the same servers, with the same nginx configuration, for shell
// scripts and benchmarks.
#pragma once

#include "source_helpers.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

extern char** environ;

namespace pipemode::test {

namespace servers_detail {

using clock = std::chrono::steady_clock;

/// The full path of `name` found on the PATH (or among `fallbacks`), or "" when absent.
inline std::string find_program(std::string_view name, std::initializer_list<std::string_view> fallbacks = {})
{
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    while (true) {
        auto colon = dirs.find(':');
        std::string dir(dirs.substr(0, colon));
        if (dir.empty())
            dir = ".";
        std::string candidate = dir + "/" + std::string(name);
        if (::access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate))
            return candidate;
        if (colon == std::string_view::npos)
            break;
        dirs.remove_prefix(colon + 1);
    }
    for (auto f : fallbacks) {
        std::string candidate(f);
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return {};
}

/// A port on 127.0.0.1 that was free a moment ago: the kernel's pick for port 0. Another
/// process may take it before the server binds it, so callers retry on a failed bind.
inline unsigned short pick_free_port()
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        int e = errno;
        ::close(fd);
        throw std::system_error(e, std::generic_category(), "bind 127.0.0.1:0");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

/// True when an HTTP server on 127.0.0.1:`port` answers a request within `timeout` (any
/// status counts: only "it speaks HTTP" matters, not what it says to "GET /").
inline bool http_answers(unsigned short port, std::chrono::milliseconds timeout)
{
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        static constexpr std::string_view request = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
            std::string got;
            auto deadline = clock::now() + timeout;
            while (got.size() < 5 && clock::now() < deadline) {
                pollfd p{fd, POLLIN, 0};
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
                if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0)
                    break;
                char buf[64];
                ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0)
                    break;
                got.append(buf, static_cast<std::size_t>(n));
            }
            ok = got.starts_with("HTTP/");
        }
    }
    ::close(fd);
    return ok;
}

/// The last `lines` lines of the file at `path` ("" when it cannot be read).
inline std::string tail_of(const std::filesystem::path& path, std::size_t lines = 20)
{
    std::ifstream in(path);
    std::deque<std::string> last;
    for (std::string line; std::getline(in, line);) {
        last.push_back(std::move(line));
        if (last.size() > lines)
            last.pop_front();
    }
    std::string out;
    for (auto& l : last)
        out += "\n  " + l;
    return out;
}

/// The whole file at `path` as text ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

/// What a child process gets: arguments, environment changes and where its output goes.
struct spawn_spec {
    std::string program;                              ///< full path, not looked up again
    std::vector<std::string> args;                    ///< argv[1..]
    std::vector<std::string> unset_env;               ///< names removed from our environment
    std::vector<std::pair<std::string, std::string>> set_env; ///< names set (after unsetting)
    std::filesystem::path output;                     ///< stdout and stderr appended here ("" = /dev/null)
    int stdout_fd = -1;                               ///< when >= 0, stdout goes here instead
};

/// Starts `spec` in a new process group (its PID is the group's ID) with stdin from
/// /dev/null, default signal handling, and SIGTERM from the kernel should this process die
/// first. Throws when the program cannot be executed.
inline pid_t spawn(const spawn_spec& spec)
{
    // Everything the child touches is built before fork: between fork and exec only
    // async-signal-safe calls are allowed (other threads may hold malloc's lock).
    std::vector<std::string> arg_strings;
    arg_strings.push_back(spec.program);
    arg_strings.insert(arg_strings.end(), spec.args.begin(), spec.args.end());
    std::vector<char*> argv;
    for (auto& a : arg_strings)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string_view entry(*e);
        std::string_view name = entry.substr(0, entry.find('='));
        bool drop = false;
        for (auto& u : spec.unset_env)
            drop = drop || name == u;
        for (auto& s : spec.set_env)
            drop = drop || name == s.first;
        if (!drop)
            env_strings.emplace_back(entry);
    }
    for (auto& [name, value] : spec.set_env)
        env_strings.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& e : env_strings)
        envp.push_back(e.data());
    envp.push_back(nullptr);

    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    int out_fd = spec.output.empty()
        ? -1
        : ::open(spec.output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int err_pipe[2];
    if (null_fd < 0 || (!spec.output.empty() && out_fd < 0) || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
        int e = errno;
        if (null_fd >= 0)
            ::close(null_fd);
        if (out_fd >= 0)
            ::close(out_fd);
        throw std::system_error(e, std::generic_category(), "cannot prepare to start " + spec.program);
    }
    int log_fd = out_fd >= 0 ? out_fd : null_fd;
    int child_stdout = spec.stdout_fd >= 0 ? spec.stdout_fd : log_fd;
    pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        // Bound to the process, not to a thread that may exit (PR_SET_PDEATHSIG fires when
        // the forking thread ends): tests construct servers on the thread that runs them.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent)
            ::_exit(127);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM})
            ::sigaction(sig, &dfl, nullptr);
        sigset_t none;
        ::sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::dup2(null_fd, 0);
        ::dup2(child_stdout, 1);
        ::dup2(log_fd, 2);
        ::execve(argv[0], argv.data(), envp.data());
        int e = errno;
        [[maybe_unused]] auto w = ::write(err_pipe[1], &e, sizeof e);
        ::_exit(127);
    }
    int fork_errno = errno;
    ::close(err_pipe[1]);
    ::close(null_fd);
    if (out_fd >= 0)
        ::close(out_fd);
    if (pid < 0) {
        ::close(err_pipe[0]);
        throw std::system_error(fork_errno, std::generic_category(), "fork for " + spec.program);
    }
    // Also set here: whichever of parent and child runs first, the group exists before either
    // signals it.
    ::setpgid(pid, pid);
    int exec_errno = 0;
    ssize_t n;
    do
        n = ::read(err_pipe[0], &exec_errno, sizeof exec_errno);
    while (n < 0 && errno == EINTR);
    ::close(err_pipe[0]);
    if (n > 0) {
        ::waitpid(pid, nullptr, 0);
        throw std::system_error(exec_errno, std::generic_category(), "cannot execute " + spec.program);
    }
    return pid;
}

/// True while the child `pid` has not exited; reaps it once it has (`status` gets its status).
inline bool child_running(pid_t pid, int* status = nullptr)
{
    int s = 0;
    pid_t r;
    do
        r = ::waitpid(pid, &s, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return true;
    if (status != nullptr)
        *status = s;
    return false;
}

/// Stops the process group led by our child `pid`: `sig` to the group, up to `grace` for the
/// leader to exit, then SIGKILL to whatever is left of the group. Never throws.
inline void stop_group(pid_t pid, int sig, std::chrono::milliseconds grace) noexcept
{
    if (pid <= 0)
        return;
    ::kill(-pid, sig);
    auto deadline = clock::now() + grace;
    bool running = true;
    while ((running = child_running(pid)) && clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // The leader is gone or late; anything it left in its group (nginx workers) goes too.
    ::kill(-pid, SIGKILL);
    if (running) {
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
}

/// Describes a wait status for an error message.
inline std::string describe_status(int status)
{
    if (WIFEXITED(status))
        return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "was killed by signal " + std::to_string(WTERMSIG(status));
    return "ended (wait status " + std::to_string(status) + ")";
}

/// What `run` returns: the exit status and what the program printed on stdout.
struct run_result {
    int status = 0;       ///< the wait status
    std::string out;      ///< stdout
    std::string err;      ///< stderr
};

/// Runs `spec` to completion, capturing stdout and stderr; kills it after `timeout`.
inline run_result run(spawn_spec spec, const std::filesystem::path& err_file, std::chrono::seconds timeout)
{
    int out_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0)
        throw std::system_error(errno, std::generic_category(), "pipe");
    std::filesystem::remove(err_file);
    spec.output = err_file;
    spec.stdout_fd = out_pipe[1];
    pid_t pid;
    try {
        pid = spawn(spec);
    } catch (...) {
        ::close(out_pipe[0]);
        ::close(out_pipe[1]);
        throw;
    }
    ::close(out_pipe[1]);
    run_result result;
    auto deadline = clock::now() + timeout;
    bool timed_out = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{out_pipe[0], POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            timed_out = r == 0;
            break;
        }
        char buf[65536];
        ssize_t n = ::read(out_pipe[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        result.out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out_pipe[0]);
    if (timed_out) {
        stop_group(pid, SIGKILL, std::chrono::milliseconds(2000));
        throw std::runtime_error(spec.program + " did not finish within " + std::to_string(timeout.count()) +
                                 " s (killed); its stderr:" + tail_of(err_file));
    }
    while (::waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {
    }
    result.err = slurp(err_file);
    return result;
}

/// A temp dir made under the system's temporary directory, named for the server using it.
inline std::filesystem::path make_temp_dir(std::string_view tag)
{
    std::string t = (std::filesystem::temp_directory_path() / ("pipemode-" + std::string(tag) + "-XXXXXX")).string();
    if (::mkdtemp(t.data()) == nullptr)
        throw std::system_error(errno, std::generic_category(), "mkdtemp " + t);
    return t;
}

/// Starts a server from `make_spec(port)` on a fresh port, retrying with another port when
/// the log says the port was taken, and waits until it answers HTTP. Returns {pid, port}.
template <class MakeSpec>
std::pair<pid_t, unsigned short> start_http_server(std::string_view what, const std::filesystem::path& log,
                                                   MakeSpec make_spec, std::chrono::seconds ready_within)
{
    std::string last_log;
    for (int attempt = 1; attempt <= 5; ++attempt) {
        unsigned short port = pick_free_port();
        std::filesystem::remove(log);
        spawn_spec spec = make_spec(port);
        pid_t pid = spawn(spec);
        auto deadline = clock::now() + ready_within;
        int status = 0;
        bool exited = false;
        while (clock::now() < deadline) {
            if (!child_running(pid, &status)) {
                exited = true;
                break;
            }
            if (http_answers(port, std::chrono::milliseconds(1000)))
                return {pid, port};
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (exited) {
            // The leader is gone; its group may still hold children.
            ::kill(-pid, SIGKILL);
        } else {
            stop_group(pid, SIGTERM, std::chrono::milliseconds(3000));
        }
        last_log = slurp(log);
        bool port_taken = last_log.find("in use") != std::string::npos;
        if (exited && port_taken)
            continue;
        throw std::runtime_error(std::string(what) +
                                 (exited ? " exited before answering (" + describe_status(status) + ")"
                                         : " did not answer on 127.0.0.1:" + std::to_string(port) + " within " +
                                               std::to_string(ready_within.count()) + " s") +
                                 "; end of its log:" + tail_of(log));
    }
    throw std::runtime_error(std::string(what) + " found its port taken five times in a row; end of its log:" +
                             tail_of(log));
}

} // namespace servers_detail

/// nginx serving a directory at `http://127.0.0.1:PORT/`, for HTTP range-read tests and
/// benchmarks.
///
/// nginx answers `Range` (single ranges with 206 and `Content-Range`; several with
/// multipart/byteranges; past the end with 416), `If-Match` (412 on a mismatch) and sends an
/// `ETag` built from the file's mtime in seconds and its size, so a rewrite of the same size
/// within one second keeps the ETag. A ranged GET of an empty file gets 200 with no body.
/// Keep-alive lasts 100000 requests or 60 s idle; files go out with sendfile. Directories
/// are listed (autoindex): in HTML under `/`, and in nginx's JSON format (with sizes) under
/// `/json-index/`, which serves the same root.
///
/// Starting takes about 0.1 to 0.3 s. The constructor throws `std::runtime_error` when nginx is
/// missing or does not come up (with the tail of its error log). The destructor stops it by
/// PID. Not copyable or movable; construct it on the test's own thread.
///
///     temp_dir dir;
///     write_file(dir / "a.bin", pattern(1000));
///     nginx_server http(dir.path());
///     // GET http.url("a.bin") with "Range: bytes=10-19" -> 206, bytes 10..19
class nginx_server {
public:
    /// A certificate and its key (PEM files) for serving over TLS.
    struct tls_files {
        std::filesystem::path certificate;
        std::filesystem::path key;
    };

    /// Starts nginx serving the directory `root`, which must exist and be readable; over TLS
    /// (`https://127.0.0.1:PORT/`) when `tls` is given. Its readiness probe speaks plain HTTP,
    /// which nginx answers on a TLS port too (with 400), so the wait is the same.
    explicit nginx_server(std::filesystem::path root, std::optional<tls_files> tls = std::nullopt)
        : root_(std::filesystem::absolute(std::move(root))), tls_(std::move(tls))
    {
        if (!std::filesystem::is_directory(root_))
            throw std::runtime_error("nginx_server: " + root_.string() + " is not a directory to serve");
        std::string nginx = servers_detail::find_program("nginx", {"/usr/sbin/nginx"});
        if (nginx.empty())
            throw std::runtime_error("nginx not found: run scripts/test.sh, which installs nginx-light");
        dir_ = servers_detail::make_temp_dir("nginx");
        try {
            auto conf = dir_ / "nginx.conf";
            auto log = dir_ / "error.log";
            std::tie(pid_, port_) = servers_detail::start_http_server(
                "nginx", log,
                [&](unsigned short port) {
                    write_config(conf, port);
                    servers_detail::spawn_spec spec;
                    spec.program = nginx;
                    spec.args = {"-p", dir_.string(), "-c", conf.string(), "-e", log.string()};
                    spec.output = log;
                    return spec;
                },
                std::chrono::seconds(10));
        } catch (...) {
            remove_dir();
            throw;
        }
    }

    nginx_server(const nginx_server&) = delete;
    nginx_server& operator=(const nginx_server&) = delete;

    /// Stops nginx (SIGTERM to its process group, SIGKILL after 5 s) and removes its temp dir.
    ~nginx_server()
    {
        servers_detail::stop_group(pid_, SIGTERM, std::chrono::milliseconds(5000));
        remove_dir();
    }

    /// The port nginx listens on (127.0.0.1 only).
    unsigned short port() const noexcept { return port_; }

    /// "http://127.0.0.1:PORT" ("https://" with TLS), without a trailing slash.
    std::string url() const { return (tls_ ? "https" : "http") + std::string("://127.0.0.1:") + std::to_string(port_); }

    /// The URL of `relative` (a path under the served directory, without a leading '/').
    std::string url(std::string_view relative) const { return url() + "/" + std::string(relative); }

    /// The directory being served.
    const std::filesystem::path& root() const noexcept { return root_; }

    /// The nginx master's PID (also its process group's ID).
    pid_t pid() const noexcept { return pid_; }

    /// The directory holding the generated configuration and the error log.
    const std::filesystem::path& state_dir() const noexcept { return dir_; }

private:
    void write_config(const std::filesystem::path& conf, unsigned short port) const
    {
        std::ofstream out(conf, std::ios::trunc);
        // As root, workers would drop to "nobody" and could not read a root-only temp dir.
        if (::geteuid() == 0)
            out << "user root;\n";
        const std::string d = dir_.string();
        out << "daemon off;\n"
               "worker_processes 1;\n"
               "pid " << d << "/nginx.pid;\n"
               "error_log " << d << "/error.log warn;\n"
               "events {\n"
               "    worker_connections 1024;\n"
               "}\n"
               "http {\n"
               "    access_log off;\n"
               "    sendfile on;\n"
               "    tcp_nopush on;\n"
               "    tcp_nodelay on;\n"
               "    keepalive_requests 100000;\n"
               "    keepalive_timeout 60s;\n"
               "    etag on;\n"
               "    default_type application/octet-stream;\n"
               "    client_body_temp_path " << d << "/client_body;\n"
               "    proxy_temp_path " << d << "/proxy;\n"
               "    fastcgi_temp_path " << d << "/fastcgi;\n"
               "    uwsgi_temp_path " << d << "/uwsgi;\n"
               "    scgi_temp_path " << d << "/scgi;\n"
               "    server {\n"
               "        listen 127.0.0.1:" << port << (tls_ ? " ssl" : "") << ";\n";
        if (tls_)
            out << "        ssl_certificate " << std::filesystem::absolute(tls_->certificate).string() << ";\n"
                   "        ssl_certificate_key " << std::filesystem::absolute(tls_->key).string() << ";\n";
        out << "        server_name localhost;\n"
               "        root " << root_.string() << ";\n"
               "        location / {\n"
               "            autoindex on;\n"
               "        }\n"
               "        location /json-index/ {\n"
               "            alias " << root_.string() << "/;\n"
               "            autoindex on;\n"
               "            autoindex_format json;\n"
               "        }\n"
               "    }\n"
               "}\n";
        if (!out)
            throw std::runtime_error("nginx_server: cannot write " + conf.string());
    }

    void remove_dir() noexcept
    {
        std::error_code ignored;
        if (!dir_.empty())
            std::filesystem::remove_all(dir_, ignored);
    }

    std::filesystem::path root_;
    std::optional<tls_files> tls_;
    std::filesystem::path dir_;
    pid_t pid_ = -1;
    unsigned short port_ = 0;
};

/// moto_server, an S3 look-alike, at `http://127.0.0.1:PORT`, with helpers that fill it
/// through the `aws` CLI.
///
/// moto accepts any signature but refuses anonymous requests (403): send an `Authorization`
/// header, e.g. signed with access key "testing", secret "testing", region us-east-1. It reads a
/// whole object for every ranged GET and closes the connection after every response: use it
/// for S3 behaviour, and nginx for speed.
///
/// Where it differs from nginx: a ranged GET of an empty object gets 416 InvalidRange (nginx:
/// 200 with no body); a range past the end gets 416 with an XML body; several ranges in one
/// header get 200 and the whole object; `If-Match: *` gets 412 (moto does not treat `*` as
/// "any"), a wrong ETag 412, the right one with or without quotes 200 or 206.
///
/// Starting takes about 1 s. The constructor throws `std::runtime_error` when moto_server is
/// missing or does not come up. The destructor stops its process group by PID. Not copyable or
/// movable; construct it on the test's own thread.
///
///     moto_server s3;
///     s3.create_bucket("data");
///     auto keys = s3.upload_many("data", "train/part-", 1200);  // ~6 s
class moto_server {
public:
    /// Starts moto_server (found on the PATH) on a free port.
    moto_server()
    {
        moto_ = servers_detail::find_program("moto_server");
        if (moto_.empty())
            throw std::runtime_error(
                "moto_server not found on the PATH: install it with 'python3 -m pip install \"moto[server]\"' "
                "for the python3 that is first on the PATH");
        dir_ = servers_detail::make_temp_dir("moto");
        try {
            auto log = dir_ / "moto.log";
            std::tie(pid_, port_) = servers_detail::start_http_server(
                "moto_server", log,
                [&](unsigned short port) {
                    servers_detail::spawn_spec spec;
                    spec.program = moto_;
                    spec.args = {"-H", "127.0.0.1", "-p", std::to_string(port)};
                    spec.output = log;
                    return spec;
                },
                std::chrono::seconds(30));
            // Up to 32 uploads at once for `aws s3 cp --recursive` (the CLI's default is 10).
            std::ofstream config(dir_ / "aws-config", std::ios::trunc);
            config << "[default]\n"
                      "region = us-east-1\n"
                      "s3 =\n"
                      "  max_concurrent_requests = 32\n"
                      "  max_queue_size = 10000\n";
            if (!config)
                throw std::runtime_error("moto_server: cannot write " + (dir_ / "aws-config").string());
        } catch (...) {
            stop();
            throw;
        }
    }

    moto_server(const moto_server&) = delete;
    moto_server& operator=(const moto_server&) = delete;

    /// Stops moto_server's process group (SIGTERM, SIGKILL after 5 s) and removes its temp dir.
    ~moto_server() { stop(); }

    /// The port moto_server listens on (127.0.0.1 only).
    unsigned short port() const noexcept { return port_; }

    /// "http://127.0.0.1:PORT", for `--endpoint-url` and path-style S3 URLs.
    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

    /// moto_server's PID (also its process group's ID).
    pid_t pid() const noexcept { return pid_; }

    /// Runs `aws --endpoint-url ENDPOINT args...` with fake credentials ("testing"/"testing",
    /// us-east-1), no profile or config from this machine, and AWS_CA_BUNDLE unset (a bundle
    /// meant for real endpoints breaks plain-http ones). Returns its stdout; throws
    /// `std::runtime_error` with its stderr when it fails or runs past `timeout`.
    std::string aws(const std::vector<std::string>& args, std::chrono::seconds timeout = std::chrono::seconds(120)) const
    {
        std::string aws_cli = servers_detail::find_program("aws");
        if (aws_cli.empty())
            throw std::runtime_error("aws CLI not found on the PATH: install it with 'python3 -m pip install awscli' "
                                     "for the python3 that is first on the PATH");
        servers_detail::spawn_spec spec;
        spec.program = aws_cli;
        spec.args = {"--endpoint-url", endpoint()};
        spec.args.insert(spec.args.end(), args.begin(), args.end());
        spec.unset_env = {"AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                          "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"};
        spec.set_env = {{"AWS_ACCESS_KEY_ID", "testing"},
                        {"AWS_SECRET_ACCESS_KEY", "testing"},
                        {"AWS_DEFAULT_REGION", "us-east-1"},
                        {"AWS_CONFIG_FILE", (dir_ / "aws-config").string()},
                        {"AWS_SHARED_CREDENTIALS_FILE", "/dev/null"},
                        {"AWS_EC2_METADATA_DISABLED", "true"},
                        {"AWS_PAGER", ""}};
        auto result = servers_detail::run(std::move(spec), dir_ / "aws-stderr.txt", timeout);
        if (!WIFEXITED(result.status) || WEXITSTATUS(result.status) != 0) {
            std::string cmd = "aws";
            for (auto& a : args)
                cmd += " " + a;
            throw std::runtime_error("'" + cmd + "' against moto at " + endpoint() + " " +
                                     servers_detail::describe_status(result.status) + ": " + result.err);
        }
        return result.out;
    }

    /// Creates the bucket `name` (3 to 63 characters: moto checks S3's naming rules).
    void create_bucket(const std::string& name) const { aws({"s3api", "create-bucket", "--bucket", name}); }

    /// Uploads the file at `local_path` as `s3://bucket/key` (one PUT; ~0.6 s per call).
    void upload(const std::string& bucket, const std::string& key, const std::filesystem::path& local_path) const
    {
        aws({"s3api", "put-object", "--bucket", bucket, "--key", key, "--body", local_path.string()});
    }

    /// Uploads `bytes` as `s3://bucket/key` (through a temp file; an empty span makes an empty
    /// object).
    void upload_bytes(const std::string& bucket, const std::string& key, std::span<const std::byte> bytes) const
    {
        auto file = dir_ / "upload-bytes.bin";
        write_file(file.string(), bytes);
        upload(bucket, key, file);
        std::error_code ignored;
        std::filesystem::remove(file, ignored);
    }

    /// Uploads `count` objects named `prefix` + the index zero-padded to at least six digits
    /// (so the keys sort by index), with bodies `content(index)` (default: the key itself).
    /// Returns the keys in index order. One `aws s3 cp --recursive` of a directory, with up to
    /// 32 uploads in flight: ~5 to 7 s for 1,200 small objects on 2 cores, where moto's own
    /// CPU time per PUT is the limit.
    std::vector<std::string> upload_many(const std::string& bucket, const std::string& prefix, std::size_t count,
                                         const std::function<std::string(std::size_t)>& content = {}) const
    {
        // `aws s3 cp --recursive DIR s3://bucket/P/` names each object P/ + the file's relative
        // path: the prefix up to its last '/' goes in the URL, the rest starts each file name.
        auto slash = prefix.rfind('/');
        std::string url_part = slash == std::string::npos ? "" : prefix.substr(0, slash + 1);
        std::string name_part = slash == std::string::npos ? prefix : prefix.substr(slash + 1);

        std::size_t width = 6;
        for (std::size_t n = count > 0 ? count - 1 : 0; n >= 1000000; n /= 10)
            ++width;
        auto stage = dir_ / ("upload-many-" + std::to_string(++uploads_));
        std::filesystem::create_directories(stage);
        std::vector<std::string> keys;
        keys.reserve(count);
        try {
            for (std::size_t i = 0; i < count; ++i) {
                std::string index = std::to_string(i);
                if (index.size() < width)
                    index.insert(0, width - index.size(), '0');
                std::string key = prefix + index;
                std::string body = content ? content(i) : key;
                std::ofstream out(stage / (name_part + index), std::ios::binary | std::ios::trunc);
                out.write(body.data(), static_cast<std::streamsize>(body.size()));
                if (!out)
                    throw std::runtime_error("upload_many: cannot write into " + stage.string());
                keys.push_back(std::move(key));
            }
            if (count > 0)
                aws({"s3", "cp", "--recursive", "--only-show-errors", stage.string(),
                     "s3://" + bucket + "/" + url_part},
                    std::chrono::seconds(120 + count / 20));
        } catch (...) {
            std::error_code ignored;
            std::filesystem::remove_all(stage, ignored);
            throw;
        }
        std::error_code ignored;
        std::filesystem::remove_all(stage, ignored);
        return keys;
    }

private:
    void stop() noexcept
    {
        servers_detail::stop_group(pid_, SIGTERM, std::chrono::milliseconds(5000));
        pid_ = -1;
        std::error_code ignored;
        if (!dir_.empty())
            std::filesystem::remove_all(dir_, ignored);
    }

    std::string moto_;
    std::filesystem::path dir_;
    pid_t pid_ = -1;
    unsigned short port_ = 0;
    mutable std::size_t uploads_ = 0;
};

} // namespace pipemode::test
