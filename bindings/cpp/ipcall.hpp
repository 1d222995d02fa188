// ipcall.hpp: a header-only C++17 wrapper over the ipcall C API (ipcall.h).
//
// RAII, move-only handles (Server, Request, Client, Pending, ServerOptions,
// ClientOptions); failures throw ipcall::Error, which carries the status, the
// detailed message and, for a remote error, the server's error payload.
// Inputs are ipcall::Bytes views (from std::string_view, std::vector<uint8_t>,
// a std::string, or a pointer and a length); replies are std::vector<uint8_t>.
//
//   ipcall::Server server = ipcall::Server::bind("mem:greeter");
//   ipcall::Client client = ipcall::Client::connect(server.name());
//   std::thread worker([&] { auto req = server.recv(); req.reply(req.data()); });
//   std::vector<uint8_t> reply = client.call("hello");
//
// Thread rules are the C API's (docs/C-API.md): a Server or Client may be
// used from several threads at once (const member functions); a Request or
// Pending from one thread at a time.
//
// SPDX-License-Identifier: MIT OR Apache-2.0
#ifndef IPCALL_HPP
#define IPCALL_HPP

#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipcall.h"

namespace ipcall {

/// A reply or an error payload: bytes the caller owns.
using Buffer = std::vector<uint8_t>;

/// A timeout for the functions that wait; forever by default.
using Timeout = std::chrono::milliseconds;

/// "Wait as long as it takes".
inline constexpr Timeout forever{-1};

/// Who sent a request; -1 where the transport cannot tell.
using Peer = ipcall_peer;

/// A failed ipcall operation: its status (IPCALL_E_*), the detailed message
/// of ipcall_last_error_message(), and for IPCALL_E_REMOTE the server's
/// error payload.
class Error : public std::runtime_error {
public:
    /// An error of `status` with `message` (and a remote error's `payload`).
    Error(ipcall_status status, const std::string &message, Buffer payload = {})
        : std::runtime_error(message), status_(status), payload_(std::move(payload)) {}

    /// The status, IPCALL_E_*.
    ipcall_status status() const noexcept { return status_; }

    /// The static name of the status (ipcall_strerror).
    const char *status_text() const noexcept { return ipcall_strerror(status_); }

    /// The error payload of an IPCALL_E_REMOTE error (empty for other statuses).
    const Buffer &payload() const noexcept { return payload_; }

    /// The payload as text (for payloads that are text).
    std::string_view payload_text() const noexcept {
        return {reinterpret_cast<const char *>(payload_.data()), payload_.size()};
    }

private:
    ipcall_status status_;
    Buffer payload_;
};

namespace detail {

/// Throws the Error of a failed status (message from this thread's last error).
[[noreturn]] inline void fail(ipcall_status status, Buffer payload = {}) {
    throw Error(status, ipcall_last_error_message(), std::move(payload));
}

/// Throws unless `status` is IPCALL_OK.
inline void check(ipcall_status status) {
    if (status != IPCALL_OK) {
        fail(status);
    }
}

/// Converts a Timeout to the C convention (-1 forever, clamped to INT32_MAX).
inline int32_t timeout_ms(Timeout timeout) {
    if (timeout.count() < 0) {
        return -1;
    }
    return timeout.count() > INT32_MAX ? INT32_MAX : static_cast<int32_t>(timeout.count());
}

/// Throws IPCALL_E_INVALID if `text` holds a NUL byte, which the C API
/// would take for its end (a silently shortened string).
inline void no_nul(const std::string &text, const char *what) {
    if (text.find('\0') != std::string::npos) {
        throw Error(IPCALL_E_INVALID, std::string(what) + " contains a NUL byte");
    }
}

/// Moves the bytes of a C buffer into a vector and frees the C buffer.
inline Buffer take(ipcall_buf &buf) {
    Buffer bytes(buf.data, buf.data + buf.len);
    ipcall_buf_free(&buf);
    return bytes;
}

/// Turns the outcome of a call or wait into a Buffer or an Error.
inline Buffer outcome(ipcall_status status, ipcall_buf &buf) {
    if (status == IPCALL_OK) {
        return take(buf);
    }
    if (status == IPCALL_E_REMOTE) {
        // Read the message first: freeing the buffer could, in principle,
        // overwrite this thread's last error.
        std::string message = ipcall_last_error_message();
        Buffer payload = take(buf);
        throw Error(status, message, std::move(payload));
    }
    fail(status);
}

/// A move-only owner of a C handle, released by `Free`.
template <typename T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *raw) noexcept : raw_(raw) {}
    Handle(Handle &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.raw_, nullptr));
        }
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(nullptr); }

    T *get() const noexcept { return raw_; }
    T *release() noexcept { return std::exchange(raw_, nullptr); }
    void reset(T *raw) noexcept {
        if (raw_ != nullptr) {
            Free(raw_);
        }
        raw_ = raw;
    }

