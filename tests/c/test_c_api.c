/* The C API, tested through the installed header and library: every status
 * triggered and checked, over every transport this build provides.
 *
 * IPCALL_E_PANIC cannot be provoked through the API without a bug in ipcall;
 * the panic boundary is tested in rust/ipcall-ffi/src/tests.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "connect.h"
#include "script.h"

/* A pointer value no ipcall function returns, to check that out-parameters
 * are left alone on failure. */
#define SENTINEL ((void *)(uintptr_t)0x5e17)

static const uint8_t *bytes(const char *text) { return (const uint8_t *)text; }

/* ----- status table, strings, versions --------------------------------- */

static void test_status_numbers_and_strings(void) {
    /* The numbers are ABI: fixed forever (docs/C-API.md). */
    const struct {
        ipcall_status status;
        unsigned number;
    } table[] = {
        {IPCALL_OK, 0},
        {IPCALL_E_DISCONNECTED, 1},
        {IPCALL_E_NO_REPLY, 2},
        {IPCALL_E_REMOTE, 3},
        {IPCALL_E_TIMEOUT, 4},
        {IPCALL_E_CLOSED, 5},
        {IPCALL_E_TOO_LARGE, 6},
        {IPCALL_E_ADDR_IN_USE, 7},
        {IPCALL_E_NOT_FOUND, 8},
        {IPCALL_E_PERMISSION_DENIED, 9},
        {IPCALL_E_INVALID_NAME, 10},
        {IPCALL_E_PROTOCOL, 11},
        {IPCALL_E_IO, 12},
        {IPCALL_E_INVALID, 100},
        {IPCALL_E_PANIC, 101},
    };
    CHECK(sizeof(ipcall_status) == 4);
    for (size_t i = 0; i < COUNT_OF(table); i++) {
        CHECK((unsigned)table[i].status == table[i].number);
        const char *text = ipcall_strerror(table[i].status);
        CHECK(text != NULL && text[0] != '\0' && strcmp(text, "unknown status") != 0);
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(text, ipcall_strerror(table[j].status)) != 0);
        }
    }
    CHECK(strcmp(ipcall_strerror(13), "unknown status") == 0);
    CHECK(strcmp(ipcall_strerror(0xffffffffu), "unknown status") == 0);

    char header_version[64];
    snprintf(header_version, sizeof header_version, "%d.%d.%d", IPCALL_VERSION_MAJOR, IPCALL_VERSION_MINOR,
             IPCALL_VERSION_PATCH);
    CHECK(strcmp(ipcall_version(), header_version) == 0);
    CHECK(ipcall_last_error_message() != NULL);
}

static void test_buf_free_accepts_null_and_zeroed(void) {
    ipcall_buf_free(NULL);
    ipcall_buf zeroed = {0};
    ipcall_buf_free(&zeroed);
    CHECK(zeroed.data == NULL && zeroed.len == 0);
    /* Every _free accepts NULL. */
    ipcall_server_free(NULL);
    ipcall_request_free(NULL);
    ipcall_client_free(NULL);
    ipcall_pending_free(NULL);
    ipcall_server_options_free(NULL);
    ipcall_client_options_free(NULL);
}

/* ----- IPCALL_E_INVALID and IPCALL_E_INVALID_NAME ---------------------- */

