// A minimal user of the C++ wrapper: echo over mem: with a server thread.
#include <cstdio>
#include <string>
#include <thread>

#include <ipcall.hpp>

int main() {
    ipcall::Server server = ipcall::Server::bind_unique("mem");
    std::thread worker([&server] {
        ipcall::Request request = server.recv();
        request.reply(request.data());
    });
    ipcall::Client client = ipcall::Client::connect(server.name());
    ipcall::Buffer reply = client.call("ping");
    worker.join();
    std::printf("consumer ok: %s (C++)\n", std::string(reply.begin(), reply.end()).c_str());
    return 0;
}