private:
    T *raw_ = nullptr;
};

}  // namespace detail

/// A read-only view of bytes to send: from text, a byte vector, or a pointer
/// and a length. It does not own them; ipcall copies them on send.
class Bytes {
public:
    /// No bytes.
    constexpr Bytes() noexcept = default;
    /// `size` bytes at `data` (NULL allowed when size is 0).
    Bytes(const void *data, size_t size) noexcept : data_(static_cast<const uint8_t *>(data)), size_(size) {}
    /// The characters of `text`, without a terminating NUL.
    Bytes(std::string_view text) noexcept : Bytes(text.data(), text.size()) {}
    /// The characters of `text`, without a terminating NUL.
    Bytes(const std::string &text) noexcept : Bytes(text.data(), text.size()) {}
    /// The characters of a NUL-terminated string, without the NUL.
    Bytes(const char *text) noexcept : Bytes(std::string_view(text)) {}
    /// The bytes of `bytes`.
    Bytes(const Buffer &bytes) noexcept : Bytes(bytes.data(), bytes.size()) {}

    const uint8_t *data() const noexcept { return data_; }
    size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const uint8_t *begin() const noexcept { return data_; }
    const uint8_t *end() const noexcept { return data_ + size_; }
    /// The bytes as a string_view.
    std::string_view text() const noexcept { return {reinterpret_cast<const char *>(data_), size_}; }
    /// A copy of the bytes.
    Buffer to_vector() const { return Buffer(begin(), end()); }

private:
    const uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

/// How a shm: endpoint waits for its peer (other transports ignore it).
enum class WaitMode : uint32_t {
    /// Spin while it pays off, then sleep (the default).
    Adaptive = IPCALL_WAIT_ADAPTIVE,
    /// Never sleep: lowest latency across CPUs, burns a CPU while waiting.
    Spin = IPCALL_WAIT_SPIN,
    /// Never spin: sleep at once (a system call per message each way).
    Block = IPCALL_WAIT_BLOCK,
};

/// Options of Server::bind / bind_unique; setters chain.
class ServerOptions {
public:
    ServerOptions() {
        ipcall_server_options *raw = nullptr;
        detail::check(ipcall_server_options_new(&raw));
        handle_.reset(raw);
    }
    /// Largest request accepted and reply sent, in bytes (default 64 MiB).
    ServerOptions &max_message_size(uint32_t bytes) {
        detail::check(ipcall_server_options_set_max_message_size(handle_.get(), bytes));
        return *this;
    }
    /// Accept exactly one client, unbind the name at once, end when it leaves.
    ServerOptions &one_shot(bool yes = true) {
        detail::check(ipcall_server_options_set_one_shot(handle_.get(), yes));
        return *this;
    }
    /// Bind as one member of a worker pool on the name (unix:, pipe:, shm:).
    ServerOptions &pool(bool yes = true) {
        detail::check(ipcall_server_options_set_pool(handle_.get(), yes));
        return *this;
    }
    /// Also let processes of this uid connect.
    ServerOptions &allow_uid(uint32_t uid) {
        detail::check(ipcall_server_options_allow_uid(handle_.get(), uid));
        return *this;
    }
    /// Also let processes of this primary gid connect.
    ServerOptions &allow_gid(uint32_t gid) {
        detail::check(ipcall_server_options_allow_gid(handle_.get(), gid));
        return *this;
    }
    /// Let any uid connect (file permissions still apply).
    ServerOptions &allow_any_uid(bool yes = true) {
        detail::check(ipcall_server_options_set_allow_any_uid(handle_.get(), yes));
        return *this;
    }
    /// How long a connecting client may take to finish its handshake.
    ServerOptions &handshake_timeout(Timeout timeout) {
        detail::check(ipcall_server_options_set_handshake_timeout(handle_.get(), detail::timeout_ms(timeout)));
        return *this;
    }
    /// Size of each shared-memory ring (shm: only).
    ServerOptions &ring_size(size_t bytes) {
        detail::check(ipcall_server_options_set_ring_size(handle_.get(), bytes));
        return *this;
    }
    /// Most reply bytes queued on one connection before its client is dropped.
    ServerOptions &max_queued_reply_bytes(uint64_t bytes) {
        detail::check(ipcall_server_options_set_max_queued_reply_bytes(handle_.get(), bytes));
        return *this;
    }
    /// How long queued replies may make no progress before their client is dropped.
    ServerOptions &reply_timeout(Timeout timeout) {
        detail::check(ipcall_server_options_set_reply_timeout(handle_.get(), detail::timeout_ms(timeout)));
        return *this;
    }
    /// Most clients served at once; more are refused at connect.
    ServerOptions &max_connections(size_t connections) {
        detail::check(ipcall_server_options_set_max_connections(handle_.get(), connections));
        return *this;
    }
    /// How long a request frame may take from its first byte to its last.
    ServerOptions &frame_timeout(Timeout timeout) {
        detail::check(ipcall_server_options_set_frame_timeout(handle_.get(), detail::timeout_ms(timeout)));
        return *this;
    }
    /// How the server waits for requests and ring space (shm: only).
    /// A value that names no WaitMode throws IPCALL_E_INVALID.
    ServerOptions &wait_mode(WaitMode mode) {
        detail::check(ipcall_server_options_set_wait_mode(handle_.get(), static_cast<ipcall_wait_mode>(mode)));
        return *this;
    }
    /// The server's NATS connection name (nats: only): 1 to 256 bytes of
    /// UTF-8 without control characters, else IPCALL_E_INVALID.
    ServerOptions &connection_name(const std::string &name) {
        detail::no_nul(name, "the connection name");
        detail::check(ipcall_server_options_set_connection_name(handle_.get(), name.c_str()));
        return *this;
    }
    /// The C handle (owned by this object).
    const ipcall_server_options *get() const noexcept { return handle_.get(); }

private:
    detail::Handle<ipcall_server_options, ipcall_server_options_free> handle_;
};

/// Options of Client::connect; setters chain.
class ClientOptions {
public:
    ClientOptions() {
        ipcall_client_options *raw = nullptr;
        detail::check(ipcall_client_options_new(&raw));
        handle_.reset(raw);
    }
    /// Largest reply accepted and request sent, in bytes (default 64 MiB).
    ClientOptions &max_message_size(uint32_t bytes) {
        detail::check(ipcall_client_options_set_max_message_size(handle_.get(), bytes));
        return *this;
    }
    /// How the client waits for replies and ring space (shm: only).
    /// A value that names no WaitMode throws IPCALL_E_INVALID.
    ClientOptions &wait_mode(WaitMode mode) {
        detail::check(ipcall_client_options_set_wait_mode(handle_.get(), static_cast<ipcall_wait_mode>(mode)));
        return *this;
    }
    /// The client's NATS connection name (nats: only), which a server reads
    /// as Request::peer_name(): 1 to 256 bytes of UTF-8 without control
    /// characters, else IPCALL_E_INVALID.
    ClientOptions &connection_name(const std::string &name) {
        detail::no_nul(name, "the connection name");
        detail::check(ipcall_client_options_set_connection_name(handle_.get(), name.c_str()));
        return *this;
    }
    /// The C handle (owned by this object).
    const ipcall_client_options *get() const noexcept { return handle_.get(); }

private:
    detail::Handle<ipcall_client_options, ipcall_client_options_free> handle_;
};

/// One received request. Answer it once with reply() or fail(); destroying it
/// unanswered gives the caller IPCALL_E_NO_REPLY. Move-only.
class Request {
public:
    /// Adopts a C request handle.
    explicit Request(ipcall_request *raw) noexcept : handle_(raw) {}

