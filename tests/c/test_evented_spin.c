/* ipcall_client_progress_spin through the C API: one thread drives many
 * calls with epoll on ipcall_client_fd, calling ipcall_client_progress_spin
 * before each epoll_wait while calls are pending (as an event loop does
 * before it sleeps), against a real server (a thread of this process),
 * over every transport of this build and each wait mode. Over shm: it may
 * catch replies (how many depends on the CPUs, so only printed); over the
 * other transports, and with IPCALL_WAIT_BLOCK, it never does and the
 * calls complete through the descriptor. Also: a spinning client catches a
 * reply that is already in the ring (deterministic), a dead connection
 * completes the calls with IPCALL_E_DISCONNECTED, and the
 * invalid-argument statuses. No timing is asserted. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "evented_support.h"

#define CALLS 500
#define WINDOW 16

struct call {
    ipcall_pending *pending; /* NULL when free */
    char request[48];
    size_t len;
};

/* A client of `name` in wait mode `mode`, its descriptor watched by a new
 * epoll set written to `*epfd`. */
static ipcall_client *connect_watched(const char *name, ipcall_wait_mode mode, int *epfd) {
    ipcall_client_options *options = NULL;
    CHECK_OK(ipcall_client_options_new(&options));
    CHECK_OK(ipcall_client_options_set_wait_mode(options, mode));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect_with(name, options, 5000, &client));
    ipcall_client_options_free(options);
    int fd = -1;
    CHECK_OK(ipcall_client_fd(client, &fd));
    *epfd = epoll_create1(EPOLL_CLOEXEC);
    CHECK(*epfd >= 0);
    struct epoll_event watch = {.events = EPOLLIN, .data = {.fd = fd}};
    CHECK(epoll_ctl(*epfd, EPOLL_CTL_ADD, fd, &watch) == 0);
    return client;
}

/* Takes the outcome of every call of `calls` that has one; returns how many. */
static int settle(struct call *calls, int count) {
    int done = 0;
    for (int slot = 0; slot < count; slot++) {
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
    }
    return done;
}

static const char *mode_name(ipcall_wait_mode mode) {
    return mode == IPCALL_WAIT_SPIN ? "spin" : mode == IPCALL_WAIT_BLOCK ? "block" : "adaptive";
}

static void test_loop(const char *kind, ipcall_wait_mode mode) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, NULL, &server));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, server) == 0);
    int epfd = -1;
    ipcall_client *client = connect_watched(ipcall_server_name(server), mode, &epfd);

    /* Nothing pending: false at once, on every transport. */
    bool caught = true;
    CHECK_OK(ipcall_client_progress_spin(client, &caught));
    CHECK(!caught);
    CHECK(wait_ready(epfd, 0) == 0);

    /* Only shm: spins, and never in block mode. */
    bool may_catch = strcmp(kind, "shm") == 0 && mode != IPCALL_WAIT_BLOCK;
    static struct call calls[WINDOW];
    memset(calls, 0, sizeof calls);
    int sent = 0, done = 0, spun = 0, catches = 0;
    double deadline = now_s() + 120;
    while (done < CALLS) {
        CHECK(now_s() < deadline);
        for (int slot = 0; slot < WINDOW && sent < CALLS; slot++) {
            struct call *c = &calls[slot];
            if (c->pending != NULL) {
                continue;
            }
            c->len = (size_t)snprintf(c->request, sizeof c->request, "%s %s call %d", kind, mode_name(mode), sent);
            ipcall_status status = ipcall_client_try_send(client, (const uint8_t *)c->request, c->len, &c->pending);
            if (status == IPCALL_E_TIMEOUT) {
                CHECK(c->pending == NULL);
                break;
            }
            CHECK_OK(status);
            sent++;
        }
        /* About to sleep with calls pending: spin first. */
        caught = false;
        CHECK_OK(ipcall_client_progress_spin(client, &caught));
        spun++;
        if (caught) {
            CHECK(may_catch);
            catches++;
            int settled = settle(calls, WINDOW);
            CHECK(settled > 0); /* it caught a reply and made progress */
            done += settled;
            continue;
        }
        if (!wait_ready(epfd, 1000)) {
            continue;
        }
        CHECK_OK(ipcall_client_progress(client));
        done += settle(calls, WINDOW);
    }
    CHECK(sent == CALLS);
    /* Idle again: a bell a caught reply left rung is cleared by progress. */
    CHECK_OK(ipcall_client_progress(client));
    CHECK(wait_ready(epfd, 50) == 0);
    caught = true;
    CHECK_OK(ipcall_client_progress_spin(client, &caught));
    CHECK(!caught);

    /* The server goes away with calls it never answered: they complete
     * with IPCALL_E_DISCONNECTED; progress_spin does not fail for it. */
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_pending *orphans[4];
    int orphaned = 0;
    for (int i = 0; i < 4; i++) {
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
        CHECK_OK(ipcall_client_progress_spin(client, &caught));
        if (!caught) {
            if (!wait_ready(epfd, 1000)) {
                continue;
            }
            CHECK_OK(ipcall_client_progress(client));
        }
        for (int i = 0; i < orphaned; i++) {
            if (orphans[i] == NULL) {
                continue;
            }
            ipcall_buf reply = {0};
            ipcall_status status = ipcall_pending_try_wait(orphans[i], &reply);
            if (status == IPCALL_E_TIMEOUT) {
                continue;
            }
            CHECK_STATUS(status, IPCALL_E_DISCONNECTED);
            ipcall_pending_free(orphans[i]);
            orphans[i] = NULL;
            left--;
        }
    }
    CHECK_OK(ipcall_client_progress_spin(client, &caught));
    CHECK(!caught);
    close(epfd);
    ipcall_client_free(client);
    printf("transport %s, wait mode %s: %d calls; progress_spin caught replies %d of %d times\n", kind,
           mode_name(mode), CALLS, catches, spun);
}

