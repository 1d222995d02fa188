/* The echo server and the client of this directory in one process, over an
 * in-process (mem:) name: the server runs in a thread.
 *
 *   in_process MESSAGE...
 *
 * Prints "reply: <text>" or "remote error: <payload>" per message. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <ipcall.h>

static void *serve(void *arg) {
    const ipcall_server *server = arg;
    ipcall_request *request = NULL;
    /* Until ipcall_server_close: then recv reports IPCALL_E_CLOSED. */
    while (ipcall_server_recv(server, -1, &request) == IPCALL_OK) {
        const uint8_t *data = NULL;
        size_t len = 0;
        ipcall_request_data(request, &data, &len);
        if (len >= 5 && memcmp(data, "fail:", 5) == 0) {
            ipcall_request_fail(request, data + 5, len - 5);
        } else {
            ipcall_request_reply(request, data, len);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    ipcall_server *server = NULL;
    if (ipcall_server_bind("mem:echo", NULL, &server) != IPCALL_OK) {
        fprintf(stderr, "bind: %s\n", ipcall_last_error_message());
        return 1;
    }
    pthread_t thread;
    pthread_create(&thread, NULL, serve, server);

    ipcall_client *client = NULL;
    if (ipcall_client_connect("mem:echo", 0, &client) != IPCALL_OK) {
        fprintf(stderr, "connect: %s\n", ipcall_last_error_message());
        return 1;
    }
    int exit_code = 0;
    for (int i = 1; i < argc; i++) {
        ipcall_buf reply = {0};
        ipcall_status status = ipcall_client_call(client, (const uint8_t *)argv[i], strlen(argv[i]), -1, &reply);
        if (status == IPCALL_OK) {
            printf("reply: %.*s\n", (int)reply.len, (const char *)reply.data);
        } else if (status == IPCALL_E_REMOTE) {
            printf("remote error: %.*s\n", (int)reply.len, (const char *)reply.data);
        } else {
            fprintf(stderr, "call: %s\n", ipcall_last_error_message());
            exit_code = 1;
        }
        ipcall_buf_free(&reply);
    }
    ipcall_client_free(client);
    ipcall_server_close(server); /* wakes the server thread */
    pthread_join(thread, NULL);
    ipcall_server_free(server);
    return exit_code;
}
