"""The adapters in process against the broker: the Schedulers' records come back
through the Go forwarder intact and never early; the aiokafka Worker stops
gracefully (what it handled is committed, nothing is handled twice or lost) and
keeps key order."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer

from conftest import Cluster
from kafka_ladder import HOPS, TARGET, Lane, Message, Result, done
from kafka_ladder.aiokafka import Scheduler, Worker
from kafka_ladder.confluent import Scheduler as SyncScheduler
from kafka_ladder.confluent import producer_config

pytestmark = pytest.mark.broker


async def read(bootstrap: str, topic: str, n: int, got: list[Any], match: bytes = b"") -> None:
    """Append to got the first n records of topic whose key starts with match, from
    the beginning (the caller bounds the wait)."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await c.start()
    try:
        while len(got) < n:
            for records in (await c.getmany(timeout_ms=200)).values():
                got += [r for r in records if (r.key or b"").startswith(match)]
    finally:
        await c.stop()


def within(seconds: float, what: str, coro: Coroutine[Any, Any, None]) -> None:
    """Run coro, failing the test if it takes longer than seconds."""

    async def bounded() -> None:
        try:
            await asyncio.wait_for(coro, seconds)
        except TimeoutError:
            pytest.fail(f"timed out after {seconds:.0f}s: {what}")

    asyncio.run(bounded())


def test_schedulers_round_trip(cluster: Cluster) -> None:
    lane = cluster.lanes["scheduler"]
    tag = secrets.token_hex(3).encode()

    async def aio() -> list[int]:
        p = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
        await p.start()
        try:
            s = Scheduler(p, cluster.ladder)
            recs = await asyncio.gather(
                *(
                    s.schedule(lane, b"aio%d" % i, key=tag + b"-aio-%d" % i, headers=[("own", b"\xff")], delay=1.5)
                    for i in range(5)
                )
            )
        finally:
            await p.stop()
        return [r.due_ms or 0 for r in recs]

    dues = asyncio.run(aio())
    sync = SyncScheduler(Producer(producer_config(cluster.bootstrap)), cluster.ladder)
    dues += [sync.schedule(lane, b"cf%d" % i, key=tag + b"-cf-%d" % i, delay=2.5).due_ms or 0 for i in range(5)]
    back: list[Any] = []
    within(30, "10 scheduled records back", read(cluster.bootstrap, lane, 10, back, match=tag))
    assert len(back) == 10, [r.key for r in back]
    for r in back:
        h = dict(r.headers)
        assert h[TARGET] == lane.encode()
        assert int(h[HOPS]) >= 1, h  # through the ladder
        assert r.timestamp >= int(h["ladder-due"]), "came back early"  # stamped at release
        assert int(h["ladder-due"]) in dues
        if b"-aio-" in r.key:
            assert h["own"] == b"\xff"
            assert r.value.startswith(b"aio")


def seed(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = Producer(producer_config(bootstrap))
    for key, value in records:
        p.produce(topic, value, key)
    assert p.flush(30) == 0


def test_aiokafka_worker_stops_gracefully(cluster: Cluster) -> None:
    """stop() while handlers run: they finish and are committed; a second worker in
    the same group handles exactly the rest."""
    lane = cluster.lanes["inproc"]
    group = "inproc-" + secrets.token_hex(3)
    n = 40
    seed(cluster.bootstrap, lane, [(b"k%d" % i, b"v%d" % i) for i in range(n)])
    handled: list[list[tuple[int, int]]] = [[], []]

    async def one(run: int, stop_after: float | None) -> None:
        started, all_done = asyncio.Event(), asyncio.Event()

        async def handle(m: Message) -> Result:
            started.set()
            await asyncio.sleep(0.3)
            handled[run].append((m.partition, m.offset))
            if len(handled[0]) + len(handled[1]) >= n:
                all_done.set()
            return done()

        w = Worker(
            cluster.ladder,
            Lane([lane], handle, group=group, concurrency=4),
            bootstrap_servers=cluster.bootstrap,
            consumer_config={"session_timeout_ms": 6000},
        )
        task = asyncio.create_task(w.run())
        try:
            if stop_after is None:
                await asyncio.wait_for(all_done.wait(), 60)
            else:
                await asyncio.wait_for(started.wait(), 30)
                await asyncio.sleep(stop_after)  # stop while handlers run: that is the test
        finally:
            w.stop()
            await asyncio.wait_for(task, 30)
        assert w.stats()[0].in_flight == 0

    within(90, "the first worker, stopped halfway", one(0, 0.5))
    assert 0 < len(handled[0]) < n, "the first worker should stop halfway"
    within(90, f"the rest of {n} records in the second worker", one(1, None))
    assert set(handled[0]).isdisjoint(handled[1]), "handled again after a graceful stop"
    assert len(handled[0]) + len(handled[1]) == n


def test_aiokafka_worker_keeps_key_order(cluster: Cluster) -> None:
    lane = cluster.lanes["ordered"]
    keys = [b"a", b"b", b"c"]
    n = 60
    seed(cluster.bootstrap, lane, [(keys[i % 3], b"%d" % i) for i in range(n)])
    running: dict[bytes, int] = defaultdict(int)
    order: dict[bytes, list[int]] = defaultdict(list)
    overlap: list[bytes] = []

    async def main() -> None:
        all_done = asyncio.Event()

        async def handle(m: Message) -> None:
            assert m.key is not None
            running[m.key] += 1
            if running[m.key] > 1:
                overlap.append(m.key)
            order[m.key].append(m.offset)
            await asyncio.sleep(0.005)
            running[m.key] -= 1
            if sum(map(len, order.values())) >= n:
                all_done.set()

        w = Worker(
            cluster.ladder,
            Lane([lane], handle, group="ordered-" + secrets.token_hex(3), concurrency=32, key_ordered=True),
            bootstrap_servers=cluster.bootstrap,
        )
        task = asyncio.create_task(w.run())
        try:
            await all_done.wait()
        finally:
            w.stop()
            await asyncio.wait_for(task, 30)

    within(90, f"{n} key-ordered records", main())
    assert sum(map(len, order.values())) == n
    assert overlap == []
    for k, offsets in order.items():
        assert offsets == sorted(offsets), k