static void test_invalid_arguments(void) {
    ipcall_server *server = SENTINEL;
    ipcall_client *client = SENTINEL;
    CHECK_STATUS(ipcall_server_bind(NULL, NULL, &server), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "name is NULL") != NULL);
    CHECK_STATUS(ipcall_server_bind("mem:c-invalid", NULL, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_bind_unique(NULL, NULL, &server), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_bind_unique("mem", NULL, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_connect(NULL, 0, &client), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_connect("mem:c-invalid", 0, NULL), IPCALL_E_INVALID);
    CHECK(server == SENTINEL && client == SENTINEL);

    CHECK_OK(ipcall_server_bind("mem:c-invalid", NULL, &server));
    CHECK_OK(ipcall_client_connect("mem:c-invalid", 0, &client));
    ipcall_request *request = SENTINEL;
    ipcall_pending *pending = SENTINEL;
    ipcall_buf reply = {0};
    CHECK_STATUS(ipcall_server_recv(NULL, 0, &request), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_recv(server, 0, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_recv(server, -2, &request), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "-2") != NULL);
    CHECK_STATUS(ipcall_server_accept(NULL, 0), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_accept(server, -5), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_close(NULL), IPCALL_E_INVALID);
    CHECK(ipcall_server_name(NULL) == NULL);
    CHECK(ipcall_server_fd(NULL) == -1);
    CHECK(ipcall_client_name(NULL) == NULL);
    CHECK_STATUS(ipcall_client_call(NULL, bytes("x"), 1, -1, &reply), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_call(client, NULL, 1, -1, &reply), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_call(client, bytes("x"), 1, -1, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_call(client, bytes("x"), 1, -7, &reply), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_send(NULL, bytes("x"), 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_send(client, NULL, 3, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_send(client, bytes("x"), 1, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_clone(NULL, &client), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_clone(client, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_pending_wait(NULL, -1, &reply), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_pending_try_wait(NULL, &reply), IPCALL_E_INVALID);
    CHECK(request == SENTINEL && pending == SENTINEL && reply.data == NULL);
    /* Nothing was sent by the refused calls. */
    CHECK_STATUS(ipcall_server_recv(server, 0, &request), IPCALL_E_TIMEOUT);

    /* A valid send, then invalid waits on it: the call stays in flight. */
    CHECK_OK(ipcall_client_send(client, NULL, 0, &pending));
    CHECK_STATUS(ipcall_pending_wait(pending, -1, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_pending_wait(pending, -3, &reply), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_pending_try_wait(pending, NULL), IPCALL_E_INVALID);
    CHECK_OK(ipcall_server_recv(server, -1, &request));
    const uint8_t *data = SENTINEL;
    size_t len = 99;
    ipcall_peer peer;
    CHECK_STATUS(ipcall_request_data(NULL, &data, &len), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_data(request, NULL, &len), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_data(request, &data, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_peer(NULL, &peer), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_peer(request, NULL), IPCALL_E_INVALID);
    uint64_t nats_id = 7;
    const char *peer_name = SENTINEL;
    CHECK_STATUS(ipcall_request_peer_nats_client_id(NULL, &nats_id), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_peer_nats_client_id(request, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_peer_name(NULL, &peer_name, &len), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_peer_name(request, NULL, &len), IPCALL_E_INVALID);
    CHECK(nats_id == 7 && peer_name == SENTINEL);
    CHECK(data == SENTINEL && len == 99);
    CHECK_OK(ipcall_request_data(request, &data, &len));
    CHECK(data == NULL && len == 0); /* an empty request */
    CHECK_STATUS(ipcall_request_reply(NULL, bytes("x"), 1), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_fail(NULL, bytes("x"), 1), IPCALL_E_INVALID);
    /* An invalid answer still consumes the request: the caller gets NO_REPLY. */
    CHECK_STATUS(ipcall_request_reply(request, NULL, 5), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_NO_REPLY);
    ipcall_pending_free(pending);

    ipcall_server_options *options = SENTINEL;
    CHECK_STATUS(ipcall_server_options_new(NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_max_message_size(NULL, 1), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_one_shot(NULL, true), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_allow_uid(NULL, 1), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_allow_gid(NULL, 1), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_allow_any_uid(NULL, true), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_handshake_timeout(NULL, 10), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_ring_size(NULL, 4096), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_options_new(NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_options_set_max_message_size(NULL, 1), IPCALL_E_INVALID);
    CHECK(options == SENTINEL);
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_STATUS(ipcall_server_options_set_handshake_timeout(options, 0), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_handshake_timeout(options, -2), IPCALL_E_INVALID);
    CHECK_OK(ipcall_server_options_set_handshake_timeout(options, -1));
    CHECK_OK(ipcall_server_options_set_handshake_timeout(options, 250));
    CHECK_OK(ipcall_server_options_allow_uid(options, 12345));
    CHECK_OK(ipcall_server_options_allow_gid(options, 12345));
    CHECK_OK(ipcall_server_options_set_allow_any_uid(options, false));
    CHECK_OK(ipcall_server_options_set_ring_size(options, 65536));
    ipcall_server_options_free(options);

    ipcall_client_free(client);
    ipcall_server_free(server);
}

static void test_invalid_names(void) {
    ipcall_server *server = SENTINEL;
    ipcall_client *client = SENTINEL;
    CHECK_STATUS(ipcall_server_bind("no-colon", NULL, &server), IPCALL_E_INVALID_NAME);
    CHECK(strstr(ipcall_last_error_message(), "no-colon") != NULL);
    CHECK_STATUS(ipcall_server_bind("carrier-pigeon:coop", NULL, &server), IPCALL_E_INVALID_NAME);
    CHECK_STATUS(ipcall_server_bind("mem:", NULL, &server), IPCALL_E_INVALID_NAME);
    CHECK_STATUS(ipcall_server_bind("mem:\xff\xfe", NULL, &server), IPCALL_E_INVALID_NAME);
    CHECK_STATUS(ipcall_server_bind_unique("carrier-pigeon", NULL, &server), IPCALL_E_INVALID_NAME);
    CHECK_STATUS(ipcall_client_connect("", 0, &client), IPCALL_E_INVALID_NAME);
    CHECK_STATUS(ipcall_client_connect("mem:tab\there", 100, &client), IPCALL_E_INVALID_NAME);
    CHECK(server == SENTINEL && client == SENTINEL);
}

/* ----- IPCALL_E_PERMISSION_DENIED and IPCALL_E_IO ---------------------- */

/* bind_unique of a file-system kind refuses a runtime directory that is not
 * a private directory: here $XDG_RUNTIME_DIR/ipcall is a regular file. */
static void test_permission_denied(void) {
    char base[] = "/tmp/ipcall-c-test-XXXXXX";
    CHECK(mkdtemp(base) != NULL);
    char trap[sizeof base + 16];
    snprintf(trap, sizeof trap, "%s/ipcall", base);
    FILE *file = fopen(trap, "w");
    CHECK(file != NULL);
    fclose(file);
    const char *saved = getenv("XDG_RUNTIME_DIR");
    char *saved_copy = saved ? strdup(saved) : NULL;
    CHECK(setenv("XDG_RUNTIME_DIR", base, 1) == 0);

    ipcall_server *server = SENTINEL;
    CHECK_STATUS(ipcall_server_bind_unique("unix", NULL, &server), IPCALL_E_PERMISSION_DENIED);
    CHECK(strstr(ipcall_last_error_message(), "unix") != NULL);
    CHECK(server == SENTINEL);

    if (saved_copy) {
        CHECK(setenv("XDG_RUNTIME_DIR", saved_copy, 1) == 0);
        free(saved_copy);
    } else {
        CHECK(unsetenv("XDG_RUNTIME_DIR") == 0);
    }
    CHECK(unlink(trap) == 0 && rmdir(base) == 0);
}

/* A process out of file descriptors cannot create a server's pollable
 * descriptor: IPCALL_E_IO, with the OS's reason in the message. */
static void test_io_error_when_out_of_descriptors(void) {
    struct rlimit saved;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    int lowest_free = dup(0);
    CHECK(lowest_free >= 0);
    close(lowest_free);
    struct rlimit tight = saved;
    tight.rlim_cur = (rlim_t)lowest_free;
    if (setrlimit(RLIMIT_NOFILE, &tight) != 0) {
        printf("SKIP IPCALL_E_IO test: setrlimit(RLIMIT_NOFILE) refused: %s\n", strerror(errno));
        return;
    }
    ipcall_server *server = SENTINEL;
    ipcall_status status = ipcall_server_bind("mem:c-out-of-descriptors", NULL, &server);
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK_STATUS(status, IPCALL_E_IO);
    CHECK(strstr(ipcall_last_error_message(), "c-out-of-descriptors") != NULL);
    CHECK(server == SENTINEL);
}

/* ----- per-transport tests ---------------------------------------------- */

/* A server bound to a fresh name of `kind`, with `options` (may be NULL). */
static ipcall_server *bind_fresh(const char *kind, const ipcall_server_options *options) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, options, &server));
    CHECK(ipcall_server_name(server) != NULL);
    CHECK(strncmp(ipcall_server_name(server), kind, strlen(kind)) == 0);
    return server;
}

/* Receives one request and checks its bytes are `expected`. */
static ipcall_request *recv_expecting(const ipcall_server *server, const char *expected) {
    ipcall_request *request = NULL;
    CHECK_OK(ipcall_server_recv(server, -1, &request));
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(ipcall_request_data(request, &data, &len));
    CHECK(len == strlen(expected) && memcmp(data, expected, len) == 0);
    return request;
}

static void *serve_script_thread(void *server) {
    serve_script(server);
    return NULL;
}

/* The peer's script, run by the C client against the C server loop. */
static void test_script(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve_script_thread, server) == 0);
    client_script(client, 40);
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

static void test_request_data_and_peer(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    ipcall_pending *pending = NULL;
    const uint8_t binary[] = {0, 1, 2, 0, 255};
    CHECK_OK(ipcall_client_send(client, binary, sizeof binary, &pending));
    ipcall_request *request = NULL;
    CHECK_OK(ipcall_server_recv(server, -1, &request));
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(ipcall_request_data(request, &data, &len));
    CHECK(len == sizeof binary && memcmp(data, binary, len) == 0);
    ipcall_peer peer;
    CHECK_OK(ipcall_request_peer(request, &peer));
    /* Same process: where the transport can tell, it is us. */
    CHECK(peer.pid == -1 || peer.pid == (int64_t)getpid());
    CHECK(peer.uid == -1 || peer.uid == (int64_t)getuid());
    CHECK(peer.gid == -1 || peer.gid == (int64_t)getgid());
    /* Only nats: requests tell a NATS client id and a connection name:
     * IPCALL_E_NOT_FOUND with a message, the out-parameters untouched. */
    uint64_t nats_id = 7;
    CHECK_STATUS(ipcall_request_peer_nats_client_id(request, &nats_id), IPCALL_E_NOT_FOUND);
    CHECK(nats_id == 7 && strstr(ipcall_last_error_message(), "NATS client id") != NULL);
    const char *peer_name = SENTINEL;
    len = 99;
    CHECK_STATUS(ipcall_request_peer_name(request, &peer_name, &len), IPCALL_E_NOT_FOUND);
    CHECK(peer_name == SENTINEL && len == 99 && strstr(ipcall_last_error_message(), "peer name") != NULL);
    CHECK_OK(ipcall_request_reply(request, NULL, 0));
    ipcall_buf reply = {SENTINEL, 42};
    CHECK_OK(ipcall_pending_wait(pending, -1, &reply));
    CHECK(reply.data == NULL && reply.len == 0); /* an empty reply */
    ipcall_pending_free(pending);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

/* IPCALL_E_REMOTE (with payload), IPCALL_E_NO_REPLY. */
static void test_remote_and_no_reply(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    ipcall_pending *pending = NULL;
    ipcall_buf reply = {0};

    CHECK_OK(ipcall_client_send(client, bytes("q"), 1, &pending));
    CHECK_OK(ipcall_request_fail(recv_expecting(server, "q"), bytes("bad thing"), 9));
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_REMOTE);
    CHECK(buf_equals(&reply, "bad thing", 9));
    CHECK(strstr(ipcall_last_error_message(), "9 byte") != NULL);
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);

    CHECK_OK(ipcall_client_send(client, bytes("e"), 1, &pending));
    CHECK_OK(ipcall_request_fail(recv_expecting(server, "e"), NULL, 0));
    reply.data = SENTINEL;
    CHECK_STATUS(ipcall_pending_wait(pending, 5000, &reply), IPCALL_E_REMOTE);
    CHECK(reply.data == NULL && reply.len == 0); /* an empty payload */
    ipcall_pending_free(pending);

    CHECK_OK(ipcall_client_send(client, bytes("n"), 1, &pending));
    ipcall_request_free(recv_expecting(server, "n"));
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_NO_REPLY);
    ipcall_pending_free(pending);

    ipcall_client_free(client);
    ipcall_server_free(server);
}

/* IPCALL_E_TIMEOUT in each of its meanings; a late reply never reaches the
 * next call. */
static void test_timeouts(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    ipcall_request *request = SENTINEL;
    CHECK_STATUS(ipcall_server_recv(server, 0, &request), IPCALL_E_TIMEOUT);
    CHECK_STATUS(ipcall_server_recv(server, 10, &request), IPCALL_E_TIMEOUT);
    CHECK(request == SENTINEL);

    /* A call that times out is abandoned: its late reply is discarded. */
    ipcall_buf reply = {0};
    CHECK_STATUS(ipcall_client_call(client, bytes("first"), 5, 10, &reply), IPCALL_E_TIMEOUT);
    CHECK(reply.data == NULL);
    CHECK_OK(ipcall_request_reply(recv_expecting(server, "first"), bytes("late"), 4));
    ipcall_pending *pending = NULL;
    CHECK_OK(ipcall_client_send(client, bytes("second"), 6, &pending));
    CHECK_OK(ipcall_request_reply(recv_expecting(server, "second"), bytes("second"), 6));
    CHECK_OK(ipcall_pending_wait(pending, -1, &reply));
    CHECK(buf_equals(&reply, "second", 6));
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);

    /* try_wait: TIMEOUT means "not yet", and the call stays in flight. */
    CHECK_OK(ipcall_client_send(client, bytes("x"), 1, &pending));
    CHECK_STATUS(ipcall_pending_try_wait(pending, &reply), IPCALL_E_TIMEOUT);
    CHECK(strstr(ipcall_last_error_message(), "still in flight") != NULL);
    CHECK_OK(ipcall_request_reply(recv_expecting(server, "x"), bytes("x!"), 2));
    for (;;) { /* the answer may take a moment to travel */
        ipcall_status status = ipcall_pending_try_wait(pending, &reply);
        if (status == IPCALL_OK) {
            break;
        }
        CHECK_STATUS(status, IPCALL_E_TIMEOUT);
        usleep(1000);
    }
    CHECK(buf_equals(&reply, "x!", 2));
    ipcall_buf_free(&reply);
    /* Spent: its outcome was handed out. */
    CHECK_STATUS(ipcall_pending_try_wait(pending, &reply), IPCALL_E_CLOSED);
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_CLOSED);
    ipcall_pending_free(pending);

    /* wait with a timeout: TIMEOUT abandons the call and spends the pending. */
    CHECK_OK(ipcall_client_send(client, bytes("y"), 1, &pending));
    CHECK_STATUS(ipcall_pending_wait(pending, 10, &reply), IPCALL_E_TIMEOUT);
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_CLOSED);
    CHECK_OK(ipcall_request_reply(recv_expecting(server, "y"), bytes("too late"), 8));
    ipcall_pending_free(pending);
    CHECK_OK(ipcall_client_send(client, bytes("z"), 1, &pending));
    CHECK_STATUS(ipcall_pending_wait(pending, 0, &reply), IPCALL_E_TIMEOUT);
    ipcall_request_free(recv_expecting(server, "z"));
    ipcall_pending_free(pending);
    CHECK(reply.data == NULL);

    /* Freeing a pending call unanswered abandons it; the server may still
     * answer without error. */
    CHECK_OK(ipcall_client_send(client, bytes("w"), 1, &pending));
    ipcall_pending_free(pending);
    CHECK_OK(ipcall_request_reply(recv_expecting(server, "w"), bytes("w"), 1));

    ipcall_client_free(client);
    ipcall_server_free(server);
}

/* IPCALL_E_ADDR_IN_USE, IPCALL_E_NOT_FOUND, and connect's TIMEOUT. */
static void test_names_in_use_and_missing(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    const char *name = ipcall_server_name(server);
    ipcall_server *second = SENTINEL;
    CHECK_STATUS(ipcall_server_bind(name, NULL, &second), IPCALL_E_ADDR_IN_USE);
    CHECK(strstr(ipcall_last_error_message(), name) != NULL);
    CHECK(second == SENTINEL);

    char missing[4200];
    snprintf(missing, sizeof missing, "%s.missing", name);
    ipcall_client *client = SENTINEL;
    CHECK_STATUS(ipcall_client_connect(missing, 0, &client), IPCALL_E_NOT_FOUND);
    /* Waiting for a server that never comes still says "nobody is there". */
    CHECK_STATUS(ipcall_client_connect(missing, 20, &client), IPCALL_E_NOT_FOUND);
    CHECK(client == SENTINEL);

    /* Once the server is gone, its name is free and unknown again. */
    char copy[4200];
    snprintf(copy, sizeof copy, "%s", name);
    ipcall_server_free(server);
    CHECK_STATUS(ipcall_client_connect(copy, 0, &client), IPCALL_E_NOT_FOUND);
    CHECK_OK(ipcall_server_bind(copy, NULL, &second));
    ipcall_server_free(second);
}

/* IPCALL_E_TOO_LARGE on the request side and on the reply side. */
static void test_too_large(const char *kind) {
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_max_message_size(options, 1024));
    ipcall_server *server = bind_fresh(kind, options);
    ipcall_server_options_free(options); /* bind copied them */

    ipcall_client_options *client_options = NULL;
    CHECK_OK(ipcall_client_options_new(&client_options));
    CHECK_OK(ipcall_client_options_set_max_message_size(client_options, 100));
    ipcall_client *client = connect_with_options(server, client_options);
    ipcall_client_options_free(client_options);
    ipcall_client *roomy = connect_to(server);

    static uint8_t big[2048];
    ipcall_buf reply = {0};
    ipcall_pending *pending = SENTINEL;
    CHECK_STATUS(ipcall_client_call(roomy, big, 1025, -1, &reply), IPCALL_E_TOO_LARGE);
    CHECK(strstr(ipcall_last_error_message(), "1025") != NULL);
    CHECK_STATUS(ipcall_client_send(client, big, 101, &pending), IPCALL_E_TOO_LARGE);
    CHECK(pending == SENTINEL && reply.data == NULL);

    /* At the limit it goes through. */
    CHECK_OK(ipcall_client_send(roomy, big, 1024, &pending));
    ipcall_request *request = NULL;
    CHECK_OK(ipcall_server_recv(server, -1, &request));
    CHECK_OK(ipcall_request_reply(request, big, 1024));
    CHECK_OK(ipcall_pending_wait(pending, -1, &reply));
    CHECK(buf_equals(&reply, big, 1024));
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);

    /* A reply (or fail payload) over the caller's limit is refused at the
     * server, and the caller gets NO_REPLY: nothing is truncated. */
    CHECK_OK(ipcall_client_send(client, bytes("r"), 1, &pending));
    CHECK_STATUS(ipcall_request_reply(recv_expecting(server, "r"), big, 101), IPCALL_E_TOO_LARGE);
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_NO_REPLY);
    ipcall_pending_free(pending);
    CHECK_OK(ipcall_client_send(client, bytes("f"), 1, &pending));
    CHECK_STATUS(ipcall_request_fail(recv_expecting(server, "f"), big, 101), IPCALL_E_TOO_LARGE);
    CHECK_STATUS(ipcall_pending_wait(pending, -1, &reply), IPCALL_E_NO_REPLY);
    ipcall_pending_free(pending);

    ipcall_client_free(roomy);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

