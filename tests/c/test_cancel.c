/* Cancellation seen from C: ipcall_request_cancelled over every transport
 * this build provides — the caller's ipcall_client_call timing out, and its
 * ipcall_pending_free before the answer — a live request never cancelled,
 * answering a cancelled request harmless, the invalid arguments and the
 * output untouched on error. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The server side of one given-up call: takes it, says so, polls
 * ipcall_request_cancelled (at most 30 s), answers it anyway, then serves
 * one more call, which must not be cancelled. */
typedef struct {
    ipcall_server *server;
    atomic_int has_request;
    atomic_int cancelled;
    atomic_int next_cancelled;
} serve_args;

static void *serve(void *arg) {
    serve_args *args = arg;
    ipcall_request *request = NULL;
    CHECK_OK(ipcall_server_recv(args->server, 60000, &request));
    atomic_store(&args->has_request, 1);
    bool cancelled = false;
    for (int i = 0; i < 30000 && !cancelled; i++) {
        CHECK_OK(ipcall_request_cancelled(request, &cancelled));
        if (!cancelled) {
            sleep_ms(1);
        }
    }
    atomic_store(&args->cancelled, cancelled ? 1 : 0);
    /* Harmless: the caller discards the answer. */
    CHECK_OK(ipcall_request_reply(request, (const uint8_t *)"late", 4));
    ipcall_request *next = NULL;
    CHECK_OK(ipcall_server_recv(args->server, 60000, &next));
    bool next_cancelled = true;
    CHECK_OK(ipcall_request_cancelled(next, &next_cancelled));
    atomic_store(&args->next_cancelled, next_cancelled ? 1 : 0);
    CHECK_OK(ipcall_request_reply(next, (const uint8_t *)"next", 4));
    return NULL;
}

/* How the client gives up. */
typedef enum { BY_TIMEOUT, BY_FREE } give_up;

static void test_kind(const char *kind, give_up how) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 10000, &client));
    serve_args args = {.server = server};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, &args) == 0);
    if (how == BY_TIMEOUT) {
        ipcall_buf reply = {0};
        CHECK_STATUS(ipcall_client_call(client, (const uint8_t *)"slow", 4, 20, &reply), IPCALL_E_TIMEOUT);
    } else {
        ipcall_pending *pending = NULL;
        CHECK_OK(ipcall_client_send(client, (const uint8_t *)"slow", 4, &pending));
        /* Freed once the server holds it (bounded wait). */
        for (int i = 0; i < 30000 && !atomic_load(&args.has_request); i++) {
            sleep_ms(1);
        }
        CHECK(atomic_load(&args.has_request));
        ipcall_pending_free(pending);
    }
    /* The late answer is discarded: this call gets its own. */
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(client, (const uint8_t *)"x", 1, 60000, &reply));
    CHECK(buf_equals(&reply, "next", 4));
    ipcall_buf_free(&reply);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(atomic_load(&args.cancelled) == 1);
    CHECK(atomic_load(&args.next_cancelled) == 0);
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
    bool cancelled = true;
    CHECK_STATUS(ipcall_request_cancelled(NULL, &cancelled), IPCALL_E_INVALID);
    CHECK(cancelled == true);
    CHECK_STATUS(ipcall_request_cancelled(request, NULL), IPCALL_E_INVALID);
    /* The caller still waits. */
    CHECK_OK(ipcall_request_cancelled(request, &cancelled));
    CHECK(cancelled == false);
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
        if (!kind_available(ALL_KINDS[k], "the C cancel tests")) {
            continue;
        }
        test_kind(ALL_KINDS[k], BY_TIMEOUT);
        test_kind(ALL_KINDS[k], BY_FREE);
        printf("transport %s: C cancel tests passed\n", ALL_KINDS[k]);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    return 0;
}
