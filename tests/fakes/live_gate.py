"""A LIVE configuration pointed at listening sockets nobody answers, and a proof bundle to taste.

The ``live`` fixture: what the gate tests (``tests/e2e/test_gate.py``,
``tests/proof/test_gate_strategy.py``) need to show a refusal connects nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.config.load import load_config
from engine.proof import evidence

HOUR_NS = 3_600 * 1_000_000_000


ARMED = {"LIVE_ARMED": "true"}


@dataclass
class Live:
    config_path: Path
    proof_path: Path
    db_path: Path
    listeners: list[socket.socket]

    def write_bundle(
        self,
        *,
        statuses: dict[str, str] | None = None,
        age_ns: int = HOUR_NS,
        code_hash: str | None = None,
        risk_config: str | None = None,
        libraries: list[str] | None = None,
    ) -> None:
        config = load_config(risk_config or self.config_path, environ={})
        names = dict.fromkeys(evidence.REQUIRED_CHECKS, "PASS") | (statuses or {})
        bundle = evidence.build_bundle(
            checks=[
                evidence.CheckResult(name=n, status=evidence.CheckStatus(s), duration_s=1.0)
                for n, s in names.items()
            ],
            created_at_ns=time.time_ns() - age_ns,
            engine_version="test",
            code_hash=evidence.code_hash() if code_hash is None else code_hash,
            config=config,
            libraries=libraries,
        )
        evidence.write_bundle(bundle, self.proof_path)

    def nothing_connected(self) -> bool:
        for listener in self.listeners:
            listener.setblocking(False)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            conn.close()
            return False
        return not self.db_path.exists()


def listen() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, sock.getsockname()[1]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    market, market_port = listen()
    rest, rest_port = listen()
    user, user_port = listen()
    config = tmp_path / "live.toml"
    config.write_text(
        f"""
[engine]
mode = "live"
db_path = "{tmp_path / "engine.db"}"
proof_path = "{tmp_path / "proof.json"}"
max_proof_age_h = 24

[ingest]
source = "websocket"
url = "ws://127.0.0.1:{market_port}/ws"

[risk]
max_exposure_usd = 200
max_symbol_exposure_usd = 100

[live]
rest_url = "http://127.0.0.1:{rest_port}"
ws_url = "ws://127.0.0.1:{user_port}/ws-api/v3"
"""
    )
    yield Live(config, tmp_path / "proof.json", tmp_path / "engine.db", [market, rest, user])
    for sock in (market, rest, user):
        sock.close()