static void *recv_until_closed_thread(void *server) {
    ipcall_request *request = SENTINEL;
    CHECK_STATUS(ipcall_server_recv(server, -1, &request), IPCALL_E_CLOSED);
    CHECK(request == SENTINEL);
    return NULL;
}

/* IPCALL_E_DISCONNECTED and IPCALL_E_CLOSED; requests outlive servers. */
static void test_disconnected_and_closed(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    ipcall_pending *queued = NULL;
    ipcall_pending *answered_late = NULL;
    ipcall_buf reply = {0};

    /* A received request stays answerable after its server is freed. */
    CHECK_OK(ipcall_client_send(client, bytes("kept"), 4, &answered_late));
    ipcall_request *kept = recv_expecting(server, "kept");
    CHECK_OK(ipcall_client_send(client, bytes("queued"), 6, &queued));
    ipcall_server_free(server);
    CHECK_STATUS(ipcall_pending_wait(queued, -1, &reply), IPCALL_E_DISCONNECTED);
    ipcall_pending_free(queued);
    CHECK_STATUS(ipcall_client_call(client, bytes("after"), 5, -1, &reply), IPCALL_E_DISCONNECTED);
    CHECK_OK(ipcall_request_reply(kept, bytes("still here"), 10));
    CHECK_OK(ipcall_pending_wait(answered_late, -1, &reply));
    CHECK(buf_equals(&reply, "still here", 10));
    ipcall_buf_free(&reply);
    ipcall_pending_free(answered_late);
    ipcall_client_free(client);

    /* close wakes a thread blocked in recv with CLOSED; later recvs too. */
    server = bind_fresh(kind, NULL);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, recv_until_closed_thread, server) == 0);
    usleep(20000); /* likely blocked in recv by now; correct either way */
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_request *request = SENTINEL;
    CHECK_STATUS(ipcall_server_recv(server, 0, &request), IPCALL_E_CLOSED);
    CHECK_STATUS(ipcall_server_accept(server, 0), IPCALL_E_CLOSED);
    CHECK(request == SENTINEL);
    CHECK_STATUS(ipcall_client_connect(ipcall_server_name(server), 0, &client), IPCALL_E_NOT_FOUND);
    ipcall_server_free(server);
}

