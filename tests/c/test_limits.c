/* The options through the C API. Wait modes: every server mode with every
 * client mode carries calls over shm:, and a number that names no mode is
 * IPCALL_E_INVALID. Connection names: what is refused at the setters (what
 * a nats: server sees is tested in test_nats_peer.c). The server limits:
 * the setters' invalid arguments, a
 * client over max_connections refused at connect with IPCALL_E_IO, and a
 * client that never reads dropped alone once its queued replies pass
 * max_queued_reply_bytes (rust/ipcall/tests/slow_peer.rs and hostile.rs test
 * the timeouts' effects; their setters' argument checks are here). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Every wait in these tests is bounded by this (a loaded 2-CPU machine). */
#define BOUND_MS 60000

struct echo {
    ipcall_server *server;
    size_t factor; /* each reply is the request repeated this many times */
};

/* Answers every request with its data repeated `factor` times, until the
 * server is closed. */
static void *echo_thread(void *arg) {
    const struct echo *e = arg;
    for (;;) {
        ipcall_request *request = NULL;
        ipcall_status status = ipcall_server_recv(e->server, -1, &request);
        if (status == IPCALL_E_CLOSED) {
            return NULL;
        }
        CHECK_OK(status);
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(ipcall_request_data(request, &data, &len));
        uint8_t *answer = malloc(len * e->factor + 1);
        CHECK(answer != NULL);
        for (size_t i = 0; i < e->factor; i++) {
            memcpy(answer + i * len, data, len);
        }
        /* A dropped client makes the reply fail; that is the point here. */
        (void)ipcall_request_reply(request, answer, len * e->factor);
        free(answer);
    }
}

static void test_invalid_limit_arguments(void) {
    CHECK_STATUS(ipcall_server_options_set_max_queued_reply_bytes(NULL, 1), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_reply_timeout(NULL, 10), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_max_connections(NULL, 1), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_frame_timeout(NULL, 10), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "options") != NULL);

    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_STATUS(ipcall_server_options_set_reply_timeout(options, 0), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "reply timeout") != NULL);
    CHECK_STATUS(ipcall_server_options_set_reply_timeout(options, -2), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "-2") != NULL);
    CHECK_OK(ipcall_server_options_set_reply_timeout(options, -1));
    CHECK_OK(ipcall_server_options_set_reply_timeout(options, 250));
    CHECK_STATUS(ipcall_server_options_set_frame_timeout(options, 0), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "frame timeout") != NULL);
    CHECK_STATUS(ipcall_server_options_set_frame_timeout(options, -7), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "-7") != NULL);
    CHECK_OK(ipcall_server_options_set_frame_timeout(options, -1));
    CHECK_OK(ipcall_server_options_set_frame_timeout(options, 250));
    CHECK_STATUS(ipcall_server_options_set_max_queued_reply_bytes(options, 0), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "0 bytes") != NULL);
    CHECK_STATUS(ipcall_server_options_set_max_connections(options, 0), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "0 connections") != NULL);
    CHECK_OK(ipcall_server_options_set_max_queued_reply_bytes(options, 1u << 20));
    CHECK_OK(ipcall_server_options_set_max_connections(options, 1));
    /* Options with every limit set still bind and serve. */
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("unix", options, &server));
    ipcall_server_options_free(options);
    struct echo e = {.server = server, .factor = 1};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, echo_thread, &e) == 0);
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), BOUND_MS, &client));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(client, (const uint8_t *)"limits", 6, BOUND_MS, &reply));
    CHECK(buf_equals(&reply, "limits", 6));
    ipcall_buf_free(&reply);
    ipcall_client_free(client);
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_server_free(server);
}

