/* ipcall_set_event_callback: the core's events (docs/C-API.md "Events")
 * reach a C callback with their fields — a client that connects, calls and
 * leaves over unix: (connected, accepted with our pid and uid, dropped
 * client_left), garbage from a raw socket (a WARN protocol_violation drop),
 * a failed connect (its status), the level filter, removal (nothing after
 * ipcall_set_event_callback(NULL) returns), and the argument errors,
 * including a call from inside the callback. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* Every wait in these tests is bounded by this (a loaded 2-CPU machine). */
#define BOUND_MS 60000
#define MAX_SEEN 256

/* An event copied out of the callback (its pointers die with the call). */
struct seen {
    ipcall_event_level level;
    char message[64];
    char transport[16];
    char name[256];
    char reason[64];    /* "" when NULL */
    char violation[256];
    char error[256];
    ipcall_status status;
    int64_t conn, pid, uid;
};

/* What the callback fills: its `user`. */
struct recorder {
    pthread_mutex_t lock;
    pthread_cond_t grew;
    struct seen seen[MAX_SEEN];
    size_t count;
    /* 1: the callback also tries ipcall_set_event_callback and records its status. */
    int nest;
    ipcall_status nested;
};

static void copy(char *to, size_t size, const char *from) {
    snprintf(to, size, "%s", from == NULL ? "" : from);
}

static void on_event(const ipcall_event *event, void *user) {
    struct recorder *r = user;
    CHECK(event->message != NULL && event->transport != NULL && event->name != NULL);
    pthread_mutex_lock(&r->lock);
    if (r->nest) {
        r->nested = ipcall_set_event_callback(NULL, NULL, 0);
    }
    if (r->count < MAX_SEEN) {
        struct seen *s = &r->seen[r->count++];
        s->level = event->level;
        copy(s->message, sizeof s->message, event->message);
        copy(s->transport, sizeof s->transport, event->transport);
        copy(s->name, sizeof s->name, event->name);
        copy(s->reason, sizeof s->reason, event->reason);
        copy(s->violation, sizeof s->violation, event->violation);
        copy(s->error, sizeof s->error, event->error);
        s->status = event->status;
        s->conn = event->conn;
        s->pid = event->pid;
        s->uid = event->uid;
    }
    pthread_cond_broadcast(&r->grew);
    pthread_mutex_unlock(&r->lock);
}

static void recorder_init(struct recorder *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->grew, NULL);
}

static void recorder_destroy(struct recorder *r) {
    pthread_cond_destroy(&r->grew);
    pthread_mutex_destroy(&r->lock);
}

/* The first event with `message` naming `name` (and, if `reason` is not
 * NULL, that reason), copied; waits for it up to BOUND_MS, else fails. */
static struct seen wait_for(struct recorder *r, const char *message, const char *name, const char *reason) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += BOUND_MS / 1000;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        for (size_t i = 0; i < r->count; i++) {
            const struct seen *s = &r->seen[i];
            if (strcmp(s->message, message) == 0 && strcmp(s->name, name) == 0
                && (reason == NULL || strcmp(s->reason, reason) == 0)) {
                struct seen found = *s;
                pthread_mutex_unlock(&r->lock);
                return found;
            }
        }
        int waited = pthread_cond_timedwait(&r->grew, &r->lock, &until);
        if (waited == ETIMEDOUT) {
            fprintf(stderr, "no \"%s\" event for %s within %d ms; %zu events seen:\n", message, name, BOUND_MS,
                    r->count);
            for (size_t i = 0; i < r->count; i++) {
                fprintf(stderr, "  %s %s %s\n", r->seen[i].message, r->seen[i].name, r->seen[i].reason);
            }
            exit(1);
        }
    }
}

/* How many events naming `name` the callback got (all of them for NULL). */
static size_t count_of(struct recorder *r, const char *name) {
    pthread_mutex_lock(&r->lock);
    size_t count = 0;
    for (size_t i = 0; i < r->count; i++) {
        count += name == NULL || strcmp(r->seen[i].name, name) == 0;
    }
    pthread_mutex_unlock(&r->lock);
    return count;
}

