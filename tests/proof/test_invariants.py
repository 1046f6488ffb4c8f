"""I1-I4 execution invariants: the packaged properties, run exactly as the proof runs them.

The properties live in ``engine/proof/invariants.py`` (one copy): the I1 socket
trap over real capture ticks and the I2-I4 state machines (SHADOW, PAPER
market/limit, drawdown). Here each runs through ``engine.proof.properties`` with
the proof's fixed examples and seed, so the suite and ``hybrid-engine proof``
can never drift apart; a FAIL shows the one-line reason the bundle would record.
"""

from __future__ import annotations

import socket

import pytest

from engine.proof import invariants
from engine.proof.evidence import CheckStatus
from engine.proof.properties import PROPERTIES, run_property

EXECUTION = {p.name: p for p in PROPERTIES if p.covers.startswith("I")}


def assert_passes(name: str) -> None:
    """Run the registered property ``name`` with the proof's settings; PASS or its reason."""
    prop = EXECUTION[name]
    result = run_property(prop)
    assert result.status is CheckStatus.PASS, result.detail
    assert result.ran >= prop.examples


class TestShadowInvariants:
    def test_i2_i4_machine_passes_in_shadow(self) -> None:
        assert_passes("i2_i4_shadow")


class TestPaperMarketInvariants:
    def test_i2_i4_machine_passes_in_paper_with_market_orders(self) -> None:
        assert_passes("i2_i4_paper_market")


class TestPaperLimitInvariants:
    def test_i2_i4_machine_passes_in_paper_with_limit_orders(self) -> None:
        assert_passes("i2_i4_paper_limit")


class TestPaperDrawdownInvariants:
    def test_i2_i4_machine_passes_in_paper_with_a_drawdown_halt(self) -> None:
        assert_passes("i2_i4_paper_drawdown")


def test_execution_properties_cover_i1_to_i4_in_every_mode() -> None:
    """Every registered execution property is run by a test here or, for I1, in
    ``tests/core/test_execution_no_network.py``."""
    assert set(EXECUTION) == {
        "i1_shadow_paper_no_socket",
        "i2_i4_shadow",
        "i2_i4_paper_market",
        "i2_i4_paper_limit",
        "i2_i4_paper_drawdown",
    }


def test_sockets_refused_catches_a_connect_and_restores_socket() -> None:
    original = socket.socket.connect
    with invariants.sockets_refused() as calls:
        with pytest.raises(invariants.NetworkCalled), socket.socket() as s:
            s.connect(("127.0.0.1", 9))
        with pytest.raises(invariants.NetworkCalled):
            socket.getaddrinfo("localhost", 80)
    assert calls == ["socket.connect", "socket.getaddrinfo"]
    assert socket.socket.connect is original


def test_real_ticks_are_the_bundled_capture_trades() -> None:
    ticks = invariants.real_ticks()
    assert len(ticks) == 9_757
    assert ticks[0].symbol == "BTCUSDT"
