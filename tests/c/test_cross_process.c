/* C against Rust in separate processes, over every cross-process transport
 * this build provides (the others are skipped with the reason):
 *
 *   - a C server (one-shot, accept with a timeout) answers the Rust peer's
 *     client script (`peer client NAME`);
 *   - a C client runs the script against a Rust server (`peer serve
 *     --unique KIND --one-shot`), whose name it reads from the peer's stdout.
 *
 * usage: test_cross_process PATH/TO/peer
 * Exits 77 (ctest: skipped) when no cross-process transport exists yet. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "script.h"

/* Starts `argv` with its stdout on a pipe; returns the pid, sets *out. */
static pid_t spawn(char *const argv[], FILE **out) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        perror("execv");
        _exit(127);
    }
    close(fds[1]);
    *out = fdopen(fds[0], "r");
    CHECK(*out != NULL);
    return pid;
}

/* Waits for `pid` and checks it exited with status 0. */
static void expect_exit_zero(pid_t pid, const char *what) {
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s did not exit cleanly (wait status %d)\n", what, status);
        exit(1);
    }
}

/* C server, Rust client. */
static void c_server_rust_client(const char *peer, const char *kind) {
    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_set_one_shot(options, true));
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind_unique(kind, options, &server));
    ipcall_server_options_free(options);

    char *argv[] = {(char *)peer, "client", (char *)ipcall_server_name(server), "--calls", "50", NULL};
    FILE *out = NULL;
    pid_t pid = spawn(argv, &out);
    /* A child that dies before connecting must not hang us. */
    CHECK_OK(ipcall_server_accept(server, 30000));
    long handled = serve_script(server); /* until the one client is gone */
    CHECK(handled == 50 + 2);
    char line[128] = "";
    CHECK(fgets(line, sizeof line, out) != NULL);
    CHECK(strcmp(line, "ok 50\n") == 0);
    fclose(out);
    expect_exit_zero(pid, "peer client");
    ipcall_server_free(server);
    printf("%s: C server answered the Rust client (%ld requests)\n", kind, handled);
}

/* Rust server, C client. */
static void rust_server_c_client(const char *peer, const char *kind) {
    char *argv[] = {(char *)peer, "serve", "--unique", (char *)kind, "--one-shot", NULL};
    FILE *out = NULL;
    pid_t pid = spawn(argv, &out);
    char name[4200] = "";
    if (fgets(name, sizeof name, out) == NULL) {
        kill(pid, SIGKILL);
        fprintf(stderr, "peer serve printed no name\n");
        exit(1);
    }
    name[strcspn(name, "\n")] = '\0';
    CHECK(strncmp(name, kind, strlen(kind)) == 0);
    ipcall_client *client = NULL;
    CHECK_OK(ipcall_client_connect(name, 10000, &client));
    client_script(client, 50);
    ipcall_client_free(client); /* the one-shot peer then ends */
    fclose(out);
    expect_exit_zero(pid, "peer serve");
    printf("%s: C client ran the script against the Rust server\n", kind);
}

/* Forks a child that switches to uid/gid `uid` and connects to `name`;
 * returns its pid. The child exits 0 if connect returned `expected` (and, on
 * success, a call was echoed), else 1. */
static pid_t connect_as(uid_t uid, const char *name, ipcall_status expected) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid != 0) {
        return pid;
    }
    if (setgid(uid) != 0 || setuid(uid) != 0) {
        perror("setuid");
        _exit(1);
    }
    ipcall_client *client = NULL;
    ipcall_status status = ipcall_client_connect(name, 0, &client);
    if (status != expected) {
        fprintf(stderr, "as uid %u: connect returned %s, expected %s: %s\n", (unsigned)uid, ipcall_strerror(status),
                ipcall_strerror(expected), ipcall_last_error_message());
        _exit(1);
    }
    if (status == IPCALL_OK) {
        ipcall_buf reply = {0};
        status = ipcall_client_call(client, (const uint8_t *)"from another uid", 16, 10000, &reply);
        if (status != IPCALL_OK || !buf_equals(&reply, "from another uid", 16)) {
            fprintf(stderr, "as uid %u: call: %s\n", (unsigned)uid, ipcall_last_error_message());
            _exit(1);
        }
        ipcall_buf_free(&reply);
        ipcall_client_free(client);
    }
    _exit(0);
}

/* Serves `server` (echo) until child `pid` exits; checks it exited 0. */
static void serve_until_exit(const ipcall_server *server, pid_t pid) {
    for (;;) {
        int status = 0;
        pid_t done = waitpid(pid, &status, WNOHANG);
        CHECK(done >= 0);
        if (done == pid) {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            return;
        }
        ipcall_request *request = NULL;
        ipcall_status got = ipcall_server_recv(server, 5, &request);
        if (got == IPCALL_OK) {
            const uint8_t *data = NULL;
            size_t len = 0;
            CHECK_OK(ipcall_request_data(request, &data, &len));
            CHECK_OK(ipcall_request_reply(request, data, len));
        } else {
            CHECK_STATUS(got, IPCALL_E_TIMEOUT);
        }
    }
}

/* Over an abstract unix socket (no file permissions to lean on) the server
 * refuses other uids by default — IPCALL_E_PERMISSION_DENIED at the client —
 * and admits the ones its options allow. Needs root to run as another uid. */
static void other_uid(void) {
    if (geteuid() != 0) {
        printf("SKIP other-uid test over unix: needs root to run a client as another uid\n");
        return;
    }
    const uid_t nobody = 65534;
    char name[96];
    snprintf(name, sizeof name, "unix:@ipcall-c-uid-test-%d", (int)getpid());
    ipcall_server *server = NULL;
    CHECK_OK(ipcall_server_bind(name, NULL, &server));
    serve_until_exit(server, connect_as(nobody, name, IPCALL_E_PERMISSION_DENIED));
    ipcall_server_free(server);

    ipcall_server_options *options = NULL;
    CHECK_OK(ipcall_server_options_new(&options));
    CHECK_OK(ipcall_server_options_allow_uid(options, nobody));
    CHECK_OK(ipcall_server_bind(name, options, &server));
    ipcall_server_options_free(options);
    serve_until_exit(server, connect_as(nobody, name, IPCALL_OK));
    ipcall_server_free(server);
    printf("unix: another uid is refused by default and admitted by allow_uid\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2 || access(argv[1], X_OK) != 0) {
        fprintf(stderr, "usage: test_cross_process PATH/TO/peer (cargo build -p ipcall --example peer)\n");
        return 2;
    }
    int kinds_run = 0;
    if (kind_available("unix", "other-uid test")) {
        other_uid();
    }
    for (size_t k = 0; k < COUNT_OF(CROSS_PROCESS_KINDS); k++) {
        const char *kind = CROSS_PROCESS_KINDS[k];
        if (!kind_available(kind, "C <-> Rust across processes")) {
            continue;
        }
        c_server_rust_client(argv[1], kind);
        rust_server_c_client(argv[1], kind);
        kinds_run++;
    }
    if (kinds_run == 0) {
        printf("SKIP C <-> Rust across processes: no cross-process transport in this build yet\n");
        return 77;
    }
    return 0;
}
