/* The C server of the cross-language matrix (tests/matrix/README.md):
 *   server KIND   binds a one-shot unique name of KIND, prints it, serves. */
#include <ipcall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matrix.h"

static int die(const char *what, ipcall_status status) {
    printf("FAIL %s: %s (%s)\n", what, ipcall_strerror(status), ipcall_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s KIND\n", argv[0]);
        return 2;
    }
    ipcall_server_options *options = NULL;
    ipcall_status status = ipcall_server_options_new(&options);
    if (status == IPCALL_OK) {
        status = ipcall_server_options_set_one_shot(options, true);
    }
    if (status != IPCALL_OK) {
        return die("options", status);
    }
    ipcall_server *server = NULL;
    status = ipcall_server_bind_unique(argv[1], options, &server);
    ipcall_server_options_free(options);
    if (status == IPCALL_E_INVALID_NAME) {
        printf("SKIP %s\n", ipcall_last_error_message());
        return MATRIX_EXIT_SKIP;
    }
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
            break;
        }
        if (status != IPCALL_OK) {
            return die("recv", status);
        }
        served++;
        const uint8_t *data = NULL;
        size_t len = 0;
        ipcall_request_data(request, &data, &len);
        if (len >= 5 && memcmp(data, "fail:", 5) == 0) {
            status = ipcall_request_fail(request, data + 5, len - 5);
        } else if (len == 7 && memcmp(data, "noreply", 7) == 0) {
            ipcall_request_free(request);
            status = IPCALL_OK;
        } else {
            uint8_t *reply = malloc(len + 4);
            if (reply == NULL) {
                printf("FAIL out of memory\n");
                return 1;
            }
            uint32_t crc = matrix_crc32(data, len);
            for (int i = 0; i < 4; i++) {
                reply[i] = (uint8_t)(crc >> (8 * i));
            }
            if (len > 0) {
                memcpy(reply + 4, data, len);
            }
            status = ipcall_request_reply(request, reply, len + 4);
            free(reply);
        }
        if (status != IPCALL_OK) {
            return die("answer", status);
        }
    }
    ipcall_server_free(server);
    printf("served %ld\n", served);
    return 0;
}
