"""engine.logs: one JSON object per line; context bound with ``bind``, read with ``capture``."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine import logs

FIELD = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=8)


def test_line_on_stdout_is_one_json_object_in_the_documented_key_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.warning("thing_happened", price=Decimal("1.50"), n=3)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("\n")
    line = json.loads(out)
    assert list(line) == ["ts", "level", "event", "price", "n"]
    assert (line["level"], line["event"], line["price"], line["n"]) == (
        "warning", "thing_happened", "1.50", 3,
    )  # fmt: skip


def test_capture_holds_exactly_what_stdout_would_have_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs.time, "time", lambda: 1.25)
    logs.info("a", x=1)
    written = capsys.readouterr().out
    with logs.capture() as captured:
        logs.info("a", x=1)
    assert capsys.readouterr().out == ""
    assert captured.text() == written
    assert captured.events("a") == [json.loads(written)]


def test_bind_adds_fields_after_event_and_a_call_field_wins_in_its_place() -> None:
    with logs.capture() as captured, logs.bind(venue="binance", run="r1"):
        logs.info("plain", n=1)
        logs.info("override", n=2, venue="coinbase")
    logs.info("outside")  # not captured: the capture ended
    plain, override = captured.lines
    assert list(plain) == ["ts", "level", "event", "venue", "run", "n"]
    assert plain["venue"] == "binance"
    assert list(override) == ["ts", "level", "event", "run", "n", "venue"]
    assert override["venue"] == "coinbase"


async def test_bind_and_capture_follow_the_task_tree_and_end_with_the_block() -> None:
    with logs.capture() as captured:
        with logs.bind(venue="binance"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: _log_in_task("child"))
            await trio.to_thread.run_sync(lambda: logs.info("thread"))
        logs.info("after")
    assert [(line["event"], line.get("venue")) for line in captured.lines] == [
        ("child", "binance"), ("thread", "binance"), ("after", None),
    ]  # fmt: skip


async def _log_in_task(event: str) -> None:
    await trio.lowlevel.checkpoint()
    logs.info(event)


def test_capture_on_line_sees_each_line_and_keep_false_stores_none() -> None:
    seen: list[str] = []
    with logs.capture(lambda line: seen.append(line["event"]), keep=False) as captured:
        logs.error("one")
        logs.error("two")
    assert seen == ["one", "two"]
    assert captured.lines == [] and captured.text() == ""


@given(st.dictionaries(FIELD, st.integers(), max_size=5), st.dictionaries(FIELD, st.integers()))
def test_bound_and_call_fields_merge_call_wins(bound: dict[str, int], call: dict[str, int]) -> None:
    bound = {f"b{k}": v for k, v in bound.items()}
    call = {f"b{k}" if i % 2 else f"c{k}": v for i, (k, v) in enumerate(call.items())}
    with logs.capture() as captured, logs.bind(**bound):
        logs.info("e", **call)
    [line] = captured.lines
    assert {k: line[k] for k in line if k not in ("ts", "level", "event")} == {**bound, **call}
