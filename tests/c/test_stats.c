/* A server's statistics and ping seen from C: ipcall_server_stats and
 * ipcall_client_server_stats count exactly what was done over every
 * transport this build provides, ipcall_client_ping is answered while no
 * thread receives, and invalid arguments leave the outputs untouched. */
#include <pthread.h>
#include <stdint.h>

#include "check.h"

/* Serves `count` requests: "r..." replies with the rest, "f..." fails with
 * the rest, anything else is freed unanswered. */
typedef struct {
    ipcall_server *server;
    int count;
} serve_args;

static void *serve(void *arg) {
    serve_args *args = arg;
    for (int i = 0; i < args->count; i++) {
        ipcall_request *request = NULL;
        CHECK_OK(ipcall_server_recv(args->server, 60000, &request));
        const uint8_t *data = NULL;
        size_t len = 0;
        ipcall_request_data(request, &data, &len);
        if (len > 0 && data[0] == 'r') {
            CHECK_OK(ipcall_request_reply(request, data + 1, len - 1));
        } else if (len > 0 && data[0] == 'f') {
            CHECK_OK(ipcall_request_fail(request, data + 1, len - 1));
        } else {
            ipcall_request_free(request);
        }
    }
    return NULL;
}

static void check_counts(const ipcall_stats *stats, const char *kind) {
    CHECK(stats->calls == 4);
    CHECK(stats->replies == 2);
    CHECK(stats->fails == 1 && stats->errors[IPCALL_E_REMOTE] == 1);
    CHECK(stats->no_replies == 1 && stats->errors[IPCALL_E_NO_REPLY] == 1);
    CHECK(stats->errors[IPCALL_E_PROTOCOL] == 0 && stats->errors[0] == 0);
    CHECK(stats->bytes_in == 3 + 4 + 3 + 1);
    CHECK(stats->bytes_out == 2 + 3 + 2);
    uint64_t answers = 0;
    for (size_t i = 0; i < IPCALL_STATS_LATENCY_BUCKETS; i++) {
        answers += stats->latency[i];
    }
    CHECK(answers == 4);
    CHECK(stats->connections == (strcmp(kind, "mem") == 0 ? 0 : 1));
    CHECK(stats->uptime_ns > 0);
}

static void call(ipcall_client *client, const char *data, ipcall_status expected) {
    ipcall_buf reply = {0};
    CHECK_STATUS(ipcall_client_call(client, (const uint8_t *)data, strlen(data), 60000, &reply), expected);
    ipcall_buf_free(&reply);
}

static void test_kind(const char *kind) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 10000, &client));
    /* Nobody receives yet: the library answers. */
    uint64_t rtt = 0;
    CHECK_OK(ipcall_client_ping(client, 60000, &rtt));
    CHECK(rtt > 0);
    CHECK_OK(ipcall_client_ping(client, -1, NULL));
    serve_args args = {server, 4};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, &args) == 0);
    call(client, "rok", IPCALL_OK);
    call(client, "rabc", IPCALL_OK);
    call(client, "fno", IPCALL_E_REMOTE);
    call(client, "d", IPCALL_E_NO_REPLY);
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_stats local, remote;
    CHECK_OK(ipcall_server_stats(server, &local));
    CHECK_OK(ipcall_client_server_stats(client, 60000, &remote));
    check_counts(&local, kind);
    check_counts(&remote, kind);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

static void test_invalid_arguments(void) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("mem", NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 0, &client));
    ipcall_stats stats;
    memset(&stats, 0xab, sizeof stats);
    CHECK_STATUS(ipcall_server_stats(NULL, &stats), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_server_stats(server, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_server_stats(NULL, 0, &stats), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_server_stats(client, 0, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_server_stats(client, -2, &stats), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_ping(NULL, 0, NULL), IPCALL_E_INVALID);
    uint64_t rtt = 7;
    CHECK_STATUS(ipcall_client_ping(client, -5, &rtt), IPCALL_E_INVALID);
    CHECK(rtt == 7);
    CHECK(stats.calls == 0xababababababababULL);
    /* A closed server answers no ping. */
    CHECK_OK(ipcall_server_close(server));
    CHECK_STATUS(ipcall_client_ping(client, 60000, &rtt), IPCALL_E_DISCONNECTED);
    CHECK(rtt == 7);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_invalid_arguments();
    int kinds_run = 0;
    for (size_t k = 0; k < COUNT_OF(ALL_KINDS); k++) {
        if (!kind_available(ALL_KINDS[k], "the C stats tests")) {
            continue;
        }
        test_kind(ALL_KINDS[k]);
        printf("transport %s: C stats tests passed\n", ALL_KINDS[k]);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    return 0;
}
