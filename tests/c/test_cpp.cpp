// The C++ wrapper (ipcall.hpp): RAII, move-only handles, exceptions with
// status, message and payload, over every transport this build provides.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include "check.h"
#include "ipcall.hpp"

using namespace std::chrono_literals;

static_assert(!std::is_copy_constructible_v<ipcall::Server> && std::is_nothrow_move_constructible_v<ipcall::Server>);
static_assert(!std::is_copy_constructible_v<ipcall::Client> && std::is_nothrow_move_constructible_v<ipcall::Client>);
static_assert(!std::is_copy_constructible_v<ipcall::Request> && std::is_nothrow_move_constructible_v<ipcall::Request>);
static_assert(!std::is_copy_constructible_v<ipcall::Pending> && std::is_nothrow_move_constructible_v<ipcall::Pending>);
static_assert(!std::is_copy_assignable_v<ipcall::Server> && std::is_nothrow_move_assignable_v<ipcall::Server>);
static_assert(std::is_base_of_v<std::exception, ipcall::Error>);

// Connects to `server`, which no other thread serves yet: over socket
// transports a handshake completes only while the server is receiving, so
// the connect runs in a helper thread while this one keeps receiving (see
// connect.h for the C version).
static ipcall::Client connect_while_serving(const ipcall::Server &server, const ipcall::ClientOptions *options = nullptr) {
    std::optional<ipcall::Client> client;
    std::exception_ptr failure;
    std::atomic<bool> done{false};
    std::thread connecting([&] {
        try {
            client.emplace(ipcall::Client::connect(server.name(), 10s, options));
        } catch (...) {
            failure = std::current_exception();
        }
        done = true;
    });
    while (!done) {
        CHECK(!server.recv_for(2ms).has_value());
    }
    connecting.join();
    if (failure) {
        std::rethrow_exception(failure);
    }
    return std::move(*client);
}

static std::string text(const ipcall::Buffer &bytes) { return std::string(bytes.begin(), bytes.end()); }

// Runs `body`, which must throw ipcall::Error with `status`; returns it.
template <typename Body>
static ipcall::Error expect_error(ipcall_status status, Body body) {
    try {
        body();
    } catch (const ipcall::Error &e) {
        if (e.status() != status) {
            std::fprintf(stderr, "expected %s, got %s: %s\n", ipcall_strerror(status), e.status_text(), e.what());
            std::exit(1);
        }
        return e;
    }
    std::fprintf(stderr, "expected an ipcall::Error with %s, nothing was thrown\n", ipcall_strerror(status));
    std::exit(1);
}

static void test_echo_and_views(const std::string &kind) {
    ipcall::Server server = ipcall::Server::bind_unique(kind);
    ipcall::Client client = connect_while_serving(server);
    CHECK(client.name() == server.name());
    std::thread worker([&server] {
        for (;;) {
            ipcall::Request request = [&]() -> ipcall::Request {
                try {
                    return server.recv();
                } catch (const ipcall::Error &e) {
                    CHECK(e.status() == IPCALL_E_CLOSED);
                    return ipcall::Request(nullptr);
                }
            }();
            if (!request) {
                return;
            }
            ipcall::Peer peer = request.peer();
            CHECK(peer.uid == -1 || peer.uid == static_cast<int64_t>(getuid()));
            // Only nats: requests tell these (tested in test_nats_peer.c).
            CHECK(!request.nats_client_id() && !request.peer_name());
            std::string_view data = request.text();
            if (data == "deadline?") {
                // A timed call carries its deadline; an untimed one none.
                std::optional<std::chrono::nanoseconds> left = request.deadline_remaining();
                request.reply(!left ? "none" : (left->count() > 0 && *left <= 60s) ? "ok" : "bad");
                continue;
            }
            if (data == "cancelled?") {
                // A caller that waits is not one that gave up.
                request.reply(request.cancelled() ? "yes" : "no");
                continue;
            }
            if (data.substr(0, 5) == "fail:") {
                request.fail(data.substr(5));
            } else if (data == "noreply") {
                // Destroyed unanswered: the caller gets NO_REPLY.
            } else {
                request.reply(request.data());
                CHECK(!request);
                expect_error(IPCALL_E_INVALID, [&] { request.reply("twice"); });
            }
        }
    });

    CHECK(text(client.call("hello")) == "hello");
    // Statistics and ping, answered by the library.
    CHECK(client.ping(60s).count() > 0);
    ipcall_stats counted = client.server_stats(60s);
    CHECK(counted.calls == 1 && counted.replies == 1 && counted.bytes_in == 5 && counted.bytes_out == 5);
    CHECK(server.stats().calls == 1);
    CHECK(text(client.call("deadline?", 60s)) == "ok");
    CHECK(text(client.call("deadline?")) == "none");
    CHECK(text(client.call("cancelled?")) == "no");
    CHECK(client.call(std::string_view{}).empty());
    const std::vector<uint8_t> binary{0, 1, 2, 0, 255};
    CHECK(client.call(binary) == binary);
    const std::string big(300000, 'b');
    CHECK(text(client.call(big, 10s)) == big);
    CHECK(text(client.call(ipcall::Bytes("raw bytes", 3))) == "raw");

    ipcall::Error remote = expect_error(IPCALL_E_REMOTE, [&] { client.call("fail:boom"); });
    CHECK(remote.payload_text() == "boom");
    CHECK(std::strstr(remote.what(), "4 byte") != nullptr);
    expect_error(IPCALL_E_NO_REPLY, [&] { client.call("noreply"); });

    // Calls in flight, waited for in reverse order, from a clone.
    ipcall::Client clone = client.clone();
    std::vector<ipcall::Pending> pending;
    for (int i = 0; i < 8; i++) {
        pending.push_back(clone.send("call " + std::to_string(i)));
    }
    for (int i = 7; i >= 0; i--) {
        CHECK(text(pending[static_cast<size_t>(i)].wait()) == "call " + std::to_string(i));
        expect_error(IPCALL_E_CLOSED, [&] { pending[static_cast<size_t>(i)].wait(); });
    }

    // Several threads share one client.
    std::vector<std::thread> callers;
    std::atomic<int> good{0};
    for (int t = 0; t < 4; t++) {
        callers.emplace_back([&client, &good, t] {
            for (int i = 0; i < 25; i++) {
                std::string message = "thread " + std::to_string(t) + " call " + std::to_string(i);
                if (text(client.call(message)) == message) {
                    good++;
                }
            }
        });
    }
    for (auto &caller : callers) {
        caller.join();
    }
    CHECK(good == 100);

    server.close();
    worker.join();
    expect_error(IPCALL_E_CLOSED, [&] { server.recv(); });
}

