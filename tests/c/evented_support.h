/* What the C event-loop tests (test_evented.c, test_evented_spin.c) share:
 * a reversing server thread and bounded waits on an epoll set. */
#ifndef IPCALL_TEST_EVENTED_SUPPORT_H
#define IPCALL_TEST_EVENTED_SUPPORT_H

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

#include "check.h"

/* Server thread: answers every request with its bytes reversed (at most
 * 64) until the server is closed. */
static inline void *serve(void *arg) {
    const ipcall_server *server = arg;
    for (;;) {
        ipcall_request *request = NULL;
        if (ipcall_server_recv(server, -1, &request) != IPCALL_OK) {
            return NULL; /* closed */
        }
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(ipcall_request_data(request, &data, &len));
        uint8_t reversed[64];
        CHECK(len <= sizeof reversed);
        for (size_t i = 0; i < len; i++) {
            reversed[i] = data[len - 1 - i];
        }
        ipcall_request_reply(request, reversed, len);
    }
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits at most `ms` for `epfd`; 1 if the client's descriptor is readable. */
static inline int wait_ready(int epfd, int ms) {
    struct epoll_event event;
    for (;;) {
        int n = epoll_wait(epfd, &event, 1, ms);
        if (n >= 0) {
            return n;
        }
        CHECK(errno == EINTR);
    }
}

#endif
