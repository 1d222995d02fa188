/* Connecting to a server of this same thread.
 *
 * Over socket transports the server completes a client's handshake only
 * while some thread is in ipcall_server_recv or ipcall_server_accept (the
 * receiving thread reads the wire itself; no hidden thread does). A test
 * that owns both ends in one thread therefore connects from a helper thread
 * while it keeps the server turning with short receives. */
#ifndef IPCALL_TEST_CONNECT_H
#define IPCALL_TEST_CONNECT_H

#include <pthread.h>
#include <stdatomic.h>

#include "check.h"

struct connecting {
    const char *name;
    const ipcall_client_options *options;
    ipcall_client *client;
    ipcall_status status;
    atomic_int done;
};

static void *connect_thread(void *arg) {
    struct connecting *c = arg;
    c->status = ipcall_client_connect_with(c->name, c->options, 10000, &c->client);
    atomic_store(&c->done, 1);
    return NULL;
}

/* Connects a client (with `options`, may be NULL) to `server`, which no
 * other thread serves yet. No request may be in flight to it. */
static inline ipcall_client *connect_with_options(const ipcall_server *server,
                                                  const ipcall_client_options *options) {
    struct connecting c = {.name = ipcall_server_name(server), .options = options};
    atomic_init(&c.done, 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, connect_thread, &c) == 0);
    while (!atomic_load(&c.done)) {
        ipcall_request *request = NULL;
        CHECK_STATUS(ipcall_server_recv(server, 2, &request), IPCALL_E_TIMEOUT);
    }
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_OK(c.status);
    CHECK(strcmp(ipcall_client_name(c.client), ipcall_server_name(server)) == 0);
    return c.client;
}

static inline ipcall_client *connect_to(const ipcall_server *server) {
    return connect_with_options(server, NULL);
}

#endif