/* Answers every request with its own bytes until the server is closed. */
static void *echo_thread(void *arg) {
    ipcall_server *server = arg;
    for (;;) {
        ipcall_request *request = NULL;
        ipcall_status status = ipcall_server_recv(server, -1, &request);
        if (status == IPCALL_E_CLOSED) {
            return NULL;
        }
        CHECK_OK(status);
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(ipcall_request_data(request, &data, &len));
        CHECK_OK(ipcall_request_reply(request, data, len));
    }
}

static void test_argument_errors(void) {
    struct recorder r;
    recorder_init(&r);
    CHECK_STATUS(ipcall_set_event_callback(on_event, &r, 0), IPCALL_E_INVALID);
    CHECK(strstr(ipcall_last_error_message(), "max_level") != NULL);
    CHECK_STATUS(ipcall_set_event_callback(on_event, &r, 6), IPCALL_E_INVALID);
    /* Removing ignores the level; removing twice is harmless. */
    CHECK_OK(ipcall_set_event_callback(NULL, NULL, 0));
    CHECK_OK(ipcall_set_event_callback(NULL, NULL, 99));
    /* None of the refused calls set a callback: a connect stays silent. */
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("mem", NULL, &server));
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(ipcall_server_name(server), 0, &client));
    ipcall_client_free(client);
    ipcall_server_free(server);
    CHECK(count_of(&r, NULL) == 0);
    recorder_destroy(&r);
}

static void test_connect_call_and_leave_over_unix(void) {
    if (!kind_available("unix", "events over unix:")) {
        return;
    }
    struct recorder r;
    recorder_init(&r);
    CHECK_OK(ipcall_set_event_callback(on_event, &r, IPCALL_EVENT_DEBUG));
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("unix", NULL, &server));
    const char *name = ipcall_server_name(server);
    pthread_t echo;
    CHECK(pthread_create(&echo, NULL, echo_thread, server) == 0);

    struct seen bound = wait_for(&r, "server bound", name, NULL);
    CHECK(bound.level == IPCALL_EVENT_DEBUG && strcmp(bound.transport, "unix") == 0);
    CHECK(bound.status == IPCALL_OK && bound.conn == -1 && bound.pid == -1);

    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(name, BOUND_MS, &client));
    ipcall_buf reply = {0};
    CHECK_OK(ipcall_client_call(client, (const uint8_t *)"hi", 2, BOUND_MS, &reply));
    CHECK(buf_equals(&reply, "hi", 2));
    ipcall_buf_free(&reply);

    struct seen connected = wait_for(&r, "connected", name, NULL);
    CHECK(connected.level == IPCALL_EVENT_DEBUG && connected.status == IPCALL_OK);
    struct seen accepted = wait_for(&r, "connection accepted", name, NULL);
    CHECK(accepted.level == IPCALL_EVENT_DEBUG);
    CHECK(strcmp(accepted.transport, "unix") == 0);
    CHECK(accepted.pid == (int64_t)getpid());
    CHECK(accepted.uid == (int64_t)getuid());
    CHECK(accepted.conn >= 0);

    ipcall_client_free(client);
    struct seen dropped = wait_for(&r, "connection dropped", name, NULL);
    CHECK(dropped.level == IPCALL_EVENT_DEBUG);
    CHECK(strcmp(dropped.reason, "client_left") == 0);
    CHECK(dropped.conn == accepted.conn && dropped.pid == (int64_t)getpid());
    CHECK(dropped.violation[0] == '\0');

    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(echo, NULL) == 0);
    ipcall_server_free(server);
    /* After it returns, no call of the callback runs: `r` may go. */
    CHECK_OK(ipcall_set_event_callback(NULL, NULL, 0));
    recorder_destroy(&r);
}