static void *drain_thread(void *server) {
    static ipcall_status status;
    status = ipcall_server_drain(server, -1);
    return &status;
}

/* Graceful drain: the request taken before is answered, later calls and
 * connects are refused at once, drain returns OK once it is answered;
 * TIMEOUT when a request stays unanswered; OK at once when idle. */
static void test_drain(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    ipcall_pending *owed = NULL;
    ipcall_buf reply = {0};
    CHECK_STATUS(ipcall_server_drain(NULL, 0), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_drain(server, -2), IPCALL_E_INVALID);

    CHECK_OK(ipcall_client_send(client, bytes("taken"), 5, &owed));
    ipcall_request *taken = recv_expecting(server, "taken");
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, drain_thread, server) == 0);
    /* Bounded: the drain unbinds the name at once. */
    ipcall_client *late = NULL;
    ipcall_status connected = IPCALL_OK;
    for (int i = 0; i < 3000; i++) {
        connected = ipcall_client_connect(ipcall_server_name(server), 0, &late);
        if (connected == IPCALL_OK) {
            ipcall_client_free(late);
            late = NULL;
        }
        if (connected == IPCALL_E_NOT_FOUND) {
            break;
        }
        usleep(10000);
    }
    CHECK_STATUS(connected, IPCALL_E_NOT_FOUND);
    CHECK_STATUS(ipcall_client_call(client, bytes("after"), 5, -1, &reply), IPCALL_E_DISCONNECTED);
    CHECK_OK(ipcall_request_reply(taken, bytes("answered"), 8));
    CHECK_OK(ipcall_pending_wait(owed, -1, &reply));
    CHECK(buf_equals(&reply, "answered", 8));
    ipcall_buf_free(&reply);
    ipcall_pending_free(owed);
    void *drained = NULL;
    CHECK(pthread_join(thread, &drained) == 0);
    CHECK_STATUS(*(ipcall_status *)drained, IPCALL_OK);
    ipcall_client_free(client);
    ipcall_server_free(server);

    /* A request never answered: TIMEOUT at the timeout, NO_REPLY once freed. */
    server = bind_fresh(kind, NULL);
    client = connect_to(server);
    CHECK_OK(ipcall_client_send(client, bytes("held"), 4, &owed));
    ipcall_request *held = recv_expecting(server, "held");
    CHECK_STATUS(ipcall_server_drain(server, 100), IPCALL_E_TIMEOUT);
    ipcall_request_free(held);
    CHECK_STATUS(ipcall_pending_wait(owed, -1, &reply), IPCALL_E_NO_REPLY);
    ipcall_pending_free(owed);
    ipcall_client_free(client);
    ipcall_server_free(server);

    /* Idle: clean at once, even with no time to wait. */
    server = bind_fresh(kind, NULL);
    CHECK_OK(ipcall_server_drain(server, 0));
    ipcall_server_free(server);
}