static void test_errors(const std::string &kind) {
    expect_error(IPCALL_E_INVALID_NAME, [] { ipcall::Server::bind("no-colon"); });
    expect_error(IPCALL_E_INVALID_NAME, [] { ipcall::Server::bind_unique("carrier-pigeon"); });
    ipcall::Server server = ipcall::Server::bind_unique(kind, ipcall::ServerOptions().max_message_size(64));
    expect_error(IPCALL_E_ADDR_IN_USE, [&] { ipcall::Server::bind(server.name()); });
    expect_error(IPCALL_E_NOT_FOUND, [&] { ipcall::Client::connect(server.name() + ".missing"); });
    expect_error(IPCALL_E_NOT_FOUND, [&] { ipcall::Client::connect(server.name() + ".missing", 10ms); });

    CHECK(!server.try_recv().has_value());
    CHECK(!server.recv_for(5ms).has_value());
    CHECK(server.fd() >= 0);

    ipcall::ClientOptions small;
    small.max_message_size(8);
    ipcall::Client client = connect_while_serving(server, &small);
    expect_error(IPCALL_E_TOO_LARGE, [&] { client.send(std::string(9, 'x')); });
    ipcall::Client roomy = connect_while_serving(server);
    expect_error(IPCALL_E_TOO_LARGE, [&] { roomy.call(std::string(65, 'x')); });

    // Timeouts: a call abandoned, a pending that stays in flight with
    // try_wait and is abandoned by wait_for.
    ipcall::Error timeout = expect_error(IPCALL_E_TIMEOUT, [&] { client.call("slow", 5ms); });
    CHECK(std::strstr(timeout.what(), server.name().c_str()) != nullptr);
    server.recv().reply("late");
    ipcall::Pending pending = client.send("p");
    CHECK(!pending.try_wait().has_value());
    ipcall::Request request = server.recv();
    CHECK(request.text() == "p");
    expect_error(IPCALL_E_TOO_LARGE, [&] { request.reply("far too long for 8"); });
    expect_error(IPCALL_E_NO_REPLY, [&] { pending.wait(); });
    ipcall::Pending abandoned = client.send("q");
    expect_error(IPCALL_E_TIMEOUT, [&] { abandoned.wait_for(1ms); });
    expect_error(IPCALL_E_CLOSED, [&] { abandoned.wait(); });

    // One-shot: accept with a timeout.
    ipcall::Server once = ipcall::Server::bind_unique(kind, ipcall::ServerOptions().one_shot());
    CHECK(!once.accept(5ms));
    ipcall::Client only = connect_while_serving(once);
    CHECK(once.accept(ipcall::forever));
    expect_error(IPCALL_E_NOT_FOUND, [&] { ipcall::Client::connect(once.name()); });

    // Moving: the moved-to object owns the handle, the moved-from is empty.
    ipcall::Server moved = std::move(server);
    CHECK(moved.get() != nullptr && server.get() == nullptr);  // NOLINT(bugprone-use-after-move)
    ipcall::Pending disconnected = roomy.send("queued");
    { ipcall::Server gone = std::move(moved); }
    expect_error(IPCALL_E_DISCONNECTED, [&] { disconnected.wait(); });
}

