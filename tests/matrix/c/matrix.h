/* What the C server, C client and C++ client of the matrix share: CRC-32
 * and the sizes and bytes of the script (tests/matrix/README.md). */
#ifndef IPCALL_MATRIX_H
#define IPCALL_MATRIX_H

#include <stddef.h>
#include <stdint.h>

/* Exit code of a server whose transport is not in this build. */
#define MATRIX_EXIT_SKIP 77

/* CRC-32 (IEEE, as zlib computes it). */
static inline uint32_t matrix_crc32(const uint8_t *data, size_t len) {
    static uint32_t table[256];
    static int ready = 0;
    if (!ready) {
        for (uint32_t n = 0; n < 256; n++) {
            uint32_t c = n;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }
            table[n] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

/* The size of call `index` given the script's state after it advanced. */
static inline size_t matrix_size(size_t index, uint64_t state) {
    static const size_t fixed[3] = {0, (size_t)1 << 20, (size_t)16 << 20};
    if (index < 3) {
        return fixed[index];
    }
    return (size_t)((state >> 8) % ((uint64_t)1 << (state % 21)));
}

/* Advances the script's xorshift64 state. */
static inline uint64_t matrix_next(uint64_t state) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* Fills `data[0..len]` with bytes derived from `seed`. */
static inline void matrix_fill(uint8_t *data, size_t len, uint64_t seed) {
    uint64_t x = seed;
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
        }
        data[i] = (uint8_t)(x >> (8 * (i % 8)));
    }
}

#endif
