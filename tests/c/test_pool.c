/* Worker pools through the C API (ipcall_server_options_set_pool): three
 * member servers in threads on one name over unix:, pipe: and shm:; one
 * client spreads its calls over them, a closed member fails at most the
 * call in flight on it, and the names' exclusivity holds. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* A pointer value no ipcall function returns: out-parameters stay alone on failure. */
#define SENTINEL_SERVER ((ipcall_server *)(uintptr_t)0x5e17)

enum { MEMBERS = 3, CALLS = 300 };

struct member {
    ipcall_server *server;
    char tag; /* '0', '1', '2': the first byte of each of its replies */
};

/* Answers every request with its tag followed by the request, until closed. */
static void *member_thread(void *arg) {
    struct member *member = arg;
    for (;;) {
        ipcall_request *request = NULL;
        ipcall_status status = ipcall_server_recv(member->server, -1, &request);
        if (status == IPCALL_E_CLOSED) {
            return NULL;
        }
        CHECK_OK(status);
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(ipcall_request_data(request, &data, &len));
        uint8_t answer[128];
        CHECK(len < sizeof answer);
        answer[0] = (uint8_t)member->tag;
        memcpy(answer + 1, data, len);
        CHECK_OK(ipcall_request_reply(request, answer, len + 1));
    }
}

/* One call; counts its answerer in `counts`. Returns its status. */
static ipcall_status call_once(const ipcall_client *client, int i, int counts[MEMBERS]) {
    char message[32];
    int len = snprintf(message, sizeof message, "call %d", i);
    ipcall_buf reply = {0};
    ipcall_status status = ipcall_client_call(client, (const uint8_t *)message, (size_t)len, 60000, &reply);
    if (status == IPCALL_OK) {
        CHECK(reply.len == (size_t)len + 1 && memcmp(reply.data + 1, message, (size_t)len) == 0);
        int tag = reply.data[0] - '0';
        CHECK(tag >= 0 && tag < MEMBERS);
        counts[tag]++;
        ipcall_buf_free(&reply);
    }
    return status;
}

static void test_pool(const char *kind) {
    char name[200];
    snprintf(name, sizeof name, "%s:/tmp/ipcall-c-pool-%d-%s", kind, (int)getpid(), kind);
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_pool(options, true));
    struct member members[MEMBERS];
    pthread_t threads[MEMBERS];
    for (int m = 0; m < MEMBERS; m++) {
        members[m].tag = (char)('0' + m);
        CHECK_OK(ipcall_server_bind(name, options, &members[m].server));
        CHECK(strcmp(ipcall_server_name(members[m].server), name) == 0);
        CHECK(pthread_create(&threads[m], NULL, member_thread, &members[m]) == 0);
    }
    /* A plain server cannot take the pool's name. */
    ipcall_server *plain = SENTINEL_SERVER;
    CHECK_STATUS(ipcall_server_bind(name, NULL, &plain), IPCALL_E_ADDR_IN_USE);
    CHECK(plain == SENTINEL_SERVER);

    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(name, 0, &client));
    int counts[MEMBERS] = {0};
    for (int i = 0; i < CALLS; i++) {
        CHECK_OK(call_once(client, i, counts));
    }
    for (int m = 0; m < MEMBERS; m++) {
        CHECK(counts[m] > 0); /* every member took a share */
    }
    /* Member 1 leaves: at most the one call in flight on it fails
     * DISCONNECTED; the others serve every later call. */
    CHECK_OK(ipcall_server_close(members[1].server));
    CHECK(pthread_join(threads[1], NULL) == 0);
    int after[MEMBERS] = {0}, disconnected = 0;
    for (int i = 0; i < CALLS; i++) {
        ipcall_status status = call_once(client, i, after);
        if (status != IPCALL_OK) {
            CHECK_STATUS(status, IPCALL_E_DISCONNECTED);
            disconnected++;
        }
    }
    CHECK(disconnected <= 1);
    CHECK(after[1] == 0 && after[0] > 0 && after[2] > 0);
    CHECK(after[0] + after[2] + disconnected == CALLS);
    printf("pool over %s: shares %d/%d/%d, then %d/%d after one left (%d disconnected)\n", kind, counts[0],
           counts[1], counts[2], after[0], after[2], disconnected);

    ipcall_client_free(client);
    for (int m = 0; m < MEMBERS; m++) {
        if (m != 1) {
            CHECK_OK(ipcall_server_close(members[m].server));
            CHECK(pthread_join(threads[m], NULL) == 0);
        }
        ipcall_server_free(members[m].server);
    }
    /* The last member out leaves the name free. */
    CHECK_OK(ipcall_server_bind(name, NULL, &plain));
    ipcall_server_free(plain);
    ipcall_server_options_free(options);
}

/* Where a pool cannot be: a mem: name, a generated name, a one-shot server. */
static void test_refusals(void) {
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_pool(options, true));
    ipcall_server *server = SENTINEL_SERVER;
    CHECK_STATUS(ipcall_server_bind("mem:c-pool", options, &server), IPCALL_E_INVALID_NAME);
    CHECK_STATUS(ipcall_server_bind_unique("unix", options, &server), IPCALL_E_INVALID_NAME);
    CHECK_OK(ipcall_server_options_set_one_shot(options, true));
    CHECK_STATUS(ipcall_server_bind("unix:@ipcall-c-pool-one-shot", options, &server), IPCALL_E_INVALID_NAME);
    CHECK(server == SENTINEL_SERVER);
    CHECK_STATUS(ipcall_server_options_set_pool(NULL, true), IPCALL_E_INVALID);
    ipcall_server_options_free(options);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_refusals();
    for (size_t k = 0; k < COUNT_OF(CROSS_PROCESS_KINDS); k++) {
        if (kind_available(CROSS_PROCESS_KINDS[k], "the pool tests")) {
            test_pool(CROSS_PROCESS_KINDS[k]);
        }
    }
    printf("C pool tests passed\n");
    return 0;
}
