/* The C client of the cross-language matrix (tests/matrix/README.md): runs
 * the script against $IPCALL_SERVER. */
#include <ipcall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matrix.h"

static int fail(const char *what, long index, ipcall_status status) {
    printf("FAIL %s %ld: %s (%s)\n", what, index, ipcall_strerror(status), ipcall_last_error_message());
    return 1;
}

int main(void) {
    const char *name = getenv("IPCALL_SERVER");
    const char *calls_text = getenv("IPCALL_CALLS");
    long calls = calls_text ? atol(calls_text) : 1000;
    if (name == NULL) {
        printf("FAIL IPCALL_SERVER is not set\n");
        return 1;
    }
    ipcall_client *client = NULL;
    ipcall_status status = ipcall_client_connect(name, 10000, &client);
    if (status != IPCALL_OK) {
        return fail("connect", 0, status);
    }
    uint8_t *data = malloc((size_t)16 << 20);
    if (data == NULL) {
        printf("FAIL out of memory\n");
        return 1;
    }
    uint64_t state = 0x2545F4914F6CDD1Dull;
    for (long i = 0; i < calls; i++) {
        state = matrix_next(state);
        size_t size = matrix_size((size_t)i, state);
        matrix_fill(data, size, state);
        ipcall_buf reply = {0};
        status = ipcall_client_call(client, data, size, -1, &reply);
        if (status != IPCALL_OK) {
            return fail("call", i, status);
        }
        uint32_t crc = matrix_crc32(data, size);
        int good = reply.len == size + 4;
        for (int k = 0; good && k < 4; k++) {
            good = reply.data[k] == (uint8_t)(crc >> (8 * k));
        }
        good = good && (size == 0 || memcmp(reply.data + 4, data, size) == 0);
        if (!good) {
            printf("FAIL call %ld (%zu B): the reply (%zu B) is not crc32 + the request\n", i, size, reply.len);
            return 1;
        }
        ipcall_buf_free(&reply);
    }

    uint8_t failing[5 + 256];
    memcpy(failing, "fail:", 5);
    for (int b = 0; b < 256; b++) {
        failing[5 + b] = (uint8_t)b;
    }
    ipcall_buf payload = {0};
    status = ipcall_client_call(client, failing, sizeof failing, -1, &payload);
    if (status != IPCALL_E_REMOTE || payload.len != 256 || memcmp(payload.data, failing + 5, 256) != 0) {
        return fail("the fail request (expected IPCALL_E_REMOTE with bytes 0..255) gave", (long)payload.len, status);
    }
    ipcall_buf_free(&payload);

    ipcall_buf none = {0};
    status = ipcall_client_call(client, (const uint8_t *)"noreply", 7, -1, &none);
    if (status != IPCALL_E_NO_REPLY) {
        return fail("the noreply request (expected IPCALL_E_NO_REPLY) gave", 0, status);
    }
    ipcall_client_free(client);
    free(data);
    printf("ok %ld\n", calls);
    return 0;
}