    /// The request's bytes (valid until it is answered or destroyed).
    Bytes data() const {
        const uint8_t *data = nullptr;
        size_t len = 0;
        detail::check(ipcall_request_data(live(), &data, &len));
        return Bytes(data, len);
    }

    /// The request's bytes as text.
    std::string_view text() const { return data().text(); }

    /// Who sent it.
    Peer peer() const {
        Peer peer{};
        detail::check(ipcall_request_peer(live(), &peer));
        return peer;
    }

    /// `nats:` only: the sender's NATS client id, as it states it; empty
    /// when the request tells none (every other transport).
    std::optional<uint64_t> nats_client_id() const {
        uint64_t id = 0;
        ipcall_status status = ipcall_request_peer_nats_client_id(live(), &id);
        if (status == IPCALL_E_NOT_FOUND) return std::nullopt;
        detail::check(status);
        return id;
    }

    /// `nats:` only: the sender's connection name, as it states it (valid
    /// until the request is answered or destroyed); empty when it tells none.
    std::optional<std::string_view> peer_name() const {
        const char *name = nullptr;
        size_t len = 0;
        ipcall_status status = ipcall_request_peer_name(live(), &name, &len);
        if (status == IPCALL_E_NOT_FOUND) return std::nullopt;
        detail::check(status);
        return std::string_view(name, len);
    }

