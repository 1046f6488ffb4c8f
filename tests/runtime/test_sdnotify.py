"""The notify protocol against a datagram socket the test owns."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import logs
from engine.runtime.sdnotify import MAX_STATUS_CHARS, Notifier
from tests.fakes.engine_process import EngineProcess


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return messages


def test_notifier_lifecycle_messages_arrive_in_order(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.ready()
    notifier.status("ticks=10 signals=1")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert _drain(sock) == ["READY=1", "STATUS=ticks=10 signals=1", "WATCHDOG=1", "STOPPING=1"]
    assert notifier.sent == 4


def test_notifier_abstract_namespace_at_prefix_is_used() -> None:
    name = f"hybrid-engine-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_notifier_status_multiline_long_text_is_one_bounded_line(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    notifier.status("a\nb  c" + "x" * 5000)
    message = sock.recv(8192).decode()
    assert message.startswith("STATUS=a b cx")
    assert "\n" not in message
    assert len(message) == len("STATUS=") + MAX_STATUS_CHARS
    notifier.close()


def test_notifier_without_socket_env_is_noop() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    assert notifier.sent == 0 and notifier.failures == 0


def test_notifier_watchdog_usec_gives_half_interval(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval_s == 15.0


@pytest.mark.parametrize(
    "env",
    [
        {"WATCHDOG_USEC": "not-a-number"},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
    ],
)
def test_notifier_watchdog_invalid_or_foreign_is_none(
    receiver: tuple[socket.socket, str], env: dict[str, str]
) -> None:
    _, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, **env})
    assert notifier.watchdog_interval_s is None


def test_notifier_watchdog_pid_ours_is_honoured(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval_s == 1.0


def test_notifier_missing_socket_never_raises_and_warns_once(tmp_path: Path) -> None:
    with logs.capture() as out:
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})
        notifier.ready()
        notifier.watchdog()
        notifier.stopping()
    lines = out.lines
    assert [line["event"] for line in lines] == ["sd_notify_failed"]
    assert lines[0]["level"] == "warning"
    assert notifier.failures == 3 and notifier.sent == 0


# -- the real engine against a socket the test owns --------------------------------


def _recv_all(sock: socket.socket) -> list[str]:
    return _drain(sock)


def _recv_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    """Receive (blocking, bounded by the socket timeout) until ``wanted`` arrives."""
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if message == wanted:
            return


def test_engine_notify_ready_status_watchdog_stopping_and_no_watchdog_while_stalled(
    receiver: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = receiver
    sock.settimeout(30)
    db = tmp_path / "engine.db"
    engine = EngineProcess(
        ["run", "--db", str(db)],
        env={
            "NOTIFY_SOCKET": path,
            "WATCHDOG_USEC": "200000",  # ping every 0.1 s
            "ENGINE_ENGINE_HEARTBEAT_INTERVAL_S": "0.2",
            "ENGINE_INGEST_SYNTHETIC_RATE_PER_S": "2000",
        },
    )
    seen: list[str] = []
    try:
        _recv_until(sock, "READY=1", seen)
        assert seen == ["READY=1"], "READY must be the first message"
        _recv_until(sock, "WATCHDOG=1", seen)
        engine.wait_for(lambda line: line.get("event") == "heartbeat", timeout=30)

        # Stall the pipeline: hold the database's write lock, so persistence cannot
        # commit while ingest keeps filling the queues.
        blocker = sqlite3.connect(db, isolation_level=None, timeout=30)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            withheld = lambda line: line.get("event") == "watchdog_withheld"  # noqa: E731
            engine.wait_for(withheld, timeout=30)
            # Everything sent before this withheld iteration is in the socket now.
            seen += _recv_all(sock)
            engine.wait_for(withheld, timeout=30)
            engine.wait_for(withheld, timeout=30)
            # Two consecutive iterations withheld their ping: nothing may have arrived.
            during_stall = _recv_all(sock)
            assert "WATCHDOG=1" not in during_stall, during_stall
            seen += during_stall
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        # Progress again: the pings come back.
        _recv_until(sock, "WATCHDOG=1", seen)
        engine.send_signal(signal.SIGINT)
        _recv_until(sock, "STOPPING=1", seen)
        assert engine.finish(timeout=60) == 0
    finally:
        engine.kill()
    seen += _recv_all(sock)
    first = {kind: next(i for i, m in enumerate(seen) if m.startswith(kind))
             for kind in ("READY=1", "STATUS=", "WATCHDOG=1", "STOPPING=1")}
    assert first["READY=1"] == 0
    assert max(first["STATUS="], first["WATCHDOG=1"]) < first["STOPPING=1"]
    status = next(m for m in seen if m.startswith("STATUS="))
    assert "ticks=" in status and "persisted=" in status