static void test_max_connections(const char *kind) {
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_max_connections(options, 1));
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, options, &server));
    ipcall_server_options_free(options);
    struct echo e = {.server = server, .factor = 1};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, echo_thread, &e) == 0);
    const char *name = ipcall_server_name(server);

    ipcall_client *first = NULL;
    CHECK_OK(ipcall_client_connect(name, BOUND_MS, &first));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(first, (const uint8_t *)"1", 1, BOUND_MS, &reply));
    CHECK(buf_equals(&reply, "1", 1));
    ipcall_buf_free(&reply);

    ipcall_client *second = NULL;
    CHECK_STATUS(ipcall_client_connect(name, 0, &second), IPCALL_E_IO);
    CHECK(strstr(ipcall_last_error_message(), "maximum number of connections") != NULL);
    CHECK(second == NULL);

    /* Once the server has seen the first leave, a new client gets in. */
    ipcall_client_free(first);
    ipcall_status status = IPCALL_E_IO;
    for (int i = 0; i < BOUND_MS / 50 && status != IPCALL_OK; i++) {
        status = ipcall_client_connect(name, 0, &second);
        if (status != IPCALL_OK) {
            CHECK_STATUS(status, IPCALL_E_IO);
            usleep(50 * 1000);
        }
    }
    CHECK_OK(status);
    CHECK_OK(ipcall_client_call(second, (const uint8_t *)"2", 1, BOUND_MS, &reply));
    CHECK(buf_equals(&reply, "2", 1));
    ipcall_buf_free(&reply);
    ipcall_client_free(second);

    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_server_free(server);
}

#define UNREAD 32

static void test_reply_budget(const char *kind) {
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_max_queued_reply_bytes(options, 2u << 20));
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, options, &server));
    ipcall_server_options_free(options);
    struct echo e = {.server = server, .factor = 1024};
    pthread_t threads[2];
    for (size_t i = 0; i < COUNT_OF(threads); i++) {
        CHECK(pthread_create(&threads[i], NULL, echo_thread, &e) == 0);
    }
    const char *name = ipcall_server_name(server);

    /* The bad client sends 1 KiB requests whose 1 MiB answers it does not
     * read: they queue far past the 2 MiB budget and the server drops it. */
    ipcall_client *bad = NULL;
    CHECK_OK(ipcall_client_connect(name, BOUND_MS, &bad));
    static uint8_t request[1024];
    memset(request, 2, sizeof request);
    ipcall_pending *unread[UNREAD];
    size_t sent = 0;
    while (sent < UNREAD && ipcall_client_send(bad, request, sizeof request, &unread[sent]) == IPCALL_OK) {
        sent++;
    }
    CHECK(sent > 0);
    size_t disconnected = 0;
    for (size_t i = 0; i < sent; i++) {
        ipcall_buf reply = {0};
        ipcall_status status = ipcall_pending_wait(unread[i], BOUND_MS, &reply);
        if (status == IPCALL_OK) {
            /* An answer that did arrive is whole and unaltered. */
            CHECK(reply.len == 1024 * sizeof request);
            for (size_t j = 0; j < reply.len; j++) {
                CHECK(reply.data[j] == 2);
            }
            ipcall_buf_free(&reply);
        } else {
            CHECK_STATUS(status, IPCALL_E_DISCONNECTED);
            disconnected++;
        }
        ipcall_pending_free(unread[i]);
    }
    CHECK(disconnected > 0);
    ipcall_client_free(bad);

    /* Everyone else is still served. */
    ipcall_client *good = NULL;
    CHECK_OK(ipcall_client_connect(name, BOUND_MS, &good));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(good, (const uint8_t *)"ok", 2, BOUND_MS, &reply));
    CHECK(reply.len == 2048);
    ipcall_buf_free(&reply);
    ipcall_client_free(good);

    CHECK_OK(ipcall_server_close(server));
    for (size_t i = 0; i < COUNT_OF(threads); i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
    }
    ipcall_server_free(server);
}

/* Every server wait mode with every client wait mode carries calls over
 * shm: (other transports accept and ignore the mode). */