    /// The time left until the caller stops waiting (zero once it passed);
    /// empty when the caller set no timeout when it sent the request.
    std::optional<std::chrono::nanoseconds> deadline_remaining() const {
        uint64_t ns = 0;
        ipcall_status status = ipcall_request_deadline(live(), &ns);
        if (status == IPCALL_E_NOT_FOUND) return std::nullopt;
        detail::check(status);
        // At most 100 years: fits a signed 64-bit count of nanoseconds.
        return std::chrono::nanoseconds(static_cast<int64_t>(ns));
    }

    /// True once the caller gave up (its timeout passed, or it dropped the
    /// call unanswered); answering is still allowed and harmless. Reads what
    /// the request's connection has now, without blocking.
    bool cancelled() const {
        bool cancelled = false;
        detail::check(ipcall_request_cancelled(live(), &cancelled));
        return cancelled;
    }

    /// Answers with `reply`. The request is spent afterwards, even on error.
    void reply(Bytes reply) { detail::check(ipcall_request_reply(handle_.release(), reply.data(), reply.size())); }

    /// Answers with an application error: the caller gets IPCALL_E_REMOTE
    /// with `payload`. The request is spent afterwards, even on error.
    void fail(Bytes payload) {
        detail::check(ipcall_request_fail(handle_.release(), payload.data(), payload.size()));
    }

    /// True until answered.
    explicit operator bool() const noexcept { return handle_.get() != nullptr; }

private:
    const ipcall_request *live() const {
        if (handle_.get() == nullptr) {
            throw Error(IPCALL_E_INVALID, "this ipcall::Request was already answered or moved from");
        }
        return handle_.get();
    }

    detail::Handle<ipcall_request, ipcall_request_free> handle_;
};

/// A server bound to a name. Move-only; destroying it closes it.
class Server {
public:
    /// Listens on `name` (e.g. "unix:/run/user/1000/app.sock", "mem:jobs").
    static Server bind(const std::string &name, const ServerOptions *options = nullptr) {
        ipcall_server *raw = nullptr;
        detail::check(ipcall_server_bind(name.c_str(), options ? options->get() : nullptr, &raw));
        return Server(raw);
    }
    /// Listens on `name` with `options`.
    static Server bind(const std::string &name, const ServerOptions &options) { return bind(name, &options); }

    /// Listens on a new unguessable name of transport `kind` ("mem", "unix", ...).
    static Server bind_unique(const std::string &kind, const ServerOptions *options = nullptr) {
        ipcall_server *raw = nullptr;
        detail::check(ipcall_server_bind_unique(kind.c_str(), options ? options->get() : nullptr, &raw));
        return Server(raw);
    }
    /// bind_unique with `options`.
    static Server bind_unique(const std::string &kind, const ServerOptions &options) {
        return bind_unique(kind, &options);
    }

    /// The name clients connect to.
    std::string name() const { return ipcall_server_name(handle_.get()); }

    /// A descriptor that becomes readable when a request may be ready.
    int fd() const noexcept { return ipcall_server_fd(handle_.get()); }

    /// Waits for the next request; throws IPCALL_E_CLOSED when none can come.
    Request recv() const {
        std::optional<Request> request = recv_for(forever);
        return std::move(*request);
    }

