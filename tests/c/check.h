/* Assertions and transport helpers shared by the C tests.
 *
 * Every check prints where it failed, what it expected, and ipcall's
 * detailed last-error message, then exits 1 (ctest reports the output). */
#ifndef IPCALL_TEST_CHECK_H
#define IPCALL_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipcall.h"

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last ipcall error: %s)\n", __FILE__, \
                    __LINE__, #cond, ipcall_last_error_message());                         \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_STATUS(expr, expected)                                                              \
    do {                                                                                          \
        ipcall_status got_ = (expr);                                                              \
        if (got_ != (ipcall_status)(expected)) {                                                  \
            fprintf(stderr, "%s:%d: %s returned %u (%s), expected %s (%s); last error: %s\n",     \
                    __FILE__, __LINE__, #expr, (unsigned)got_, ipcall_strerror(got_), #expected,  \
                    ipcall_strerror(expected), ipcall_last_error_message());                      \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, IPCALL_OK)

/* True if the buffer holds exactly the `len` bytes at `data`. */
static inline int buf_equals(const ipcall_buf *buf, const void *data, size_t len) {
    return buf->len == len && (len == 0 || memcmp(buf->data, data, len) == 0);
}

/* Every transport kind ipcall knows. The tests run over each one this build
 * provides; adding a transport needs no change here, and the list itself is
 * the one line to extend if a new kind is ever added. */
static const char *const ALL_KINDS[] = {"mem", "unix", "pipe", "shm"};
/* The kinds that reach other processes. */
static const char *const CROSS_PROCESS_KINDS[] = {"unix", "pipe", "shm"};
#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

/* 1 if transport `kind` is in this build; otherwise prints why `what` is
 * skipped for it (a line starting with SKIP, collected by `make test`) and
 * returns 0. Any other failure to bind fails the test. */
static inline int kind_available(const char *kind, const char *what) {
    ipcall_server *probe = NULL;
    ipcall_status status = ipcall_server_bind_unique(kind, NULL, &probe);
    if (status == IPCALL_OK) {
        ipcall_server_free(probe);
        return 1;
    }
    const char *reason = strstr(ipcall_last_error_message(), "not available");
    if (status == IPCALL_E_INVALID_NAME && reason != NULL) {
        printf("SKIP %s over %s: %s: %s\n", what, kind, ipcall_strerror(status), reason);
        fflush(stdout);
        return 0;
    }
    fprintf(stderr, "probing transport %s: %s: %s\n", kind, ipcall_strerror(status), ipcall_last_error_message());
    exit(1);
}

#endif
