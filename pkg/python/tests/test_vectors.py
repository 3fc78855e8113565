"""The shared test vectors: the same JSON files the Go tests run (pkg/tier and
pkg/envelope, TestVectors), so that a change on either side that breaks the other
fails. Regenerate them from Go (go test ./pkg/... -run Vectors -update), never
from here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kafka_ladder import (
    DEFAULT_PREFIX,
    Envelope,
    HeaderError,
    InvalidSpecError,
    InvalidTopicError,
    Ladder,
    Message,
    default_backoff,
    label,
    release_at,
    validate_topic,
)
from kafka_ladder.envelope import dead_letter_headers, decode, new_headers, next_headers
from kafka_ladder.message import dead_letter_record_headers
from kafka_ladder.schedule import InvalidMessageError, schedule_record
from kafka_ladder.tier import Tier

REPO = Path(__file__).resolve().parents[3]


def load(path: str) -> dict[str, Any]:
    with open(REPO / path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


TIERS = load("pkg/tier/testdata/ladders.json")
HEADERS = load("pkg/envelope/testdata/headers.json")
SCHEDULE = load("pkg/envelope/testdata/schedule.json")
WORKER = load("pkg/envelope/testdata/worker.json")


def headers_in(hs: list[dict[str, str]]) -> list[tuple[str, bytes]]:
    return [(h["key"], bytes.fromhex(h["hex"]) if "hex" in h else h.get("value", "").encode()) for h in hs]


def headers_out(hs: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    out = []
    for k, v in hs:
        try:
            text = v.decode("utf-8")
        except UnicodeDecodeError:
            out.append({"key": k, "hex": v.hex()})
            continue
        out.append({"key": k, "value": text} if text else {"key": k})
    return out


def envelope_json(env: Envelope) -> dict[str, Any]:
    out: dict[str, Any] = {"target": env.target}
    if env.due_ms is not None:
        out["due_ms"] = env.due_ms
    if env.scheduled_ms is not None:
        out["scheduled_ms"] = env.scheduled_ms
    if env.hops:
        out["hops"] = env.hops
    if env.early_ms:
        out["early_ms"] = env.early_ms
    if env.error:
        out["error"] = env.error
    return out


@pytest.mark.parametrize("case", TIERS["parse"], ids=lambda c: f"{c['tiers']!r}@{c['prefix'][:10]!r}")
def test_parse(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises((InvalidSpecError, InvalidTopicError)) as err:
            Ladder.parse(case["tiers"], case["prefix"])
        assert str(err.value) == case["error"]
        assert isinstance(err.value, InvalidSpecError) == case.get("invalid_spec", False)
        return
    ladder = Ladder.parse(case["tiers"], case["prefix"])
    assert ladder.topics == case["topics"]
    assert [t.delay_ms for t in ladder.tiers] == case["delays_ms"]
    assert str(ladder) == case["string"]
    assert ladder.dlq_topic == case["dlq"]
    assert ladder.control_topic == case["control"]
    assert Ladder.parse(str(ladder), case["prefix"]) == ladder


@pytest.mark.parametrize("case", TIERS["labels"], ids=lambda c: str(c["ms"]))
def test_label(case: dict[str, Any]) -> None:
    assert label(case["ms"]) == case["label"]


@pytest.mark.parametrize("case", TIERS["topics"], ids=lambda c: repr(c["name"][:12]))
def test_validate_topic(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(InvalidTopicError) as err:
            validate_topic(case["name"])
        assert str(err.value) == case["error"]
    else:
        validate_topic(case["name"])


@pytest.mark.parametrize("case", TIERS["routes"], ids=lambda c: c["tiers"])
def test_route_and_hops(case: dict[str, Any]) -> None:
    ladder = Ladder.parse(case["tiers"], case["prefix"])
    now = case["now_ms"]
    for r in case["route"]:
        hop = ladder.route(now, now + r["remaining_ms"])
        assert (hop.topic if hop else "") == r["next"], r
    for h in case["hops"]:
        assert ladder.hops(h["delay_ms"]) == h["hops"], h


def test_release_at() -> None:
    for c in TIERS["release_at"]:
        assert release_at(Tier(c["delay_ms"], "t"), c["entered_ms"], c["due_ms"]) == c["release_ms"], c


@pytest.mark.parametrize("case", HEADERS["decode"], ids=lambda c: c["name"])
def test_decode(case: dict[str, Any]) -> None:
    hs = headers_in(case["headers"])
    if "error" in case:
        with pytest.raises(HeaderError) as err:
            decode(hs)
        want = case["error"]
        assert (str(err.value), err.value.header, str(err.value.reason)) == (
            want["message"],
            want["header"],
            want["reason"],
        )
        return
    assert envelope_json(decode(hs)) == case["envelope"]


@pytest.mark.parametrize("case", HEADERS["new"], ids=lambda c: c["name"])
def test_new_headers(case: dict[str, Any]) -> None:
    got = new_headers(case["target"], case.get("due_ms"), case["scheduled_ms"], headers_in(case["own"]))
    assert headers_out(got) == case["headers"]


@pytest.mark.parametrize("case", HEADERS["next"], ids=lambda c: c["name"])
def test_next_headers(case: dict[str, Any]) -> None:
    got = next_headers(headers_in(case["in"]), case["hops"], case["early_ms"])
    assert headers_out(got) == case["headers"]


@pytest.mark.parametrize("case", HEADERS["dead_letter"], ids=lambda c: c["name"])
def test_dead_letter_headers(case: dict[str, Any]) -> None:
    got = dead_letter_headers(headers_in(case["in"]), case["reason"])
    assert headers_out(got) == case["headers"]


@pytest.mark.parametrize("case", SCHEDULE["records"], ids=lambda c: c["name"])
def test_schedule_record(case: dict[str, Any]) -> None:
    ladder = Ladder.parse(case["tiers"], case.get("prefix", DEFAULT_PREFIX))
    args = (ladder, case["target"], b"k", b"v", headers_in(case["headers"]), case["due_ms"], case["now_ms"])
    if case.get("error"):
        with pytest.raises(InvalidMessageError) as err:
            schedule_record(*args)
        assert str(err.value) == case["error"]
        return
    rec = schedule_record(*args)
    assert (rec.topic, rec.timestamp_ms, rec.key, rec.value) == (case["topic"], case["timestamp_ms"], b"k", b"v")
    assert headers_out(rec.headers) == case["out_headers"]


@pytest.mark.parametrize("case", WORKER["messages"], ids=lambda c: c["name"])
def test_message(case: dict[str, Any]) -> None:
    m = Message.from_record(case["topic"], 0, 0, None, None, 0, headers_in(case["headers"]))
    assert headers_out(list(m.headers)) == case["own"]
    assert m.attempt == case["attempt"]
    assert envelope_json(m.envelope) == case["envelope"]


@pytest.mark.parametrize("case", WORKER["dead_letter"], ids=lambda c: c["name"])
def test_worker_dead_letter(case: dict[str, Any]) -> None:
    got = dead_letter_record_headers(headers_in(case["headers"]), case["topic"], case["attempt"], case["reason"])
    assert headers_out(got) == case["out_headers"]


def test_default_backoff() -> None:
    for c in WORKER["backoff"]:
        assert int(default_backoff(c["attempt"]) * 1000) == c["ms"], c
