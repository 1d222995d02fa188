"""A server's statistics (`Server.stats()`, `Client.server_stats()`) and
`Client.ping()`, answered by ipcall itself, never by the application, over
every local transport."""

from __future__ import annotations

import pytest
from conftest import EchoThread

import ipcall


def test_stats_count_exactly_what_was_done(kind: str) -> None:
    server = ipcall.Server.bind_unique(kind)
    thread = EchoThread(server)
    try:
        with ipcall.connect(server.name, timeout=30) as client:
            assert client.call(b"hello") == b"hello"
            assert client.call(b"abc") == b"abc"
            with pytest.raises(ipcall.RemoteError):
                client.call(b"fail:no")
            with pytest.raises(ipcall.NoReply):
                client.call(b"noreply")
            assert client.ping(timeout=30) > 0
            for stats in (server.stats(), client.server_stats(timeout=30)):
                assert isinstance(stats, ipcall.ServerStats)
                assert (stats.calls, stats.replies, stats.fails, stats.no_replies, stats.in_flight) == (4, 2, 1, 1, 0)
                assert stats.bytes_in == 5 + 3 + 7 + 7
                assert stats.bytes_out == 5 + 3 + 2
                assert stats.errors == {"NoReply": 1, "RemoteError": 1}
                assert len(stats.latency) == 32 and sum(stats.latency) == 4
                assert stats.connections == (0 if kind == "mem" else 1)
                assert stats.uptime > 0
            assert "calls=4" in repr(server.stats())
    finally:
        thread.stop()


def test_ping_is_answered_while_nobody_receives(kind: str) -> None:
    with ipcall.Server.bind_unique(kind) as server, ipcall.connect(server.name, timeout=30) as client:
        assert 0 < client.ping(timeout=30) < 30
        assert client.server_stats(timeout=30).calls == 0


def test_latency_buckets_and_errors() -> None:
    assert ipcall.ServerStats.latency_bucket_range(0) == (0.0, 1e-6)
    assert ipcall.ServerStats.latency_bucket_range(3) == (4e-6, 8e-6)
    assert ipcall.ServerStats.latency_bucket_range(31)[1] is None
    with ipcall.Server.bind_unique("mem") as server, ipcall.connect(server.name) as client:
        with pytest.raises(ValueError):
            client.ping(timeout=-1)
        server.close()
        with pytest.raises(ipcall.Disconnected):
            client.ping(timeout=30)
    client.close()
    with pytest.raises(ipcall.Closed):
        client.server_stats()