/* A one-shot server: accept with a timeout, exactly one client (and its
 * clones), CLOSED once it is gone. */
static void test_one_shot(const char *kind) {
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_one_shot(options, true));
    ipcall_server *server = bind_fresh(kind, options);
    ipcall_server_options_free(options);

    CHECK_STATUS(ipcall_server_accept(server, 0), IPCALL_E_TIMEOUT);
    CHECK_STATUS(ipcall_server_accept(server, 10), IPCALL_E_TIMEOUT);
    ipcall_client *client = connect_to(server);
    CHECK_OK(ipcall_server_accept(server, -1));
    ipcall_client *second = SENTINEL;
    CHECK_STATUS(ipcall_client_connect(ipcall_server_name(server), 0, &second), IPCALL_E_NOT_FOUND);
    CHECK(second == SENTINEL);

    ipcall_client *clone = NULL;
    CHECK_OK(ipcall_client_clone(client, &clone));
    ipcall_client_free(client);
    ipcall_pending *pending = NULL;
    CHECK_OK(ipcall_client_send(clone, bytes("via clone"), 9, &pending));
    CHECK_OK(ipcall_request_reply(recv_expecting(server, "via clone"), bytes("ok"), 2));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_pending_wait(pending, -1, &reply));
    CHECK(buf_equals(&reply, "ok", 2));
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);
    ipcall_client_free(clone);
    ipcall_request *request = SENTINEL;
    CHECK_STATUS(ipcall_server_recv(server, -1, &request), IPCALL_E_CLOSED);
    ipcall_server_free(server);
}