    /// Waits at most `timeout` (0 = do not wait); std::nullopt if none came.
    std::optional<Request> recv_for(Timeout timeout) const {
        ipcall_request *raw = nullptr;
        ipcall_status status = ipcall_server_recv(handle_.get(), detail::timeout_ms(timeout), &raw);
        if (status == IPCALL_E_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(status);
        return Request(raw);
    }

    /// The next request if one is ready now.
    std::optional<Request> try_recv() const { return recv_for(Timeout::zero()); }

    /// Waits at most `timeout` until a client has connected; false if none did.
    bool accept(Timeout timeout) const {
        ipcall_status status = ipcall_server_accept(handle_.get(), detail::timeout_ms(timeout));
        if (status == IPCALL_E_TIMEOUT) {
            return false;
        }
        detail::check(status);
        return true;
    }

    /// Stops taking requests; receivers wake with IPCALL_E_CLOSED.
    void close() const { detail::check(ipcall_server_close(handle_.get())); }

    /// This server's statistics since it was bound (see `ipcall_stats`).
    ipcall_stats stats() const {
        ipcall_stats out{};
        detail::check(ipcall_server_stats(handle_.get(), &out));
        return out;
    }

    /// Closes gracefully (as close, at once), then waits at most `timeout`
    /// (`forever` by default) until every request already received is
    /// answered or destroyed; false if the timeout passed first.
    bool drain(Timeout timeout = forever) const {
        ipcall_status status = ipcall_server_drain(handle_.get(), detail::timeout_ms(timeout));
        if (status == IPCALL_E_TIMEOUT) {
            return false;
        }
        detail::check(status);
        return true;
    }

    /// The C handle (owned by this object).
    const ipcall_server *get() const noexcept { return handle_.get(); }

private:
    explicit Server(ipcall_server *raw) noexcept : handle_(raw) {}
    detail::Handle<ipcall_server, ipcall_server_free> handle_;
};

/// A call in flight. Move-only; destroying it unanswered abandons the call.
class Pending {
public:
    /// Adopts a C pending handle.
    explicit Pending(ipcall_pending *raw) noexcept : handle_(raw) {}

    /// Waits for the reply (or throws the call's error).
    Buffer wait() { return wait_for(forever); }

    /// Waits at most `timeout`; on IPCALL_E_TIMEOUT (thrown) the call is
    /// abandoned. After any outcome further waits throw IPCALL_E_CLOSED.
    Buffer wait_for(Timeout timeout) {
        ipcall_buf buf{};
        return detail::outcome(ipcall_pending_wait(handle_.get(), detail::timeout_ms(timeout), &buf), buf);
    }

    /// The reply if it has arrived (std::nullopt if not yet; the call stays
    /// in flight), else throws the call's error.
    std::optional<Buffer> try_wait() {
        ipcall_buf buf{};
        ipcall_status status = ipcall_pending_try_wait(handle_.get(), &buf);
        if (status == IPCALL_E_TIMEOUT) {
            return std::nullopt;
        }
        return detail::outcome(status, buf);
    }

private:
    detail::Handle<ipcall_pending, ipcall_pending_free> handle_;
};

/// A connection to a server. Move-only; clone() for a second, independent
/// client. Its const member functions may run on several threads at once.
class Client {
public:
    /// Connects to `name`, waiting at most `timeout` for the server to
    /// appear (0, the default, = fail at once with IPCALL_E_NOT_FOUND).
    static Client connect(const std::string &name, Timeout timeout = Timeout::zero(),
                          const ClientOptions *options = nullptr) {
        ipcall_client *raw = nullptr;
        detail::check(ipcall_client_connect_with(name.c_str(), options ? options->get() : nullptr,
                                                 detail::timeout_ms(timeout), &raw));
        return Client(raw);
    }

    /// The server's name.
    std::string name() const { return ipcall_client_name(handle_.get()); }

    /// Sends `request` and waits at most `timeout` for the reply. Throws
    /// Error: IPCALL_E_REMOTE with the payload, IPCALL_E_TIMEOUT (abandoned), ...
    /// Checks that the server answers (its library answers, never the
    /// application); returns the round trip. Throws IPCALL_E_TIMEOUT after
    /// `timeout`, IPCALL_E_PROTOCOL if the server's ipcall is too old.
    std::chrono::nanoseconds ping(Timeout timeout = forever) const {
        uint64_t ns = 0;
        detail::check(ipcall_client_ping(handle_.get(), detail::timeout_ms(timeout), &ns));
        return std::chrono::nanoseconds(static_cast<int64_t>(ns));
    }

