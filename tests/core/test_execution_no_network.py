"""I1: SHADOW and PAPER never reach a network order endpoint -- not even a socket.

Three proofs: (1) the execution core does not import anything that could talk
to a network or the LIVE adapter; (2) a hypothesis property runs random SHADOW
and PAPER configurations over real capture ticks while every socket connect,
send and name lookup raises; (3) a real ``replay`` subprocess in each mode runs
with the same trap installed through ``sitecustomize`` and exits 0.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.proof.evidence import CheckStatus
from engine.proof.properties import PROPERTIES, run_property
from tests.fakes.engine_process import REAL_CAPTURE, REPO, run_engine

NETWORK_MODULES = ("socket", "ssl", "trio", "httpx", "trio_websocket", "urllib.request")


class NetworkCalled(AssertionError):
    """Raised by the trapped socket functions: something tried to reach the network."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []

    def trap(name: str):  # type: ignore[no-untyped-def]
        def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(name)
            raise NetworkCalled(f"{name} called during SHADOW/PAPER execution")

        return refuse

    for name in ("connect", "connect_ex", "send", "sendto", "sendall"):
        monkeypatch.setattr(socket.socket, name, trap(f"socket.{name}"))
    monkeypatch.setattr(socket, "create_connection", trap("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", trap("getaddrinfo"))
    yield calls


def test_execution_core_imports_nothing_that_reaches_a_network() -> None:
    code = textwrap.dedent(
        """
        import sys
        import engine.core.execution, engine.core.paper, engine.core.risk, engine.core.ledger
        print(" ".join(sorted(sys.modules)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(done.stdout.split())
    assert not loaded & set(NETWORK_MODULES)
    assert not [m for m in loaded if m.startswith("engine.adapters")]  # no LIVE adapter


def test_property_shadow_and_paper_never_touch_a_socket() -> None:
    """The packaged I1 property (``engine/proof/invariants.py``), exactly as the proof runs it:
    random SHADOW/PAPER configurations over real capture ticks, every socket call refused."""
    result = run_property(next(p for p in PROPERTIES if p.covers == "I1"))
    assert result.status is CheckStatus.PASS, result.detail


def test_trap_itself_catches_a_connect(no_network: list[str]) -> None:
    with pytest.raises(NetworkCalled), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    assert no_network == ["socket.connect"]


SITECUSTOMIZE = """
import socket, sys
def _refuse(name):
    def refuse(*args, **kwargs):
        sys.stderr.write(f"I1-VIOLATION {name}\\n")
        sys.stderr.flush()
        raise OSError(f"I1: {name} refused")
    return refuse
for _name in ("connect", "connect_ex", "sendto"):
    setattr(socket.socket, _name, _refuse("socket." + _name))
socket.create_connection = _refuse("create_connection")
socket.getaddrinfo = _refuse("getaddrinfo")
"""


@pytest.mark.parametrize("mode", ["shadow", "paper"])
def test_replay_subprocess_with_sockets_trapped_trades_and_exits_zero(
    tmp_path: Path, mode: str
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"PYTHONPATH": str(tmp_path), "ENGINE_ENGINE_MODE": mode}
    done = run_engine(["replay", str(REAL_CAPTURE), "--db", str(tmp_path / "e.db")], env)
    assert "I1-VIOLATION" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    report = run_engine(["report", "--db", str(tmp_path / "e.db"), "--json"], env, timeout=60)
    assert report.returncode == 0
    assert '"fills": 0' not in report.stdout