// drain: a request taken before is answered and drain reports true; a
// request left unanswered makes it report false at its timeout.
static void test_drain(const std::string &kind) {
    ipcall::Server server = ipcall::Server::bind_unique(kind);
    ipcall::Client client = connect_while_serving(server);
    ipcall::Pending owed = client.send("taken");
    ipcall::Request taken = server.recv();
    std::thread answer([&] {
        // drain (below) waits for this answer, whenever it comes.
        taken.reply("answered");
    });
    CHECK(server.drain());
    answer.join();
    CHECK(text(owed.wait()) == "answered");
    expect_error(IPCALL_E_DISCONNECTED, [&] { client.call("after"); });
    expect_error(IPCALL_E_NOT_FOUND, [&] { ipcall::Client::connect(server.name()); });

    ipcall::Server held_server = ipcall::Server::bind_unique(kind);
    ipcall::Client second = connect_while_serving(held_server);
    ipcall::Pending unanswered = second.send("held");
    std::optional<ipcall::Request> held = held_server.recv();
    CHECK(!held_server.drain(10ms));
    held.reset();
    expect_error(IPCALL_E_NO_REPLY, [&] { unanswered.wait(); });
}

// The limit setters chain and check their arguments; max_connections
// refuses the client over it with IPCALL_E_IO.
static void test_limits() {
    expect_error(IPCALL_E_INVALID, [] { ipcall::ServerOptions().reply_timeout(0ms); });
    expect_error(IPCALL_E_INVALID, [] { ipcall::ServerOptions().frame_timeout(0ms); });
    ipcall::ServerOptions options;
    options.max_queued_reply_bytes(1 << 20).reply_timeout(10s).frame_timeout(ipcall::forever).max_connections(1);
    ipcall::Server server = ipcall::Server::bind_unique("unix", options);
    ipcall::Client first = connect_while_serving(server);
    ipcall::Error refused = expect_error(IPCALL_E_IO, [&] { ipcall::Client::connect(server.name()); });
    CHECK(std::strstr(refused.what(), "maximum number of connections") != nullptr);
}

// Every server wait mode with every client wait mode carries calls over
// shm:; a value that names no mode throws IPCALL_E_INVALID.
static void test_wait_modes() {
    const ipcall::WaitMode modes[] = {ipcall::WaitMode::Adaptive, ipcall::WaitMode::Spin, ipcall::WaitMode::Block};
    for (ipcall::WaitMode server_mode : modes) {
        ipcall::Server server = ipcall::Server::bind_unique("shm", ipcall::ServerOptions().wait_mode(server_mode));
        std::thread serving([&] {
            for (;;) {
                try {
                    ipcall::Request request = server.recv();
                    request.reply(request.data());
                } catch (const ipcall::Error &e) {
                    CHECK(e.status() == IPCALL_E_CLOSED);
                    return;
                }
            }
        });
        for (ipcall::WaitMode client_mode : modes) {
            ipcall::ClientOptions options;
            options.wait_mode(client_mode).max_message_size(1 << 20);
            ipcall::Client client = ipcall::Client::connect(server.name(), 10s, &options);
            for (int i = 0; i < 20; i++) {
                CHECK(text(client.call("mode", 60s)) == "mode");
            }
        }
        server.close();
        serving.join();
    }
    expect_error(IPCALL_E_INVALID, [] { ipcall::ClientOptions().wait_mode(static_cast<ipcall::WaitMode>(3)); });
    expect_error(IPCALL_E_INVALID, [] { ipcall::ServerOptions().wait_mode(static_cast<ipcall::WaitMode>(99)); });
}

// Connection names chain, and a bad one throws IPCALL_E_INVALID (an
// embedded NUL too, which C would silently cut the name at).
static void test_connection_names() {
    ipcall::ClientOptions options;
    options.connection_name("c++ client").max_message_size(1024);
    ipcall::ServerOptions().connection_name(std::string(256, 'n'));
    expect_error(IPCALL_E_INVALID, [] { ipcall::ClientOptions().connection_name(""); });
    expect_error(IPCALL_E_INVALID, [] { ipcall::ServerOptions().connection_name(std::string(257, 'n')); });
    expect_error(IPCALL_E_INVALID, [] { ipcall::ClientOptions().connection_name("new\nline"); });
    ipcall::Error nul = expect_error(IPCALL_E_INVALID, [] { ipcall::ClientOptions().connection_name(std::string("a\0b", 3)); });
    CHECK(std::strstr(nul.what(), "NUL") != nullptr);
}

