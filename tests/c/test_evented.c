/* The event-loop client through the C API: one thread drives many calls
 * with only epoll on ipcall_client_fd, ipcall_client_progress,
 * ipcall_client_try_send (or ipcall_client_try_call, _try_call_spin) and
 * ipcall_pending_try_wait, against a real server
 * (served by a thread of this process) over every transport of this build.
 * Also: the descriptor is idle when nothing is pending, a server that goes
 * away completes every call with IPCALL_E_DISCONNECTED and makes the
 * descriptor readable, and the invalid-argument statuses. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "evented_support.h"

#define CALLS 1000
#define WINDOW 256

/* A pointer value no ipcall function returns. */
#define SENTINEL ((void *)(uintptr_t)0x5e17)

struct call {
    ipcall_pending *pending; /* NULL when free */
    char request[32];
    size_t len;
};

static void test_loop(const char *kind) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, NULL, &server));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, server) == 0);
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 5000, &client));

    int fd = -1;
    CHECK_OK(ipcall_client_fd(client, &fd));
    CHECK(fd >= 0);
    int again = -1;
    CHECK_OK(ipcall_client_fd(client, &again));
    CHECK(again == fd);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    CHECK(epfd >= 0);
    struct epoll_event watch = {.events = EPOLLIN, .data = {.fd = fd}};
    CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &watch) == 0);
    CHECK(wait_ready(epfd, 0) == 0); /* idle: nothing pending */

    static struct call calls[WINDOW];
    memset(calls, 0, sizeof calls);
    int sent = 0, done = 0, in_flight = 0;
    double deadline = now_s() + 120;
    while (done < CALLS) {
        CHECK(now_s() < deadline);
        for (int slot = 0; slot < WINDOW && sent < CALLS; slot++) {
            struct call *c = &calls[slot];
            if (c->pending != NULL) {
                continue;
            }
            c->len = (size_t)snprintf(c->request, sizeof c->request, "%s call %d", kind, sent);
            ipcall_status status = ipcall_client_try_send(client, (const uint8_t *)c->request, c->len, &c->pending);
            if (status == IPCALL_E_TIMEOUT) {
                CHECK(c->pending == NULL); /* nothing sent, nothing written */
                break;
            }
            CHECK_OK(status);
            sent++;
            in_flight++;
        }
        if (!wait_ready(epfd, 1000)) {
            continue;
        }
        CHECK_OK(ipcall_client_progress(client));
        for (int slot = 0; slot < WINDOW; slot++) {
            struct call *c = &calls[slot];
            if (c->pending == NULL) {
                continue;
            }
            ipcall_buf reply = {0};
            ipcall_status status = ipcall_pending_try_wait(c->pending, &reply);
            if (status == IPCALL_E_TIMEOUT) {
                continue; /* not yet */
            }
            CHECK_OK(status);
            CHECK(reply.len == c->len);
            for (size_t i = 0; i < c->len; i++) {
                CHECK(reply.data[i] == (uint8_t)c->request[c->len - 1 - i]);
            }
            ipcall_buf_free(&reply);
            ipcall_pending_free(c->pending);
            c->pending = NULL;
            done++;
            in_flight--;
        }
    }
    CHECK(in_flight == 0);
    CHECK_OK(ipcall_client_progress(client));
    CHECK(wait_ready(epfd, 50) == 0); /* idle again: no busy loop */

    /* The server goes away with calls it never received. */
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_pending *orphans[8];
    int orphaned = 0;
    for (int i = 0; i < 8; i++) {
        ipcall_status status = ipcall_client_try_send(client, (const uint8_t *)"late", 4, &orphans[orphaned]);
        if (status == IPCALL_OK) {
            orphaned++;
        } else {
            CHECK_STATUS(status, IPCALL_E_DISCONNECTED);
        }
    }
    ipcall_server_free(server);
    int left = orphaned;
    while (left > 0) {
        CHECK(now_s() < deadline);
        if (!wait_ready(epfd, 1000)) {
            continue;
        }
        CHECK_OK(ipcall_client_progress(client));
        for (int i = 0; i < orphaned; i++) {
            if (orphans[i] == NULL) {
                continue;
            }
            ipcall_buf reply = {.data = SENTINEL, .len = 7};
            ipcall_status status = ipcall_pending_try_wait(orphans[i], &reply);
            if (status == IPCALL_E_TIMEOUT) {
                continue;
            }
            CHECK_STATUS(status, IPCALL_E_DISCONNECTED);
            CHECK(reply.data == SENTINEL && reply.len == 7); /* untouched */
            ipcall_pending_free(orphans[i]);
            orphans[i] = NULL;
            left--;
        }
    }
    ipcall_pending *after = SENTINEL;
    CHECK_STATUS(ipcall_client_try_send(client, (const uint8_t *)"x", 1, &after), IPCALL_E_DISCONNECTED);
    CHECK(after == SENTINEL);
    close(epfd);
    ipcall_client_free(client);
    printf("transport %s: %d calls driven by epoll on ipcall_client_fd\n", kind, CALLS);
}

/* ipcall_client_try_call, the server thread on this thread's CPU (so that
 * answers are often there when the request has gone): each call is looked
 * at right away with ipcall_pending_try_wait, and one not answered yet is
 * waited for only through the descriptor (an answer left unannounced would
 * stall the loop until the deadline). A pending answered at once also
 * serves ipcall_pending_wait, then is spent. */
