// An ipcall echo server and client in C++ (ipcall.hpp).
//
//   echo serve NAME | --unique KIND [--one-shot]   print the name, echo requests
//                                                  ("fail:<text>" fails with <text>)
//   echo call NAME MESSAGE...                      print each answer
//   echo demo MESSAGE...                           both in one process over mem:
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <ipcall.hpp>

using namespace std::chrono_literals;

// Answers requests until the server is closed (or its one client left).
static void serve(const ipcall::Server &server) {
    for (;;) {
        std::optional<ipcall::Request> request;
        try {
            request = server.recv();
        } catch (const ipcall::Error &e) {
            if (e.status() == IPCALL_E_CLOSED) {
                return;
            }
            throw;
        }
        std::string_view text = request->text();
        if (text.substr(0, 5) == "fail:") {
            request->fail(text.substr(5));
        } else {
            request->reply(request->data());
        }
    }
}

// Calls once per message and prints the answers; false if any call failed.
static bool call_all(const ipcall::Client &client, const std::vector<std::string> &messages) {
    bool all_ok = true;
    for (const std::string &message : messages) {
        try {
            ipcall::Buffer reply = client.call(message, 5s);
            std::cout << "reply: " << std::string(reply.begin(), reply.end()) << "\n";
        } catch (const ipcall::Error &e) {
            if (e.status() == IPCALL_E_REMOTE) {
                std::cout << "remote error: " << e.payload_text() << "\n";
            } else {
                std::cerr << "call: " << e.status_text() << ": " << e.what() << "\n";
                all_ok = false;
            }
        }
    }
    return all_ok;
}

int main(int argc, char **argv) try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 2 && args[0] == "serve") {
        bool one_shot = false;
        std::string name, kind;
        for (size_t i = 1; i < args.size(); i++) {
            if (args[i] == "--unique" && i + 1 < args.size()) {
                kind = args[++i];
            } else if (args[i] == "--one-shot") {
                one_shot = true;
            } else {
                name = args[i];
            }
        }
        ipcall::ServerOptions options;
        options.one_shot(one_shot);
        ipcall::Server server = kind.empty() ? ipcall::Server::bind(name, options)
                                             : ipcall::Server::bind_unique(kind, options);
        std::cout << server.name() << std::endl;
        serve(server);
        return 0;
    }
    if (args.size() >= 2 && args[0] == "call") {
        ipcall::Client client = ipcall::Client::connect(args[1], 5s);
        return call_all(client, {args.begin() + 2, args.end()}) ? 0 : 1;
    }
    if (!args.empty() && args[0] == "demo") {
        ipcall::Server server = ipcall::Server::bind("mem:cpp-echo-demo");
        std::thread worker([&server] { serve(server); });
        bool ok = call_all(ipcall::Client::connect(server.name()), {args.begin() + 1, args.end()});
        server.close();
        worker.join();
        return ok ? 0 : 1;
    }
    std::cerr << "usage: echo serve NAME|--unique KIND [--one-shot] | echo call NAME MESSAGE... | echo demo MESSAGE...\n";
    return 2;
} catch (const ipcall::Error &e) {
    std::cerr << "echo: " << e.status_text() << ": " << e.what() << "\n";
    return 1;
}