static void test_wait_modes(void) {
    const ipcall_wait_mode modes[] = {IPCALL_WAIT_ADAPTIVE, IPCALL_WAIT_SPIN, IPCALL_WAIT_BLOCK};
    for (size_t s = 0; s < COUNT_OF(modes); s++) {
        ipcall_server_options *server_options = NULL;
        CHECK_OK(ipcall_server_options_new(&server_options));
        CHECK_OK(ipcall_server_options_set_wait_mode(server_options, modes[s]));
        ipcall_server *server = NULL;
        CHECK_OK(ipcall_server_bind_unique("shm", server_options, &server));
        ipcall_server_options_free(server_options);
        struct echo e = {server, 1};
        pthread_t thread;
        CHECK(pthread_create(&thread, NULL, echo_thread, &e) == 0);
        for (size_t c = 0; c < COUNT_OF(modes); c++) {
            ipcall_client_options *client_options = NULL;
            CHECK_OK(ipcall_client_options_new(&client_options));
            CHECK_OK(ipcall_client_options_set_wait_mode(client_options, modes[c]));
            ipcall_client *client = NULL;
            CHECK_OK(ipcall_client_connect_with(ipcall_server_name(server), client_options, BOUND_MS, &client));
            ipcall_client_options_free(client_options);
            for (int i = 0; i < 20; i++) {
                ipcall_buf reply = {0};
                CHECK_OK(ipcall_client_call(client, (const uint8_t *)"mode", 4, BOUND_MS, &reply));
                CHECK(buf_equals(&reply, "mode", 4));
                ipcall_buf_free(&reply);
            }
            ipcall_client_free(client);
        }
        CHECK_OK(ipcall_server_close(server));
        CHECK(pthread_join(thread, NULL) == 0);
        ipcall_server_free(server);
    }
    /* A number that names no mode is refused and changes nothing. */
    ipcall_server_options *server_options = NULL;
    ipcall_client_options *client_options = NULL;
    CHECK_OK(ipcall_server_options_new(&server_options));
    CHECK_OK(ipcall_client_options_new(&client_options));
    CHECK_STATUS(ipcall_server_options_set_wait_mode(server_options, (ipcall_wait_mode)3), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "wait mode 3") != NULL);
    CHECK_STATUS(ipcall_client_options_set_wait_mode(client_options, (ipcall_wait_mode)UINT32_MAX), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_options_set_wait_mode(NULL, IPCALL_WAIT_SPIN), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_options_set_wait_mode(NULL, IPCALL_WAIT_SPIN), IPCALL_E_INVALID);
    ipcall_server_options_free(server_options);
    ipcall_client_options_free(client_options);
}

/* Connection names: 1 to 256 bytes of UTF-8 without control characters;
 * anything else is IPCALL_E_INVALID at the setter. Local transports accept
 * a valid one and ignore it. */
static void test_connection_names(void) {
    ipcall_server_options *server_options = NULL;
    ipcall_client_options *client_options = NULL;
    CHECK_OK(ipcall_server_options_new(&server_options));
    CHECK_OK(ipcall_client_options_new(&client_options));
    char longest[258];
    memset(longest, 'n', 256);
    longest[256] = '\0';
    CHECK_OK(ipcall_server_options_set_connection_name(server_options, longest));
    CHECK_OK(ipcall_client_options_set_connection_name(client_options, "c client \xc3\xa9"));
    longest[256] = 'n';
    longest[257] = '\0';
    const char *bad[] = {"", "tab\there", "\xff", longest, NULL};
    for (size_t i = 0; i < COUNT_OF(bad); i++) {
        CHECK_STATUS(ipcall_server_options_set_connection_name(server_options, bad[i]), IPCALL_E_INVALID);
        CHECK_STATUS(ipcall_client_options_set_connection_name(client_options, bad[i]), IPCALL_E_INVALID);
    }
    CHECK_STATUS(ipcall_client_options_set_connection_name(NULL, "x"), IPCALL_E_INVALID);
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("unix", server_options, &server));
    struct echo e = {server, 1};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, echo_thread, &e) == 0);
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect_with(ipcall_server_name(server), client_options, BOUND_MS, &client));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(client, (const uint8_t *)"named", 5, BOUND_MS, &reply));
    CHECK(buf_equals(&reply, "named", 5));
    ipcall_buf_free(&reply);
    ipcall_client_free(client);
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_server_free(server);
    ipcall_server_options_free(server_options);
    ipcall_client_options_free(client_options);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_invalid_limit_arguments();
    test_connection_names();
    if (kind_available("shm", "the C wait-mode tests")) {
        test_wait_modes();
        printf("wait modes: every server mode with every client mode passed over shm\n");
    }
    int kinds_run = 0;
    for (size_t k = 0; k < COUNT_OF(CROSS_PROCESS_KINDS); k++) {
        const char *kind = CROSS_PROCESS_KINDS[k];
        if (!kind_available(kind, "the C limit tests")) {
            continue;
        }
        test_max_connections(kind);
        test_reply_budget(kind);
        printf("transport %s: all C limit tests passed\n", kind);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    printf("C limit tests passed over %d transport(s)\n", kinds_run);
    return 0;
}