    /// The server's statistics, answered by its library as ping is.
    ipcall_stats server_stats(Timeout timeout = forever) const {
        ipcall_stats out{};
        detail::check(ipcall_client_server_stats(handle_.get(), detail::timeout_ms(timeout), &out));
        return out;
    }

    Buffer call(Bytes request, Timeout timeout = forever) const {
        ipcall_buf buf{};
        ipcall_status status =
            ipcall_client_call(handle_.get(), request.data(), request.size(), detail::timeout_ms(timeout), &buf);
        return detail::outcome(status, buf);
    }

    /// Sends `request` without waiting.
    Pending send(Bytes request) const {
        ipcall_pending *raw = nullptr;
        detail::check(ipcall_client_send(handle_.get(), request.data(), request.size(), &raw));
        return Pending(raw);
    }

    /// Sends `request` without ever blocking (for an event loop):
    /// std::nullopt if the transport has no room now and nothing was sent
    /// (retry when fd() turns readable, after progress()).
    std::optional<Pending> try_send(Bytes request) const {
        return try_with(ipcall_client_try_send, request);
    }

    /// Like try_send(), for an event loop that calls Pending::try_wait()
    /// on the call right away: an answer already there when the request
    /// has gone is kept in the Pending (try_wait() returns it at once) and
    /// may not have made fd() readable.
    std::optional<Pending> try_call(Bytes request) const {
        return try_with(ipcall_client_try_call, request);
    }

    /// try_call(), then, if the answer is not there yet, a brief spin for
    /// it as progress_spin() spins (over shm: only where it pays; never
    /// sleeps). For an event loop's call alone in flight, in place of
    /// try_call() followed by progress_spin(); at most once per loop turn.
    std::optional<Pending> try_call_spin(Bytes request) const {
        return try_with(ipcall_client_try_call_spin, request);
    }

    /// A descriptor for an event loop: readable (level-triggered) when a
    /// call may have completed or the connection died; then call progress()
    /// and Pending::try_wait(). Owned by the client (never close it); ask
    /// for it before sending the calls it should announce.
    int fd() const {
        int fd = -1;
        detail::check(ipcall_client_fd(handle_.get(), &fd));
        return fd;
    }

    /// Reads what the connection has and completes calls, without blocking;
    /// clears fd()'s readiness.
    void progress() const { detail::check(ipcall_client_progress(handle_.get())); }

    /// For an event loop about to sleep with calls pending: over shm:,
    /// spins briefly (only where it pays; never sleeps) until a reply
    /// comes, then progress(); true if it caught one (then
    /// Pending::try_wait()). Other transports return false at once.
    bool progress_spin() const {
        bool caught = false;
        detail::check(ipcall_client_progress_spin(handle_.get(), &caught));
        return caught;
    }

    /// A second client to the same server.
    Client clone() const {
        ipcall_client *raw = nullptr;
        detail::check(ipcall_client_clone(handle_.get(), &raw));
        return Client(raw);
    }

    /// The C handle (owned by this object).
    const ipcall_client *get() const noexcept { return handle_.get(); }

private:
    explicit Client(ipcall_client *raw) noexcept : handle_(raw) {}

    /// A send that never blocks (`ipcall_client_try_send` or a
    /// `try_call` form): std::nullopt for IPCALL_E_TIMEOUT (no room now,
    /// nothing sent), else the call or the error thrown.
    using TrySend = ipcall_status (*)(const ipcall_client *, const uint8_t *, size_t, ipcall_pending **);
    std::optional<Pending> try_with(TrySend send, Bytes request) const {
        ipcall_pending *raw = nullptr;
        ipcall_status status = send(handle_.get(), request.data(), request.size(), &raw);
        if (status == IPCALL_E_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(status);
        return Pending(raw);
    }

    detail::Handle<ipcall_client, ipcall_client_free> handle_;
};

/// The version of the loaded library, e.g. "0.1.0".
inline std::string version() { return ipcall_version(); }

}  // namespace ipcall

#endif  // IPCALL_HPP
