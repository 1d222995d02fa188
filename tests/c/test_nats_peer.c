/* What a `nats:` request tells of its sender, through the C API, against a
 * real nats-server this test starts on a loopback port it picks itself
 * (`-p -1`, read back from the ports file) and stops at exit:
 * ipcall_request_peer_nats_client_id and ipcall_request_peer_name, and the
 * name a client chooses with ipcall_client_options_set_connection_name.
 *
 *   test_nats_peer NATS_SERVER_BINARY
 *
 * (`make test-c` passes .venv/bin/nats-server, which `make nats-server`
 * installs.) The "unknown" answers over the local transports are tested in
 * test_c_api.c. */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

static pid_t nats_pid = -1;
static char scratch[] = "/tmp/ipcall-c-nats-XXXXXX";

/* Stops nats-server and removes the scratch directory (also after a failed
 * CHECK, which exits). */
static void clean_up(void) {
    if (nats_pid > 0) {
        kill(nats_pid, SIGKILL);
        waitpid(nats_pid, NULL, 0);
        nats_pid = -1;
    }
    DIR *dir = opendir(scratch);
    if (dir != NULL) {
        struct dirent *entry;
        char path[512];
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", scratch, entry->d_name);
                unlink(path);
            }
        }
        closedir(dir);
        rmdir(scratch);
    }
}

/* Starts nats-server; returns its client address `127.0.0.1:<port>`. */
static void start_nats(const char *binary, char *addr, size_t addr_size) {
    CHECK(mkdtemp(scratch) != NULL);
    atexit(clean_up);
    char log[256];
    snprintf(log, sizeof log, "%s/log", scratch);
    char *argv[] = {(char *)binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", scratch, "-l", log, NULL};
    CHECK(posix_spawn(&nats_pid, binary, NULL, NULL, argv, environ) == 0);
    char ports[256];
    snprintf(ports, sizeof ports, "%s/nats-server_%d.ports", scratch, (int)nats_pid);
    /* Bounded: 20 s for the server to write its ports file. */
    for (int tries = 0; tries < 2000; tries++) {
        FILE *file = fopen(ports, "r");
        if (file != NULL) {
            char text[1024] = {0};
            size_t n = fread(text, 1, sizeof text - 1, file);
            fclose(file);
            const char *url = strstr(text, "nats://");
            const char *end = url != NULL ? strchr(url + 7, '"') : NULL;
            if (n > 0 && end != NULL && (size_t)(end - url - 7) < addr_size) {
                memcpy(addr, url + 7, (size_t)(end - url - 7));
                addr[end - url - 7] = '\0';
                return;
            }
        }
        CHECK(waitpid(nats_pid, NULL, WNOHANG) == 0); /* still running */
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK(!"nats-server wrote no ports file within 20 s");
}

/* One call from `client`, received by `server`: the peer's id and name. */
static void call_and_look(const ipcall_server *server, const ipcall_client *client, uint64_t *id, char *name,
                          size_t name_size) {
    ipcall_pending *pending = NULL;
    CHECK_OK(ipcall_client_send(client, (const uint8_t *)"who", 3, &pending));
    ipcall_request *request = NULL;
    CHECK_OK(ipcall_server_recv(server, 20000, &request));
    ipcall_peer peer;
    CHECK_OK(ipcall_request_peer(request, &peer));
    /* NATS tells nothing of the sender's process or user. */
    CHECK(peer.pid == -1 && peer.uid == -1 && peer.gid == -1);
    CHECK_OK(ipcall_request_peer_nats_client_id(request, id));
    const char *text = NULL;
    size_t len = 0;
    CHECK_OK(ipcall_request_peer_name(request, &text, &len));
    CHECK(text != NULL && strlen(text) == len && len < name_size);
    memcpy(name, text, len + 1);
    /* The length is optional. */
    const char *again = NULL;
    CHECK_OK(ipcall_request_peer_name(request, &again, NULL));
    CHECK(again == text);
    CHECK_OK(ipcall_request_reply(request, NULL, 0));
    ipcall_buf reply = {NULL, 0};
    CHECK_OK(ipcall_pending_wait(pending, 20000, &reply));
    ipcall_buf_free(&reply);
    ipcall_pending_free(pending);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || argv[1][0] == '\0' || access(argv[1], X_OK) != 0) {
        fprintf(stderr, "usage: test_nats_peer NATS_SERVER_BINARY (run `make nats-server`; got %s)\n",
                argc < 2 ? "nothing" : argv[1]);
        return 1;
    }
    char addr[128];
    start_nats(argv[1], addr, sizeof addr);
    char name[256];
    snprintf(name, sizeof name, "nats://%s/c.peer.%d", addr, (int)getpid());
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind(name, NULL, &server));
    ipcall_client *a = NULL, *b = NULL;
    CHECK_OK(ipcall_client_connect(name, 20000, &a));
    CHECK_OK(ipcall_client_connect(name, 20000, &b));

    uint64_t id_a1 = 0, id_b = 0, id_a2 = 0;
    char name_a[256], name_b[256], expected[64];
    snprintf(expected, sizeof expected, "ipcall client (pid %d)", (int)getpid());
    call_and_look(server, a, &id_a1, name_a, sizeof name_a);
    call_and_look(server, b, &id_b, name_b, sizeof name_b);
    call_and_look(server, a, &id_a2, name_a, sizeof name_a);
    /* One id per connection: a's calls say the same one, b's another. */
    CHECK(id_a1 == id_a2 && id_a1 != id_b);
    CHECK(strcmp(name_a, expected) == 0 && strcmp(name_b, expected) == 0);

    /* A name chosen in the options is the one the server sees. */
    ipcall_client_options *options = NULL;
    CHECK_OK(ipcall_client_options_new(&options));
    CHECK_OK(ipcall_client_options_set_connection_name(options, "billing worker 7 \xe2\x9c\x93"));
    CHECK_STATUS(ipcall_client_options_set_connection_name(options, "bad\nname"), IPCALL_E_INVALID);
    ipcall_client *c = NULL;
    CHECK_OK(ipcall_client_connect_with(name, options, 20000, &c));
    ipcall_client_options_free(options);
    uint64_t id_c = 0;
    char name_c[256];
    call_and_look(server, c, &id_c, name_c, sizeof name_c);
    CHECK(strcmp(name_c, "billing worker 7 \xe2\x9c\x93") == 0);
    CHECK(id_c != id_a1 && id_c != id_b);
    ipcall_client_free(c);

    ipcall_client_free(a);
    ipcall_client_free(b);
    ipcall_server_free(server);
    clean_up();
    printf("nats: the peer's client id and name passed (ids %llu, %llu)\n", (unsigned long long)id_a1,
           (unsigned long long)id_b);
    return 0;
}
