"""Unit tests of the client-neutral core: the partition flow (contiguous finished
prefix, key order, bounds), plan() (what each Result produces), lanes and times;
and the aiokafka batcher's key hash against aiokafka's own."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiokafka.partitioner import murmur2

from kafka_ladder import (
    ATTEMPT,
    ERROR,
    HOPS,
    TARGET,
    Ladder,
    Lane,
    LaneChooser,
    Message,
    Outcome,
    dead_letter,
    done,
    due_ms,
    plan,
    reschedule,
    reschedule_at,
    retry,
    retry_after,
)
from kafka_ladder._flow import WINDOW_PER_CONCURRENCY, PartitionFlow
from kafka_ladder.aiokafka import _murmur2

LADDER = Ladder.parse("1s,5s,1m")
NOW_NS = 1_767_225_600_000_000_000
NOW = NOW_NS // 1_000_000


def msg(topic: str = "work", attempt: int | None = None, **extra: bytes) -> Message:
    headers: list[tuple[str, bytes]] = [("trace", b"t1"), (TARGET, b"work"), (HOPS, b"2")]
    if attempt is not None:
        headers.append((ATTEMPT, str(attempt).encode()))
    headers += list(extra.items())
    return Message.from_record(topic, 1, 42, b"key", b"value", NOW - 5, headers)


def test_window_commits_the_contiguous_finished_prefix() -> None:
    f: PartitionFlow[str] = PartitionFlow(concurrency=4, key_ordered=False)
    es = [f.take(f"r{i}", 10 + i, None) for i in range(4)]
    assert [e.offset for e in f.ready] == [10, 11, 12, 13]
    assert f.finish(es[2]) is None  # behind unfinished 10 and 11
    assert f.finish(es[1]) is None
    assert f.finish(es[0]) == 13  # 10, 11, 12 finished: commit up to 13
    assert f.finish(es[0]) is None  # once only
    assert len(f) == 1
    assert f.finish(es[3]) == 14
    assert len(f) == 0
    assert es[3].item is None  # a finished record keeps only its offset


def test_key_order() -> None:
    f: PartitionFlow[str] = PartitionFlow(concurrency=4, key_ordered=True)
    a1 = f.take("a1", 0, b"a")
    b1 = f.take("b1", 1, b"b")
    a2 = f.take("a2", 2, b"a")
    n1 = f.take("n1", 3, None)  # no key: not ordered
    assert list(f.ready) == [a1, b1, n1]
    assert f.waiting == 1
    f.ready.clear()
    f.handled(a1)
    assert list(f.ready) == [a2]
    assert f.waiting == 0
    f.handled(b1)
    f.handled(a2)
    assert list(f.ready) == [a2]


def test_stopping_starts_nothing_more() -> None:
    f: PartitionFlow[str] = PartitionFlow(concurrency=4, key_ordered=True)
    a1 = f.take("a1", 0, b"a")
    f.take("a2", 1, b"a")
    f.stop()
    assert not f.ready
    f.handled(a1)
    assert not f.ready  # a2 is left for the next owner


def test_room_is_bounded() -> None:
    f: PartitionFlow[int] = PartitionFlow(concurrency=2, key_ordered=True)
    f.take(0, 0, b"k")
    f.take(1, 1, b"k")
    assert f.has_room()
    f.take(2, 2, b"k")
    assert not f.has_room()  # two wait behind their key
    g: PartitionFlow[int] = PartitionFlow(concurrency=2, key_ordered=False)
    for i in range(WINDOW_PER_CONCURRENCY * 2):
        assert g.has_room()
        g.take(i, i, None)
    assert not g.has_room()  # 16 x concurrency taken and not committed


def test_message_reads_envelope_attempt_and_own_headers() -> None:
    m = msg(attempt=3, x=b"y")
    assert m.attempt == 3
    assert m.headers == (("trace", b"t1"), ("x", b"y"))
    assert m.envelope.target == "work"
    assert m.envelope.hops == 2
    assert m.header("x") == b"y"
    assert m.header("missing") is None
    assert not m.early
    assert m.late_ms(NOW) == 0  # no due time
    early = Message.from_record(
        "work", 0, 0, None, None, 0, [(TARGET, b"work"), ("ladder-due", str(NOW).encode()), ("ladder-early", b"1500")]
    )
    assert early.early
    assert early.late_ms(NOW - 1500) == -1500


def test_plan_done() -> None:
    assert plan(LADDER, msg(), None, now_ns=NOW_NS).record is None
    assert plan(LADDER, msg(), done(), now_ns=NOW_NS).outcome is Outcome.DONE


def test_plan_reschedule() -> None:
    p = plan(LADDER, msg(attempt=2), reschedule(7), now_ns=NOW_NS)
    assert p.outcome is Outcome.RESCHEDULE
    r = p.record
    assert r is not None
    assert (r.topic, r.key, r.value, r.timestamp_ms, r.due_ms) == ("delay-5s", b"key", b"value", NOW, NOW + 7000)
    # Own headers kept; ladder-attempt dropped (a reschedule starts afresh), the contract's headers anew.
    assert r.headers == [
        ("trace", b"t1"),
        (TARGET, b"work"),
        ("ladder-due", str(NOW + 7000).encode()),
        ("ladder-scheduled", str(NOW).encode()),
        (HOPS, b"0"),
    ]
    moved = plan(
        LADDER,
        msg(),
        reschedule(timedelta(0)).to("work-slow").with_value(None).with_headers([("a", b"1"), (ATTEMPT, b"9")]),
        now_ns=NOW_NS,
    )
    assert moved.record is not None
    assert (moved.record.topic, moved.record.value) == ("work-slow", None)  # due now: straight to the lane
    assert moved.record.headers[0] == ("a", b"1")
    assert all(k != ATTEMPT for k, _ in moved.record.headers)
    at = plan(LADDER, msg(), reschedule_at(datetime.fromtimestamp((NOW + 90_000) / 1000, UTC)), now_ns=NOW_NS)
    assert at.record is not None
    assert (at.record.topic, at.record.due_ms) == ("delay-1m", NOW + 90_000)


def test_plan_reschedule_to_a_ladder_topic_dead_letters() -> None:
    p = plan(LADDER, msg(), reschedule(1).to("delay-1s"), now_ns=NOW_NS)
    assert p.outcome is Outcome.DEAD_LETTER
    assert p.reason == "cannot reschedule: invalid message: target delay-1s is a topic of the ladder itself"


def test_plan_retry_then_dead_letter() -> None:
    p = plan(
        LADDER, msg(attempt=2), retry(ValueError("boom")), max_attempts=3, backoff=lambda a: 4.0 * a, now_ns=NOW_NS
    )
    r = p.record
    assert p.outcome is Outcome.RETRY
    assert r is not None
    assert (r.topic, r.due_ms) == ("delay-5s", NOW + 8000)
    assert ("trace", b"t1") in r.headers
    assert (ATTEMPT, b"3") in r.headers
    own = retry_after(0.5, "soon")
    assert plan(LADDER, msg(), own, now_ns=NOW_NS).record.due_ms == NOW + 500  # type: ignore[union-attr]
    last = plan(LADDER, msg(attempt=3), retry("boom"), max_attempts=3, now_ns=NOW_NS)
    assert last.outcome is Outcome.DEAD_LETTER
    d = last.record
    assert d is not None
    assert (d.topic, d.key, d.value) == ("delay-dlq", b"key", b"value")
    assert (ATTEMPT, b"3") in d.headers
    assert d.headers[-1] == (ERROR, b"3 attempts failed; last: boom")


def test_plan_dead_letter() -> None:
    p = plan(LADDER, msg(), dead_letter("bad input"), now_ns=NOW_NS)
    assert p.record is not None
    assert p.record.topic == "delay-dlq"
    assert p.record.headers[-2:] == [(ATTEMPT, b"1"), (ERROR, b"bad input")]


def test_lane_defaults_and_validation() -> None:
    lane = Lane(["work-fast"], print)
    assert (lane.name, lane.group, lane.concurrency, lane.max_attempts) == ("work-fast", "workers-work-fast", 256, 5)
    lane.validate(LADDER)
    with pytest.raises(ValueError, match="topic of the ladder itself"):
        Lane(["delay-1s"], print).validate(LADDER)
    with pytest.raises(ValueError, match="no topics"):
        Lane([], print).validate(LADDER)


def test_lane_chooser() -> None:
    lanes = LaneChooser([("work-fast", 1.0), ("work-slow", 60.0), ("work-batch", None)])
    assert [lanes.choose(s) for s in (0, 1, 1.5, 60, 61, 1e9)] == [
        "work-fast",
        "work-fast",
        "work-slow",
        "work-slow",
        "work-batch",
        "work-batch",
    ]
    assert lanes.lanes == ["work-fast", "work-slow", "work-batch"]
    with pytest.raises(ValueError, match="must increase"):
        LaneChooser([("a", 5.0), ("b", 1.0), ("c", None)])
    with pytest.raises(ValueError, match="unbounded"):
        LaneChooser([("a", 5.0)])


def test_due_ms() -> None:
    assert due_ms(delay=1.5, now_ns=NOW_NS + 999_999) == NOW + 1500  # truncated to the millisecond
    assert due_ms(delay=timedelta(minutes=1), now_ns=NOW_NS) == NOW + 60_000
    assert due_ms(at=NOW / 1000 + 2) == NOW + 2000
    assert due_ms(at=datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))) == NOW
    with pytest.raises(TypeError):
        due_ms()
    with pytest.raises(TypeError):
        due_ms(delay=1, at=2)


def test_aiokafka_batcher_hashes_keys_as_aiokafka() -> None:
    # The batcher picks partitions itself (it sends whole batches); a key must land
    # where producer.send() would put it, so its murmur2 must be aiokafka's.
    rng = random.Random(12)
    for n in range(64):
        for _ in range(50):
            data = rng.randbytes(n)
            assert _murmur2(data) == murmur2(data), data
    assert _murmur2(b"order-17") == murmur2(b"order-17")
