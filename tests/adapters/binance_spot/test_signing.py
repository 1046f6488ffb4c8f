"""Signing and client order ids for the Binance LIVE adapter."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.binance_spot.signing import (
    CLIENT_ID_PATTERN,
    client_order_id,
    decimal_param,
    sign,
    signed_query,
    split_signature,
    ws_signature_payload,
    ws_signed_params,
)

# The worked example of Binance's API documentation ("SIGNED Endpoint Examples").
DOC_SECRET = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_sign_matches_binance_documented_example() -> None:
    assert sign(DOC_SECRET, DOC_QUERY) == DOC_SIGNATURE


def test_signed_query_appends_window_timestamp_and_signature() -> None:
    params = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
              ("quantity", "1"), ("price", "0.1")]  # fmt: skip
    query = signed_query(params, secret=DOC_SECRET, timestamp_ms=1499827319559, recv_window_ms=5000)
    assert query == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"
    assert split_signature(query) == (DOC_QUERY, DOC_SIGNATURE)


def test_signed_query_signs_the_encoded_bytes() -> None:
    query = signed_query([("newClientOrderId", "ord:a/b")], secret=b"k", timestamp_ms=1,
                         recv_window_ms=5000)  # fmt: skip
    signed, signature = split_signature(query)
    assert "ord%3Aa%2Fb" in signed
    assert sign(b"k", signed) == signature


def test_ws_signature_payload_sorted_without_signature() -> None:
    params = {"timestamp": "2", "apiKey": "K", "signature": "x", "recvWindow": "5000"}
    assert ws_signature_payload(params) == "apiKey=K&recvWindow=5000&timestamp=2"
    signed = ws_signed_params({"timestamp": "2", "apiKey": "K"}, secret=b"s")
    assert signed["signature"] == sign(b"s", "apiKey=K&timestamp=2")


def test_decimal_param_never_uses_exponent() -> None:
    assert decimal_param(Decimal("0.00001")) == "0.00001"
    assert decimal_param(Decimal("1E-8")) == "0.00000001"
    assert decimal_param(Decimal("56000.10")) == "56000.10"


def test_client_order_id_keeps_a_valid_order_id() -> None:
    order_id = "ord:sig:binance:BTCUSDT:3735683259"
    assert client_order_id(order_id) == order_id


def test_client_order_id_hashes_long_or_invalid_ids() -> None:
    long_id = "ord:sig:binance:BTCUSDT:37356832591234567890"
    bad = "ord:sig:coinbase:BTC-USD:42 x"
    for order_id in (long_id, bad):
        cid = client_order_id(order_id)
        assert cid.startswith("he-") and len(cid) == 35
        assert CLIENT_ID_PATTERN.fullmatch(cid)
        assert client_order_id(order_id) == cid


def test_client_order_id_never_merges_ids_differing_in_a_bad_char() -> None:
    assert client_order_id("ord:a b") != client_order_id("ord:a_b")
    assert client_order_id("ord:a b") != client_order_id("ord:a+b")


@given(st.text(min_size=1, max_size=80))
def test_property_client_order_id_valid_and_deterministic(order_id: str) -> None:
    cid = client_order_id(order_id)
    assert CLIENT_ID_PATTERN.fullmatch(cid)
    assert cid == client_order_id(order_id)


@given(st.lists(st.text(min_size=1, max_size=60), min_size=2, max_size=30, unique=True))
def test_property_client_order_id_injective(order_ids: list[str]) -> None:
    assert len({client_order_id(o) for o in order_ids}) == len(order_ids)
