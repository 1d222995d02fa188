/* A minimal ipcall user, written from include/ipcall.h and docs/C-API.md
 * alone: an echo server thread and a client in one process over mem:.
 * Prints "consumer ok: <reply>" and exits 0, or says what failed. */
#include <pthread.h>
#include <stdio.h>

#include <ipcall.h>

static void *serve_one(void *server) {
    ipcall_request *request = NULL;
    if (ipcall_server_recv(server, 10000, &request) == IPCALL_OK) {
        const uint8_t *data = NULL;
        size_t len = 0;
        ipcall_request_data(request, &data, &len);
        ipcall_request_reply(request, data, len);
    }
    return NULL;
}

int main(void) {
    ipcall_server *server = NULL;
    ipcall_status status = ipcall_server_bind_unique("mem", NULL, &server);
    if (status != IPCALL_OK) {
        fprintf(stderr, "bind: %s: %s\n", ipcall_strerror(status), ipcall_last_error_message());
        return 1;
    }
    pthread_t thread;
    pthread_create(&thread, NULL, serve_one, server);
    ipcall_client *client = NULL;
    ipcall_buf reply = {0};
    status = ipcall_client_connect(ipcall_server_name(server), 0, &client);
    if (status == IPCALL_OK) {
        status = ipcall_client_call(client, (const uint8_t *)"ping", 4, 10000, &reply);
    }
    pthread_join(thread, NULL);
    if (status != IPCALL_OK) {
        fprintf(stderr, "call: %s: %s\n", ipcall_strerror(status), ipcall_last_error_message());
        return 1;
    }
    printf("consumer ok: %.*s (ipcall %s, header %d.%d.%d)\n", (int)reply.len, (const char *)reply.data,
           ipcall_version(), IPCALL_VERSION_MAJOR, IPCALL_VERSION_MINOR, IPCALL_VERSION_PATCH);
    ipcall_buf_free(&reply);
    ipcall_client_free(client);
    ipcall_server_free(server);
    return 0;
}
