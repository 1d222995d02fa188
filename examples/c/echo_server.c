/* An ipcall echo server in C.
 *
 *   echo_server NAME              listen on NAME (e.g. unix:/tmp/echo.sock)
 *   echo_server --unique KIND     listen on a new name of KIND (unix, pipe, shm)
 *   add --one-shot to serve one client and exit when it leaves
 *
 * Prints the name on one line, then answers every request: "fail:<text>"
 * fails it with <text> as the error payload, anything else is echoed. */
#include <stdio.h>
#include <string.h>

#include <ipcall.h>

static int die(const char *what, ipcall_status status) {
    fprintf(stderr, "echo_server: %s: %s (%s)\n", what, ipcall_strerror(status), ipcall_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    const char *name = NULL, *kind = NULL;
    bool one_shot = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--unique") == 0 && i + 1 < argc) {
            kind = argv[++i];
        } else if (strcmp(argv[i], "--one-shot") == 0) {
            one_shot = true;
        } else {
            name = argv[i];
        }
    }
    if ((name == NULL) == (kind == NULL)) {
        fprintf(stderr, "usage: echo_server NAME | --unique KIND [--one-shot]\n");
        return 2;
    }

    ipcall_server_options *options = NULL;
    ipcall_status status = ipcall_server_options_new(&options);
    if (status != IPCALL_OK) {
        return die("options", status);
    }
    ipcall_server_options_set_one_shot(options, one_shot);
    ipcall_server *server = NULL;
    status = kind ? ipcall_server_bind_unique(kind, options, &server) : ipcall_server_bind(name, options, &server);
    ipcall_server_options_free(options);
    if (status != IPCALL_OK) {
        return die("bind", status);
    }
    printf("%s\n", ipcall_server_name(server));
    fflush(stdout);

    long served = 0;
    for (;;) {
        ipcall_request *request = NULL;
        status = ipcall_server_recv(server, -1, &request);
        if (status == IPCALL_E_CLOSED) {
            break; /* a one-shot server whose client left */
        }
        if (status != IPCALL_OK) {
            ipcall_server_free(server);
            return die("recv", status);
        }
        const uint8_t *data = NULL;
        size_t len = 0;
        ipcall_request_data(request, &data, &len);
        /* reply and fail consume the request, whatever they return. */
        if (len >= 5 && memcmp(data, "fail:", 5) == 0) {
            status = ipcall_request_fail(request, data + 5, len - 5);
        } else {
            status = ipcall_request_reply(request, data, len);
        }
        if (status != IPCALL_OK) {
            fprintf(stderr, "echo_server: answer: %s\n", ipcall_last_error_message());
        }
        served++;
    }
    fprintf(stderr, "echo_server: served %ld requests\n", served);
    ipcall_server_free(server);
    return 0;
}
