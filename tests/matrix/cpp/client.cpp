// The C++ client of the cross-language matrix (tests/matrix/README.md): runs
// the script against $IPCALL_SERVER through the header-only wrapper.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ipcall.hpp>
#include <vector>

#include "../c/matrix.h"

int main() {
    const char *name = std::getenv("IPCALL_SERVER");
    const char *calls_text = std::getenv("IPCALL_CALLS");
    long calls = calls_text ? std::atol(calls_text) : 1000;
    if (name == nullptr) {
        std::printf("FAIL IPCALL_SERVER is not set\n");
        return 1;
    }
    try {
        ipcall::Client client = ipcall::Client::connect(name, std::chrono::seconds(10));
        std::vector<uint8_t> data;
        uint64_t state = 0x2545F4914F6CDD1Dull;
        for (long i = 0; i < calls; i++) {
            state = matrix_next(state);
            size_t size = matrix_size(static_cast<size_t>(i), state);
            data.resize(size);
            matrix_fill(data.data(), size, state);
            std::vector<uint8_t> reply = client.call(data);
            uint32_t crc = matrix_crc32(data.data(), size);
            bool good = reply.size() == size + 4;
            for (int k = 0; good && k < 4; k++) {
                good = reply[k] == static_cast<uint8_t>(crc >> (8 * k));
            }
            if (!good || !std::equal(data.begin(), data.end(), reply.begin() + 4)) {
                std::printf("FAIL call %ld (%zu B): the reply (%zu B) is not crc32 + the request\n", i, size,
                            reply.size());
                return 1;
            }
        }

        std::vector<uint8_t> failing{'f', 'a', 'i', 'l', ':'};
        for (int b = 0; b < 256; b++) {
            failing.push_back(static_cast<uint8_t>(b));
        }
        try {
            client.call(failing);
            std::printf("FAIL the fail request was answered\n");
            return 1;
        } catch (const ipcall::Error &error) {
            if (error.status() != IPCALL_E_REMOTE ||
                error.payload() != std::vector<uint8_t>(failing.begin() + 5, failing.end())) {
                std::printf("FAIL the fail request gave %s (%s), expected IPCALL_E_REMOTE with bytes 0..255\n",
                            error.status_text(), error.what());
                return 1;
            }
        }
        try {
            client.call("noreply");
            std::printf("FAIL the noreply request was answered\n");
            return 1;
        } catch (const ipcall::Error &error) {
            if (error.status() != IPCALL_E_NO_REPLY) {
                std::printf("FAIL the noreply request gave %s (%s)\n", error.status_text(), error.what());
                return 1;
            }
        }
    } catch (const ipcall::Error &error) {
        std::printf("FAIL %s: %s\n", error.status_text(), error.what());
        return 1;
    }
    std::printf("ok %ld\n", calls);
    return 0;
}