/* The server's descriptor becomes readable when a request is ready. */
static void test_pollable_fd(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    int fd = ipcall_server_fd(server);
    CHECK(fd >= 0);
    ipcall_client *client = connect_to(server);
    ipcall_pending *pending = NULL;
    CHECK_OK(ipcall_client_send(client, bytes("poke"), 4, &pending));
    ipcall_request *request = NULL;
    for (;;) { /* readiness may be spurious: poll, then try */
        struct pollfd entry = {.fd = fd, .events = POLLIN};
        CHECK(poll(&entry, 1, -1) == 1);
        CHECK(entry.revents & POLLIN);
        ipcall_status status = ipcall_server_recv(server, 0, &request);
        if (status == IPCALL_OK) {
            break;
        }
        CHECK_STATUS(status, IPCALL_E_TIMEOUT);
    }
    CHECK_OK(ipcall_request_reply(request, bytes("poked"), 5));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_pending_wait(pending, -1, &reply));
    CHECK(buf_equals(&reply, "poked", 5));
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

/* One client shared by several calling threads, one server by several
 * receiving threads: every reply reaches its own call. */
enum { CALLERS = 4, CALLS_EACH = 50, RECEIVERS = 2 };

struct caller {
    const ipcall_client *client;
    int id;
};

static void *caller_thread(void *arg) {
    const ipcall_client *client = ((struct caller *)arg)->client;
    int id = ((struct caller *)arg)->id;
    for (int i = 0; i < CALLS_EACH; i++) {
        char message[64];
        int len = snprintf(message, sizeof message, "caller %d call %d", id, i);
        ipcall_buf reply = {0};
        CHECK_OK(ipcall_client_call(client, (const uint8_t *)message, (size_t)len, -1, &reply));
        CHECK(buf_equals(&reply, message, (size_t)len));
        ipcall_buf_free(&reply);
    }
    return NULL;
}