/* A spinning client (IPCALL_WAIT_SPIN spins wherever the server runs)
 * catches a reply that is already in the ring: the descriptor turned
 * readable for it, and nothing read it yet. */
static void test_catches_waiting_reply(void) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("shm", NULL, &server));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve, server) == 0);
    int epfd = -1;
    ipcall_client *client = connect_watched(ipcall_server_name(server), IPCALL_WAIT_SPIN, &epfd);
    double deadline = now_s() + 60;
    for (int round = 0; round < 20; round++) {
        struct call c = {0};
        c.len = (size_t)snprintf(c.request, sizeof c.request, "waiting reply %d", round);
        CHECK_OK(ipcall_client_try_send(client, (const uint8_t *)c.request, c.len, &c.pending));
        while (!wait_ready(epfd, 1000)) {
            CHECK(now_s() < deadline);
        }
        bool caught = false;
        CHECK_OK(ipcall_client_progress_spin(client, &caught));
        CHECK(caught);
        CHECK(settle(&c, 1) == 1);
        /* The bell that announced it is cleared by the next progress. */
        CHECK_OK(ipcall_client_progress(client));
        CHECK(wait_ready(epfd, 0) == 0);
    }
    close(epfd);
    ipcall_client_free(client);
    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(thread, NULL) == 0);
    ipcall_server_free(server);
    printf("shm: a spinning client's progress_spin caught each reply waiting in the ring\n");
}

static void test_invalid_arguments(void) {
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("mem", NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 0, &client));
    bool caught = true;
    CHECK_STATUS(ipcall_client_progress_spin(NULL, &caught), IPCALL_E_INVALID);
    CHECK(caught); /* untouched */
    CHECK_STATUS(ipcall_client_progress_spin(client, NULL), IPCALL_E_INVALID);
    /* Before fd was asked for and with nothing pending: false. */
    CHECK_OK(ipcall_client_progress_spin(client, &caught));
    CHECK(!caught);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_invalid_arguments();
    static const ipcall_wait_mode modes[] = {IPCALL_WAIT_ADAPTIVE, IPCALL_WAIT_SPIN, IPCALL_WAIT_BLOCK};
    int kinds_run = 0;
    for (size_t k = 0; k < COUNT_OF(ALL_KINDS); k++) {
        const char *kind = ALL_KINDS[k];
        if (!kind_available(kind, "the progress_spin C test")) {
            continue;
        }
        for (size_t m = 0; m < COUNT_OF(modes); m++) {
            test_loop(kind, modes[m]);
        }
        if (strcmp(kind, "shm") == 0) {
            test_catches_waiting_reply();
        }
        kinds_run++;
    }
    CHECK(kinds_run > 0);
    printf("progress_spin C tests passed over %d transport(s)\n", kinds_run);
    return 0;
}
