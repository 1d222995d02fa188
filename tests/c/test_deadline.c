/* The caller's deadline seen from C: ipcall_request_deadline over every
 * transport this build provides (a timed ipcall_client_call carries one, an
 * untimed call none), its invalid arguments, and its outputs untouched on
 * error. */
#include <pthread.h>
#include <stdint.h>

#include "check.h"

/* Serves `count` requests, answering each with what it saw: "none", "ok"
 * (0 < remaining <= 60 s), or "bad". */
typedef struct {
    ipcall_server *server;
    int count;
} serve_args;

static void *serve(void *arg) {
    serve_args *args = arg;
    for (int i = 0; i < args->count; i++) {
        ipcall_request *request = NULL;
        CHECK_OK(ipcall_server_recv(args->server, 60000, &request));
        uint64_t remaining = 12345;
        ipcall_status status = ipcall_request_deadline(request, &remaining);
        const char *verdict = "bad";
        if (status == IPCALL_E_NOT_FOUND && remaining == 12345 &&
            strstr(ipcall_last_error_message(), "no deadline") != NULL) {
            verdict = "none";
        } else if (status == IPCALL_OK && remaining > 0 && remaining <= 60000000000ULL) {
            verdict = "ok";
        }
        CHECK_OK(ipcall_request_reply(request, (const uint8_t *)verdict, strlen(verdict)));
    }
    return NULL;
}

static void expect_call(ipcall_client *client, int32_t timeout_ms, const char *expected) {
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(client, (const uint8_t *)"x", 1, timeout_ms, &reply));
    CHECK(buf_equals(&reply, expected, strlen(expected)));
    ipcall_buf_free(&reply);
}

static void test_kind(const char *kind) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 10000, &client));
    serve_args args = {server, 3};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, &args) == 0);
    expect_call(client, 60000, "ok");
    expect_call(client, -1, "none");
    expect_call(client, 60000, "ok");
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

static void test_invalid_arguments(void) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("mem", NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 0, &client));
    ipcall_pending *pending = NULL;
    CHECK_OK(ipcall_client_send(client, (const uint8_t *)"x", 1, &pending));
    ipcall_request *request = NULL;
    CHECK_OK(ipcall_server_recv(server, -1, &request));
    uint64_t remaining = 7;
    CHECK_STATUS(ipcall_request_deadline(NULL, &remaining), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_request_deadline(request, NULL), IPCALL_E_INVALID);
    CHECK(remaining == 7);
    /* A send (no timeout at send time) has none. */
    CHECK_STATUS(ipcall_request_deadline(request, &remaining), IPCALL_E_NOT_FOUND);
    CHECK(remaining == 7);
    CHECK_OK(ipcall_request_reply(request, (const uint8_t *)"y", 1));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_pending_wait(pending, -1, &reply));
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_invalid_arguments();
    int kinds_run = 0;
    for (size_t k = 0; k < COUNT_OF(ALL_KINDS); k++) {
        if (!kind_available(ALL_KINDS[k], "the C deadline tests")) {
            continue;
        }
        test_kind(ALL_KINDS[k]);
        printf("transport %s: C deadline tests passed\n", ALL_KINDS[k]);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    return 0;
}