static void test_threads(const char *kind) {
    ipcall_server *server = bind_fresh(kind, NULL);
    ipcall_client *client = connect_to(server);
    pthread_t receivers[RECEIVERS], callers[CALLERS];
    struct caller args[CALLERS];
    for (int i = 0; i < RECEIVERS; i++) {
        CHECK(pthread_create(&receivers[i], NULL, serve_script_thread, server) == 0);
    }
    for (int i = 0; i < CALLERS; i++) {
        args[i].client = client;
        args[i].id = i;
        CHECK(pthread_create(&callers[i], NULL, caller_thread, &args[i]) == 0);
    }
    for (int i = 0; i < CALLERS; i++) {
        CHECK(pthread_join(callers[i], NULL) == 0);
    }
    CHECK_OK(ipcall_server_close(server));
    for (int i = 0; i < RECEIVERS; i++) {
        CHECK(pthread_join(receivers[i], NULL) == 0);
    }
    ipcall_client_free(client);
    ipcall_server_free(server);
}

/* ----- IPCALL_E_PROTOCOL (socket transports) ---------------------------- */

struct garbage_server {
    int listener;
};

static void *garbage_thread(void *arg) {
    struct garbage_server *garbage = arg;
    int conn = accept(garbage->listener, NULL, NULL);
    CHECK(conn >= 0);
    const char junk[] = "HTTP/1.1 400 Bad Request\r\nthis is not ipcall\r\n\r\n";
    if (write(conn, junk, sizeof junk) < 0) { /* the client may hang up first */
    }
    char sink[256];
    while (read(conn, sink, sizeof sink) > 0) {
    }
    close(conn);
    return NULL;
}