static void test_try_call(const char *kind) {
    cpu_set_t before, one;
    CHECK(sched_getaffinity(0, sizeof before, &before) == 0);
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &before)) {
            CPU_SET(cpu, &one);
            break;
        }
    }
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, NULL, &server));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, server) == 0); /* inherits the one CPU */
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 5000, &client));
    int fd = -1;
    CHECK_OK(ipcall_client_fd(client, &fd));
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    CHECK(epfd >= 0);
    struct epoll_event watch = {.events = EPOLLIN, .data = {.fd = fd}};
    CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &watch) == 0);
    double deadline = now_s() + 120;
    int at_once = 0, waited = 0;
    for (int i = 0; i < 500; i++) {
        char request[32];
        size_t len = (size_t)snprintf(request, sizeof request, "%s try_call %d", kind, i);
        ipcall_pending *pending = NULL;
        /* Every other call also spins for its answer (over shm: only where
         * that pays; the answer is then read as a blocking call reads it). */
        if (i % 2 == 0) {
            CHECK_OK(ipcall_client_try_call(client, (const uint8_t *)request, len, &pending));
        } else {
            CHECK_OK(ipcall_client_try_call_spin(client, (const uint8_t *)request, len, &pending));
        }
        ipcall_buf reply = {0};
        ipcall_status status = ipcall_pending_try_wait(pending, &reply);
        if (status == IPCALL_OK) {
            at_once++;
        } else {
            CHECK_STATUS(status, IPCALL_E_TIMEOUT);
            waited++;
            for (;;) {
                CHECK(now_s() < deadline);
                if (!wait_ready(epfd, 1000)) {
                    continue;
                }
                CHECK_OK(ipcall_client_progress(client));
                status = ipcall_pending_try_wait(pending, &reply);
                if (status != IPCALL_E_TIMEOUT) {
                    break;
                }
            }
            CHECK_OK(status);
        }
        CHECK(reply.len == len);
        for (size_t k = 0; k < len; k++) {
            CHECK(reply.data[k] == (uint8_t)request[len - 1 - k]);
        }
        ipcall_buf_free(&reply);
        /* Spent: the outcome was handed out. */
        ipcall_buf untouched = {.data = SENTINEL, .len = 7};
        CHECK_STATUS(ipcall_pending_try_wait(pending, &untouched), IPCALL_E_CLOSED);
        CHECK(untouched.data == SENTINEL && untouched.len == 7);
        ipcall_pending_free(pending);
    }
    /* ipcall_pending_wait collects an answer kept in the pending too (or
     * waits for one not there yet); a pending freed unread leaks nothing. */
    for (int i = 0; i < 50; i++) {
        ipcall_pending *pending = NULL;
        CHECK_OK(ipcall_client_try_call(client, (const uint8_t *)"ab", 2, &pending));
        ipcall_buf reply = {0};
        CHECK_OK(ipcall_pending_wait(pending, 30000, &reply));
        CHECK(reply.len == 2 && reply.data[0] == 'b' && reply.data[1] == 'a');
        ipcall_buf_free(&reply);
        CHECK_STATUS(ipcall_pending_wait(pending, 0, &reply), IPCALL_E_CLOSED);
        ipcall_pending_free(pending);
        CHECK_OK(ipcall_client_try_call(client, (const uint8_t *)"unread", 6, &pending));
        ipcall_pending_free(pending);
    }
    CHECK_OK(ipcall_client_progress(client));
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_server_free(server);
    close(epfd);
    ipcall_client_free(client);
    CHECK(sched_setaffinity(0, sizeof before, &before) == 0);
    printf("transport %s: try_call answered %d of 500 at once, %d through the descriptor\n", kind, at_once, waited);
}

static void test_invalid_arguments(void) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("mem", NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 0, &client));
    int fd = 12345;
    CHECK_STATUS(ipcall_client_fd(NULL, &fd), IPCALL_E_INVALID);
    CHECK(fd == 12345);
    CHECK_STATUS(ipcall_client_fd(client, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_progress(NULL), IPCALL_E_INVALID);
    ipcall_pending *pending = SENTINEL;
    CHECK_STATUS(ipcall_client_try_send(NULL, (const uint8_t *)"x", 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_send(client, NULL, 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_send(client, (const uint8_t *)"x", 1, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_call(NULL, (const uint8_t *)"x", 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_call(client, NULL, 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_call(client, (const uint8_t *)"x", 1, NULL), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_call_spin(NULL, (const uint8_t *)"x", 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_call_spin(client, NULL, 1, &pending), IPCALL_E_INVALID);
    CHECK_STATUS(ipcall_client_try_call_spin(client, (const uint8_t *)"x", 1, NULL), IPCALL_E_INVALID);
    CHECK(pending == SENTINEL);
    /* Too large: nothing sent, nothing written. */
    size_t big = ((size_t)64 << 20) + 1; /* one over the default limit */
    uint8_t *data = calloc(1, big);
    CHECK(data != NULL);
    CHECK_STATUS(ipcall_client_try_send(client, data, big, &pending), IPCALL_E_TOO_LARGE);
    CHECK_STATUS(ipcall_client_try_call(client, data, big, &pending), IPCALL_E_TOO_LARGE);
    CHECK_STATUS(ipcall_client_try_call_spin(client, data, big, &pending), IPCALL_E_TOO_LARGE);
    CHECK(pending == SENTINEL);
    free(data);
    /* progress with nothing pending, before and after fd: harmless. */
    CHECK_OK(ipcall_client_progress(client));
    CHECK_OK(ipcall_client_fd(client, &fd));
    CHECK_OK(ipcall_client_progress(client));
    ipcall_client_free(client);
    ipcall_server_free(server);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_invalid_arguments();
    int kinds_run = 0;
    for (size_t k = 0; k < COUNT_OF(ALL_KINDS); k++) {
        const char *kind = ALL_KINDS[k];
        if (!kind_available(kind, "the event-loop C test")) {
            continue;
        }
        test_loop(kind);
        test_try_call(kind);
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    printf("event-loop C tests passed over %d transport(s)\n", kinds_run);
    return 0;
}
