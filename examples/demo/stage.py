"""The Python stage of `ipcall demo`: reverses the order of an item's words.

Binds the one-shot name it is given in IPCALL_SERVER and serves until the
orchestrator (its one client) goes away."""

import os

import ipcall

with ipcall.Server.bind(os.environ["IPCALL_SERVER"], one_shot=True) as server:
    for request in server:
        request.reply(b" ".join(reversed(request.data.split(b" "))))