/* A "server" that answers the handshake with garbage: the client must get
 * IPCALL_E_PROTOCOL (at connect, or at its first call), never a hang. */
static void test_protocol_error(void) {
    if (!kind_available("unix", "IPCALL_E_PROTOCOL test")) {
        return;
    }
    char dir[] = "/tmp/ipcall-c-proto-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    snprintf(address.sun_path, sizeof address.sun_path, "%s/garbage.sock", dir);
    struct garbage_server garbage = {.listener = socket(AF_UNIX, SOCK_STREAM, 0)};
    CHECK(garbage.listener >= 0);
    CHECK(bind(garbage.listener, (struct sockaddr *)&address, sizeof address) == 0);
    CHECK(listen(garbage.listener, 1) == 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, garbage_thread, &garbage) == 0);

    char name[200];
    snprintf(name, sizeof name, "unix:%s", address.sun_path);
    ipcall_client *client = NULL;
    ipcall_status status = ipcall_client_connect(name, 0, &client);
    if (status == IPCALL_OK) {
        ipcall_buf reply = {0};
        status = ipcall_client_call(client, bytes("hello?"), 6, 10000, &reply);
        ipcall_client_free(client);
    }
    CHECK_STATUS(status, IPCALL_E_PROTOCOL);
    CHECK(pthread_join(thread, NULL) == 0);
    close(garbage.listener);
    unlink(address.sun_path);
    rmdir(dir);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_status_numbers_and_strings();
    test_buf_free_accepts_null_and_zeroed();
    test_invalid_arguments();
    test_invalid_names();
    test_permission_denied();
    test_io_error_when_out_of_descriptors();
    test_protocol_error();
    int kinds_run = 0;
    for (size_t k = 0; k < COUNT_OF(ALL_KINDS); k++) {
        const char *kind = ALL_KINDS[k];
        if (!kind_available(kind, "the C API tests")) {
            continue;
        }
        test_script(kind);
        test_request_data_and_peer(kind);
        test_remote_and_no_reply(kind);
        test_timeouts(kind);
        test_names_in_use_and_missing(kind);
        test_too_large(kind);
        test_disconnected_and_closed(kind);
        test_drain(kind);
        test_one_shot(kind);
        test_pollable_fd(kind);
        test_threads(kind);
        printf("transport %s: all C API tests passed\n", kind);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    printf("C API tests passed over %d transport(s)\n", kinds_run);
    return 0;
}
