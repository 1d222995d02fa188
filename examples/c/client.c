/* An ipcall client in C: sends each MESSAGE and prints the answer.
 *
 *   client NAME MESSAGE...        (NAME "-" = $IPCALL_SERVER)
 *
 * Prints "reply: <text>" or "remote error: <payload>" per message; exits 1
 * on any other failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ipcall.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: client NAME|- MESSAGE...\n");
        return 2;
    }
    const char *name = strcmp(argv[1], "-") == 0 ? getenv("IPCALL_SERVER") : argv[1];
    if (name == NULL) {
        fprintf(stderr, "client: IPCALL_SERVER is not set\n");
        return 2;
    }
    ipcall_client *client = NULL;
    /* Wait up to 5 s for the server to appear. */
    ipcall_status status = ipcall_client_connect(name, 5000, &client);
    if (status != IPCALL_OK) {
        fprintf(stderr, "client: connect: %s\n", ipcall_last_error_message());
        return 1;
    }
    int exit_code = 0;
    for (int i = 2; i < argc; i++) {
        ipcall_buf reply = {0};
        status = ipcall_client_call(client, (const uint8_t *)argv[i], strlen(argv[i]), 5000, &reply);
        if (status == IPCALL_OK) {
            printf("reply: %.*s\n", (int)reply.len, (const char *)reply.data);
        } else if (status == IPCALL_E_REMOTE) {
            printf("remote error: %.*s\n", (int)reply.len, (const char *)reply.data);
        } else {
            fprintf(stderr, "client: call: %s (%s)\n", ipcall_strerror(status), ipcall_last_error_message());
            exit_code = 1;
        }
        ipcall_buf_free(&reply); /* frees a reply or a payload; no-op otherwise */
    }
    ipcall_client_free(client);
    return exit_code;
}
