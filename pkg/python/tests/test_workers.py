"""End to end through the Go forwarder: each example worker (aiokafka, confluent-kafka,
Faust) takes messages through two reschedules and a retry that ends in the
dead-letter topic, and is restarted halfway (killed, or stopped with SIGTERM).
None may come back early, none may be lost."""

from __future__ import annotations

import secrets
import signal
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from conftest import Cluster, Visit, WorkerRun, wait_for
from kafka_ladder import ATTEMPT, ERROR, TARGET

N = 30
"""Messages per worker."""

pytestmark = pytest.mark.broker


def produce(bootstrap: str, topic: str, records: list[tuple[str, str, list[tuple[str, bytes]]]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "partitioner": "murmur2_random"})
    failed: list[object] = []
    for key, value, headers in records:
        p.produce(
            topic, value.encode(), key.encode(), headers=list(headers), on_delivery=lambda e, _m: failed.append(e)
        )
    assert p.flush(30) == 0, "seed records not delivered"
    assert [e for e in failed if e is not None] == []


def read_dead_letters(bootstrap: str, topic: str, key: str, timeout: float) -> list[KafkaMessage]:
    """Every record of the dead-letter topic with this key, from the beginning,
    once at least one is there."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "pyt-dlq-" + secrets.token_hex(3)})
    try:
        md = c.list_topics(topic, timeout=10)
        c.assign([TopicPartition(topic, p, -2) for p in md.topics[topic].partitions])  # -2: beginning
        found: list[KafkaMessage] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not found:
            for m in c.consume(100, timeout=0.2):
                if m.error() is None and m.key() == key.encode():
                    found.append(m)
        return found
    finally:
        c.close()


def headers_of(m: KafkaMessage) -> dict[str, bytes]:
    hs = m.headers() or []
    pairs = hs.items() if isinstance(hs, dict) else hs
    return {k: v.encode() if isinstance(v, str) else v or b"" for k, v in pairs}


@pytest.mark.parametrize(
    ("kind", "restart"),
    [("aiokafka", signal.SIGKILL), ("confluent", signal.SIGTERM), ("faust", signal.SIGTERM)],
    ids=["aiokafka-killed", "confluent-sigterm", "faust-sigterm"],
)
def test_reschedules_through_the_ladder_across_a_restart(cluster: Cluster, kind: str, restart: int) -> None:
    lane = cluster.lanes[kind]
    keys = [f"{kind}-{i:02d}" for i in range(N)]
    fail_key = f"{kind}-fail"
    run = WorkerRun(cluster, kind, group=f"workers-{kind}-{secrets.token_hex(3)}")
    try:
        produce(
            cluster.bootstrap,
            lane,
            [(k, f"v{i}", [("orig", str(i).encode())]) for i, k in enumerate(keys)] + [(fail_key, "fail-me", [])],
        )
        first = run.start()

        def on_second_visit() -> int:
            return len({v.key for v in run.snapshot() if v.visit >= 1})

        wait_for(lambda: on_second_visit() >= N // 2, 90, lambda: f"{on_second_visit()} of {N} back once\n{run.logs()}")
        code = first.stop(restart)
        if restart == signal.SIGTERM:
            assert code == 0, f"{kind} worker exited with {code} on SIGTERM\n{run.logs()}"
        second = run.start()

        def finished() -> set[str]:
            return {v.key for v in run.snapshot() if v.outcome == "done"}

        wait_for(lambda: finished() >= set(keys), 120, lambda: f"{len(finished())} of {N} done\n{run.logs()}")
        dead = read_dead_letters(cluster.bootstrap, cluster.ladder.dlq_topic, fail_key, 60)
        assert second.stop(signal.SIGTERM) == 0, f"{kind} worker did not stop cleanly\n{run.logs()}"
    finally:
        run.stop_all()

    visits = run.snapshot()
    by_pid = Counter(v.pid for v in visits)
    assert len(by_pid) == 2, f"expected visits from both worker processes, got {by_pid}"
    late: list[int] = []
    for v in visits:
        if v.key == fail_key:
            continue
        assert v.value == f"v{int(v.key[-2:])}", v
        if v.visit == 0:
            assert v.hops == 0, v
            continue
        # Came back through the ladder: never early, with the hops the tiers give.
        assert v.due > 0, v
        assert v.hops >= 1, v
        assert v.early == 0, v
        assert v.received >= v.due, f"{v.key} visit {v.visit} came back {v.due - v.received} ms early"
        late.append(v.received - v.due)
    for k in keys:
        seen = {v.visit for v in visits if v.key == k}
        assert seen == {0, 1, 2}, f"{k} visits {seen}"

    # The retry: handled MAX_ATTEMPTS (3) times, then dead-lettered with its attempts.
    attempts = sorted({v.attempt for v in visits if v.key == fail_key})
    assert attempts == [1, 2, 3], attempts
    assert dead, f"no dead letter for {fail_key}\n{run.logs()}"
    d = dead[0]
    h = headers_of(d)
    assert d.value() == b"fail-me"
    assert h[ATTEMPT] == b"3", h
    assert h[TARGET] == lane.encode(), h
    assert h[ERROR].startswith(b"3 attempts failed; last: "), h
    assert b"cannot process fail-me" in h[ERROR], h

    dup = sum(n - 1 for n in Counter((v.key, v.visit, v.attempt) for v in visits).values())
    print(
        f"\n{kind}: {len(visits)} visits of {N + 1} messages by pids {dict(by_pid)}, "
        f"{dup} handled again after the restart, lateness ms max {max(late)} median {sorted(late)[len(late) // 2]}"
    )


def test_visit_of(cluster: Cluster) -> None:
    """The fixture parses what the examples print (keeps Visit in step with _common.emit)."""
    v = Visit("w", "l", "k", "v", 1, 1, 2, 3, 0, 4, "done", 5)
    assert v.outcome == "done"
    assert cluster.bootstrap
