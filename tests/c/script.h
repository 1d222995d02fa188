/* The scripted conversation of the Rust peer (rust/ipcall/examples/peer.rs),
 * in C: a server loop that answers it and a client that runs it. The
 * cross-process tests pit these against the Rust peer; test_c_api runs them
 * against each other in one process over every transport. */
#ifndef IPCALL_TEST_SCRIPT_H
#define IPCALL_TEST_SCRIPT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Answers requests until the server reports IPCALL_E_CLOSED:
 * "fail:<x>" -> fail(<x>), "noreply" -> freed unanswered, else echoed.
 * Returns how many requests it handled. */
static inline long serve_script(const ipcall_server *server) {
    long handled = 0;
    for (;;) {
        ipcall_request *request = NULL;
        ipcall_status status = ipcall_server_recv(server, -1, &request);
        if (status == IPCALL_E_CLOSED) {
            return handled;
        }
        CHECK_OK(status);
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(ipcall_request_data(request, &data, &len));
        handled++;
        if (len >= 5 && memcmp(data, "fail:", 5) == 0) {
            CHECK_OK(ipcall_request_fail(request, data + 5, len - 5));
        } else if (len == 7 && memcmp(data, "noreply", 7) == 0) {
            ipcall_request_free(request);
        } else {
            CHECK_OK(ipcall_request_reply(request, data, len));
        }
    }
}

/* Fills `out[0..len]` with bytes derived from `seed`, so a reply can be
 * checked against what was sent. */
static inline void script_fill(uint8_t *out, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)((uint64_t)i ^ seed ^ (seed >> 17));
    }
}

/* Runs the script against a server that answers as serve_script does:
 * `calls` echo calls of pseudo-random sizes up to 64 KiB (plus an empty one),
 * eight calls in flight at once, "fail:boom" -> IPCALL_E_REMOTE("boom"),
 * "noreply" -> IPCALL_E_NO_REPLY. */
static inline void client_script(const ipcall_client *client, int calls) {
    uint64_t state = 0x2545F4914F6CDD1Dull;
    uint8_t *data = malloc(65536);
    CHECK(data != NULL);
    for (int i = 0; i <= calls; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t len = i == calls ? 0 : (size_t)(state % 65536);
        script_fill(data, len, state);
        ipcall_buf reply = {0};
        CHECK_OK(ipcall_client_call(client, data, len, -1, &reply));
        CHECK(buf_equals(&reply, data, len));
        ipcall_buf_free(&reply);
    }
    free(data);

    enum { IN_FLIGHT = 8 };
    ipcall_pending *pending[IN_FLIGHT];
    char messages[IN_FLIGHT][32];
    for (int i = 0; i < IN_FLIGHT; i++) {
        snprintf(messages[i], sizeof messages[i], "in flight %d", i);
        CHECK_OK(ipcall_client_send(client, (const uint8_t *)messages[i], strlen(messages[i]), &pending[i]));
    }
    for (int i = IN_FLIGHT - 1; i >= 0; i--) {
        ipcall_buf reply = {0};
        CHECK_OK(ipcall_pending_wait(pending[i], -1, &reply));
        CHECK(buf_equals(&reply, messages[i], strlen(messages[i])));
        ipcall_buf_free(&reply);
        ipcall_pending_free(pending[i]);
    }

    ipcall_buf payload = {0};
    CHECK_STATUS(ipcall_client_call(client, (const uint8_t *)"fail:boom", 9, -1, &payload), IPCALL_E_REMOTE);
    CHECK(buf_equals(&payload, "boom", 4));
    ipcall_buf_free(&payload);

    ipcall_buf untouched = {0};
    CHECK_STATUS(ipcall_client_call(client, (const uint8_t *)"noreply", 7, -1, &untouched), IPCALL_E_NO_REPLY);
    CHECK(untouched.data == NULL && untouched.len == 0);
}

#endif