static void test_garbage_is_a_protocol_violation_drop(void) {
    if (!kind_available("unix", "a protocol violation over unix:")) {
        return;
    }
    struct recorder r;
    recorder_init(&r);
    CHECK_OK(ipcall_set_event_callback(on_event, &r, IPCALL_EVENT_DEBUG));
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("unix", NULL, &server));
    const char *name = ipcall_server_name(server);
    pthread_t echo;
    CHECK(pthread_create(&echo, NULL, echo_thread, server) == 0);

    int raw = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(raw >= 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    CHECK(strlen(name) - strlen("unix:") < sizeof address.sun_path);
    strcpy(address.sun_path, name + strlen("unix:"));
    CHECK(connect(raw, (const struct sockaddr *)&address, sizeof address) == 0);
    const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(raw, garbage, sizeof garbage - 1) == (ssize_t)(sizeof garbage - 1));

    struct seen dropped = wait_for(&r, "connection dropped", name, NULL);
    CHECK(dropped.level == IPCALL_EVENT_WARN);
    CHECK(strcmp(dropped.reason, "protocol_violation") == 0);
    CHECK(strstr(dropped.violation, "not an ipcall peer") != NULL);
    CHECK(dropped.pid == (int64_t)getpid());
    close(raw);

    CHECK_OK(ipcall_server_close(server));
    CHECK(pthread_join(echo, NULL) == 0);
    ipcall_server_free(server);
    CHECK_OK(ipcall_set_event_callback(NULL, NULL, 0));
    recorder_destroy(&r);
}

static void test_a_failed_connect_carries_its_status(void) {
    struct recorder r;
    recorder_init(&r);
    CHECK_OK(ipcall_set_event_callback(on_event, &r, IPCALL_EVENT_DEBUG));
    char name[128];
    snprintf(name, sizeof name, "mem:ipcall-c-events-nobody-%d", (int)getpid());
    ipcall_client *client = NULL;
    CHECK_STATUS(ipcall_client_connect(name, 0, &client), IPCALL_E_NOT_FOUND);
    /* Emitted inside the connect, on this thread: already there. */
    CHECK(count_of(&r, name) == 1);
    struct seen failed = wait_for(&r, "connect failed", name, NULL);
    CHECK(failed.status == IPCALL_E_NOT_FOUND);
    CHECK(strstr(failed.error, name) != NULL);
    CHECK(strcmp(failed.transport, "mem") == 0);
    CHECK_OK(ipcall_set_event_callback(NULL, NULL, 0));
    recorder_destroy(&r);
}

/* Over mem: every event of a connect and a free is emitted on this thread,
 * inside those calls, so what the callback got is known when they return. */
static void connect_and_leave(const char *name) {
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(name, 0, &client));
    ipcall_client_free(client);
}

static void test_level_filter_removal_and_nesting(void) {
    struct recorder r;
    recorder_init(&r);
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique("mem", NULL, &server));
    const char *name = ipcall_server_name(server);

    /* WARN: a connect, accept and a client that left are DEBUG. */
    CHECK_OK(ipcall_set_event_callback(on_event, &r, IPCALL_EVENT_WARN));
    connect_and_leave(name);
    CHECK(count_of(&r, name) == 0);

    /* DEBUG: all three, in the calls. */
    CHECK_OK(ipcall_set_event_callback(on_event, &r, IPCALL_EVENT_DEBUG));
    connect_and_leave(name);
    CHECK(count_of(&r, name) == 3);
    CHECK(wait_for(&r, "connection accepted", name, NULL).conn == 1);
    CHECK(wait_for(&r, "connection dropped", name, "client_left").conn == 1);
    wait_for(&r, "connected", name, NULL);

    /* From inside the callback: refused, and the callback stays set. */
    r.nest = 1;
    connect_and_leave(name);
    CHECK(r.nested == IPCALL_E_INVALID);
    CHECK(count_of(&r, name) == 6);
    r.nest = 0;

    /* Removed: nothing more. */
    CHECK_OK(ipcall_set_event_callback(NULL, NULL, 0));
    connect_and_leave(name);
    CHECK(count_of(&r, name) == 6);

    ipcall_server_free(server);
    recorder_destroy(&r);
}

int main(void) {
    test_argument_errors();
    test_connect_call_and_leave_over_unix();
    test_garbage_is_a_protocol_violation_drop();
    test_a_failed_connect_carries_its_status();
    test_level_filter_removal_and_nesting();
    printf("events: all tests passed\n");
    return 0;
}