// The event-loop methods: try_send, try_call, try_call_spin, fd, progress, progress_spin and Pending::try_wait,
// driven from this one thread with poll(2) while a thread serves.
static void test_event_loop(const std::string &kind) {
    ipcall::Server server = ipcall::Server::bind_unique(kind);
    std::thread serving([&] {
        try {
            for (;;) {
                ipcall::Request request = server.recv();
                request.reply(request.data());
            }
        } catch (const ipcall::Error &e) {
            CHECK(e.status() == IPCALL_E_CLOSED);
        }
    });
    ipcall::Client client = ipcall::Client::connect(server.name(), 10s);
    int fd = client.fd();
    CHECK(fd >= 0 && client.fd() == fd);
    struct pollfd idle = {fd, POLLIN, 0};
    CHECK(poll(&idle, 1, 0) == 0);
    std::vector<std::pair<std::string, ipcall::Pending>> pendings;
    int sent = 0;
    int done = 0;
    const int calls = 300;
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (done < calls) {
        CHECK(std::chrono::steady_clock::now() < deadline);
        while (sent < calls) {
            std::string request = kind + " call " + std::to_string(sent);
            std::optional<ipcall::Pending> pending = client.try_send(request);
            if (!pending) {
                break;
            }
            pendings.emplace_back(request, std::move(*pending));
            sent++;
        }
        // About to sleep with calls pending: a brief spin first (it may
        // catch a reply only over shm:).
        bool caught = !pendings.empty() && client.progress_spin();
        CHECK(!caught || kind == "shm");
        if (!caught) {
            struct pollfd ready = {fd, POLLIN, 0};
            if (poll(&ready, 1, 1000) <= 0) {
                continue;
            }
            client.progress();
        }
        for (auto it = pendings.begin(); it != pendings.end();) {
            std::optional<ipcall::Buffer> reply = it->second.try_wait();
            if (!reply) {
                ++it;
                continue;
            }
            CHECK(text(*reply) == it->first);
            it = pendings.erase(it);
            done++;
        }
    }
    // try_call (and, every other call, try_call_spin): each call looked at
    // right away; one not answered yet is waited for through the
    // descriptor only.
    for (int i = 0; i < 100; i++) {
        std::string request = kind + " try_call " + std::to_string(i);
        std::optional<ipcall::Pending> pending = i % 2 == 0 ? client.try_call(request) : client.try_call_spin(request);
        CHECK(pending.has_value());
        std::optional<ipcall::Buffer> reply = pending->try_wait();
        while (!reply) {
            CHECK(std::chrono::steady_clock::now() < deadline);
            struct pollfd ready = {fd, POLLIN, 0};
            if (poll(&ready, 1, 1000) <= 0) {
                continue;
            }
            client.progress();
            reply = pending->try_wait();
        }
        CHECK(text(*reply) == request);
    }
    client.progress();
    struct pollfd after = {fd, POLLIN, 0};
    CHECK(poll(&after, 1, 50) == 0);
    server.close();
    serving.join();
}

// A pool of two members: two calls in flight go one to each (the least
// loaded member takes the next call), and a plain bind of the name fails.
static void test_pool(const std::string &kind) {
    std::string name = kind + ":/tmp/ipcall-cpp-pool-" + std::to_string(getpid());
    ipcall::Server a = ipcall::Server::bind(name, ipcall::ServerOptions().pool());
    ipcall::Server b = ipcall::Server::bind(name, ipcall::ServerOptions().pool());
    expect_error(IPCALL_E_ADDR_IN_USE, [&] { ipcall::Server::bind(name); });
    ipcall::Client client = ipcall::Client::connect(name);
    ipcall::Pending first = client.send("one");
    ipcall::Pending second = client.send("two");
    a.recv().reply("from a");
    b.recv().reply("from b");
    ipcall::Buffer replies[] = {first.wait(), second.wait()};
    std::string got[] = {std::string(replies[0].begin(), replies[0].end()),
                         std::string(replies[1].begin(), replies[1].end())};
    CHECK(got[0] != got[1]);
    for (const std::string &reply : got) {
        CHECK(reply == "from a" || reply == "from b");
    }
}

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    CHECK(ipcall::version() == ipcall_version());
    test_connection_names();
    if (kind_available("unix", "the C++ limit tests")) {
        test_limits();
    }
    if (kind_available("shm", "the C++ wait-mode tests")) {
        test_wait_modes();
    }
    int kinds_run = 0;
    for (const char *kind : ALL_KINDS) {
        if (!kind_available(kind, "the C++ wrapper tests")) {
            continue;
        }
        test_echo_and_views(kind);
        test_errors(kind);
        test_drain(kind);
        test_event_loop(kind);
        if (std::string(kind) != "mem") {
            test_pool(kind);
        }
        std::printf("transport %s: all C++ wrapper tests passed\n", kind);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    return 0;
}
