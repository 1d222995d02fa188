/* The C stage of `ipcall demo`: appends " #" and the FNV-1a 32-bit hash of
 * an item in 8 hex digits. Binds the one-shot name it is given in
 * IPCALL_SERVER and serves until the orchestrator (its one client) goes
 * away. */
#include <ipcall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, ipcall_status status) {
    fprintf(stderr, "C stage: %s: %s (%s)\n", what, ipcall_strerror(status), ipcall_last_error_message());
    return 1;
}

int main(void) {
    const char *name = getenv("IPCALL_SERVER");
    if (name == NULL) {
        fprintf(stderr, "C stage: IPCALL_SERVER is not set\n");
        return 1;
    }
    ipcall_server_options *options = NULL;
    ipcall_status status = ipcall_server_options_new(&options);
    if (status == IPCALL_OK) {
        status = ipcall_server_options_set_one_shot(options, true);
    }
    ipcall_server *server = NULL;
    if (status == IPCALL_OK) {
        status = ipcall_server_bind(name, options, &server);
    }
    ipcall_server_options_free(options);
    if (status != IPCALL_OK) {
        return fail("bind", status);
    }
    for (;;) {
        ipcall_request *request = NULL;
        status = ipcall_server_recv(server, -1, &request);
        if (status == IPCALL_E_CLOSED) {
            break;
        }
        if (status != IPCALL_OK) {
            return fail("recv", status);
        }
        const uint8_t *data = NULL;
        size_t len = 0;
        ipcall_request_data(request, &data, &len);
        uint32_t hash = 0x811C9DC5u;
        for (size_t i = 0; i < len; i++) {
            hash = (hash ^ data[i]) * 0x01000193u;
        }
        uint8_t *reply = malloc(len + 10);
        if (reply == NULL) {
            return fail("out of memory", IPCALL_E_IO);
        }
        if (len > 0) {
            memcpy(reply, data, len);
        }
        char tail[11];
        snprintf(tail, sizeof tail, " #%08x", hash);
        memcpy(reply + len, tail, 10);
        status = ipcall_request_reply(request, reply, len + 10);
        free(reply);
        if (status != IPCALL_OK) {
            return fail("reply", status);
        }
    }
    ipcall_server_free(server);
    return 0;
}
