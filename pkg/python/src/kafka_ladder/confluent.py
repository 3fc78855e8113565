"""The confluent-kafka adapter: the synchronous twin of kafka_ladder.aiokafka, with
the Go SDK's semantics. Install with the [confluent] extra.

Worker runs each lane in its own thread with its own consumer, producer and
handler thread pool (``Lane.concurrency`` threads): handlers are plain functions,
run many at once; everything else (the partitions' state, produce, delivery
reports, commits) happens on the lane's thread, so an offset is committed only
after the record its result produced was delivered (acks=all, idempotent
producer), and only up to the lowest record not finished yet.
"""

from __future__ import annotations

import heapq
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka import Message as KafkaMessage
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        f"kafka_ladder.confluent needs the [confluent] extra: pip install 'kafka-ladder[confluent]' ({exc})"
    ) from exc

from ._flow import Entry, PartitionFlow
from ._worker import COMMIT_INTERVAL, SHUTDOWN_TIMEOUT, Stats, log, raised, send_retry_delay
from .envelope import HeaderInput
from .message import (
    DEFAULT_MAX_ATTEMPTS,
    Lane,
    Message,
    Outcome,
    Plan,
    Result,
    _reschedule_result,
    _retry_result,
    _Unset,
    default_backoff,
    plan,
)
from .message import dead_letter as _dead_letter
from .schedule import Delay, Record, When, due_ms, now_ms, restamp, schedule_record
from .tier import Ladder

__all__ = ["Handler", "Scheduler", "Stats", "Worker", "message", "producer_config"]

Handler = Callable[[Message], Result | None]
"""A lane's handler: returns a Result (None is done); an exception counts as retry."""

_INBOX_HIGH = 256
_INBOX_LOW = 64


def producer_config(bootstrap_servers: str, **extra: Any) -> dict[str, Any]:
    """A producer configuration fit for the ladder: idempotent (acks=all) and
    partitioning keys with murmur2 like the Java client, Go's ladder and aiokafka."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        **extra,
    }


_producer_defaults = producer_config  # Worker's parameter of the same name hides it


def message(m: KafkaMessage) -> Message:
    """Decode a consumed confluent_kafka Message for a handler."""
    topic = m.topic()
    partition = m.partition()
    offset = m.offset()
    assert topic is not None
    assert partition is not None
    assert offset is not None
    hs = m.headers()
    return Message.from_record(
        topic,
        partition,
        offset,
        _raw(m.key()),
        _raw(m.value()),
        m.timestamp()[1],
        list(hs.items()) if isinstance(hs, dict) else hs,
    )


def _raw(b: str | bytes | None) -> bytes | None:
    return b.encode() if isinstance(b, str) else b


def _headers(record: Record) -> list[tuple[str, str | bytes | None]]:
    return list(record.headers)


def _as_message(m: Message | KafkaMessage) -> Message:
    return m if isinstance(m, Message) else message(m)


class Scheduler:
    """Schedules messages and carries out Results with a confluent_kafka Producer,
    each call returning once the record was delivered (acks=all: see
    producer_config), so a consumer that commits afterwards never loses a message.
    Raises KafkaException when delivery fails or times out."""

    def __init__(
        self,
        producer: Producer,
        ladder: Ladder,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Callable[[int], float] = default_backoff,
        timeout: float = 30.0,
    ) -> None:
        self.producer = producer
        self.ladder = ladder
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout

    def send(self, record: Record) -> None:
        """Produce record and wait until it is delivered."""
        outcome: list[KafkaError | None] = []
        self.producer.produce(
            record.topic,
            record.value,
            record.key,
            on_delivery=lambda err, _msg: outcome.append(err),
            timestamp=record.timestamp_ms,
            headers=_headers(record),
        )
        deadline = time.monotonic() + self.timeout
        while not outcome:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "no delivery report in time"))
            self.producer.poll(min(left, 0.1))
        if outcome[0] is not None:
            raise KafkaException(outcome[0])

    def schedule(
        self,
        target: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Iterable[HeaderInput] | None = None,
        delay: Delay | None = None,
        at: When | None = None,
    ) -> Record:
        """Bring a message to target after delay (seconds or timedelta) or at ``at``,
        through the ladder. Returns the record sent, once delivered."""
        rec = schedule_record(self.ladder, target, key, value, headers, due_ms(delay=delay, at=at), now_ms())
        self.send(rec)
        return rec

    def apply(self, msg: Message | KafkaMessage, result: Result | None) -> Plan:
        """Carry out result for a consumed message; returns once delivered."""
        p = plan(self.ladder, _as_message(msg), result, max_attempts=self.max_attempts, backoff=self.backoff)
        if p.record is not None:
            self.send(p.record)
        return p

    def reschedule(
        self,
        msg: Message | KafkaMessage,
        delay: Delay | None = None,
        *,
        at: When | None = None,
        lane: str = "",
        value: bytes | _Unset | None = _Unset.UNSET,
        headers: Iterable[HeaderInput] | None = None,
    ) -> Plan:
        """Bring msg back to its lane (or ``lane``) after delay or at ``at``."""
        return self.apply(msg, _reschedule_result(delay, at, lane, value, headers))

    def retry(
        self, msg: Message | KafkaMessage, error: BaseException | str | None = None, *, backoff: Delay | None = None
    ) -> Plan:
        """Bring msg back after the back-off of its attempt with ladder-attempt
        incremented, or dead-letter it after max_attempts attempts."""
        return self.apply(msg, _retry_result(error, backoff))

    def dead_letter(self, msg: Message | KafkaMessage, reason: str) -> Plan:
        """Send msg to the dead-letter topic with reason as ladder-error."""
        return self.apply(msg, _dead_letter(reason))


class Worker:
    """Consumes lanes in consumer groups and runs their handlers in threads, many
    records of a partition at once, carrying out each Result before its offset is
    committed. ``run()`` blocks until ``stop()`` (or SIGINT/SIGTERM with
    ``handle_signals=True``, from the main thread)."""

    def __init__(
        self,
        ladder: Ladder,
        *lanes: Lane[Handler],
        bootstrap_servers: str = "127.0.0.1:9092",
        client_id: str = "ladder-worker",
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        commit_interval: float = COMMIT_INTERVAL,
        consumer_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        """consumer_config and producer_config are librdkafka properties added to
        the defaults (security settings, session.timeout.ms, linger.ms...)."""
        if not lanes:
            raise ValueError("invalid worker config: no lanes")
        groups = set()
        for lane in lanes:
            lane.validate(ladder)
            if lane.group in groups:
                raise ValueError(f"invalid lane {lane.name}: consumer group {lane.group} is used by another lane")
            groups.add(lane.group)
        self.ladder = ladder
        self.shutdown_timeout = shutdown_timeout
        self.commit_interval = commit_interval
        self._consumer_config = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            **(consumer_config or {}),
            "enable.auto.commit": False,
        }
        self._producer_config = _producer_defaults(
            bootstrap_servers, **{"client.id": client_id, **(producer_config or {})}
        )
        self._lanes = [_LaneRunner(self, lane) for lane in lanes]
        self._stop = threading.Event()
        self._started = False

    def stats(self) -> list[Stats]:
        """Each lane's totals, in the order the lanes were given."""
        return [lr.stats for lr in self._lanes]

    def stop(self) -> None:
        """Ask run() to stop cleanly. Safe from any thread and from a signal handler."""
        self._stop.set()

    def run(self, *, handle_signals: bool = False) -> None:
        """Consume every lane until stop(), then stop cleanly: stop taking records,
        let running handlers finish (up to shutdown_timeout), wait for their
        results' delivery, commit, leave the groups. A Worker runs once."""
        if self._started:
            raise RuntimeError("worker: run called twice")
        self._started = True
        previous: dict[signal.Signals, Any] = {}
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        threads = [threading.Thread(target=lr.run, name="ladder-lane-" + lr.lane.name) for lr in self._lanes]
        try:
            for t in threads:
                t.start()
            log.info("worker started: lanes %s", [lr.lane.name for lr in self._lanes])
            while any(t.is_alive() for t in threads):
                self._stop.wait(0.2)
                for t in threads:
                    t.join(0.0)
        finally:
            self._stop.set()
            for t in threads:
                if t.is_alive():
                    t.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        errors = [lr.error for lr in self._lanes if lr.error is not None]
        if errors:
            raise errors[0]
        log.info("worker stopped")


@dataclass
class _Partition:
    tp: tuple[str, int]
    flow: PartitionFlow[KafkaMessage]
    inbox: deque[KafkaMessage] = field(default_factory=deque)
    busy: int = 0  # records started and not finished: running or being delivered
    marked: int | None = None
    committed: int | None = None
    paused: bool = False
    released: bool = False


@dataclass(order=True)
class _Resend:
    at: float
    seq: int
    part: _Partition = field(compare=False)
    entry: Entry[KafkaMessage] = field(compare=False)
    p: Plan = field(compare=False)
    record: Record = field(compare=False)
    attempt: int = field(compare=False)


class _LaneRunner:
    """One lane on its own thread."""

    def __init__(self, worker: Worker, lane: Lane[Handler]) -> None:
        self.w = worker
        self.lane = lane
        self.stats = Stats(lane.name)
        self.stats_lock = threading.Lock()  # handler threads update running and errors
        self.parts: dict[tuple[str, int], _Partition] = {}
        self.done: queue.SimpleQueue[tuple[_Partition, Entry[KafkaMessage], Message, Result | None]] = (
            queue.SimpleQueue()
        )
        self.resends: list[_Resend] = []
        self.seq = 0
        self.in_flight = 0
        self.producing = 0
        self.error: BaseException | None = None
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            log.exception("lane %s failed", self.lane.name)
            self.error = exc
            self.w.stop()

    def _run(self) -> None:
        w, lane = self.w, self.lane
        self.producer = Producer(w._producer_config)
        self.consumer = Consumer({**w._consumer_config, "group.id": lane.group})
        executor = ThreadPoolExecutor(max_workers=lane.concurrency, thread_name_prefix="ladder-" + lane.name)
        try:
            self.consumer.subscribe(
                list(lane.topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            log.info("lane %s started: topics %s, group %s", lane.name, lane.topics, lane.group)
            next_commit = time.monotonic() + w.commit_interval
            while not w._stop.is_set():
                busy = self.in_flight > 0
                msgs = self.consumer.consume(num_messages=2 * _INBOX_HIGH, timeout=0 if busy else 0.1)
                for m in msgs:
                    self._feed(m)
                progressed = self._pump(executor)
                if time.monotonic() >= next_commit:
                    self._commit(list(self.parts.values()))
                    next_commit = time.monotonic() + w.commit_interval
                if busy and not msgs and not progressed:
                    self._wait(0.005)
            log.info("lane %s stopping", lane.name)
            self._release(list(self.parts.values()), executor=None)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            self.consumer.close()
            self.producer.flush(w.shutdown_timeout)

    # Called from consume(), on the lane's thread.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key not in self.parts:
                self.parts[key] = _Partition(key, PartitionFlow(self.lane.concurrency, self.lane.key_ordered))
                self.stats.claimed += 1
        log.info("lane %s: partitions assigned: %s", self.lane.name, sorted((t.topic, t.partition) for t in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = [self.parts[(t.topic, t.partition)] for t in partitions if (t.topic, t.partition) in self.parts]
        self._release(parts, executor=None)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for t in partitions:
            part = self.parts.pop((t.topic, t.partition), None)
            if part is not None:
                part.released = True
                part.flow.stop()
                self.stats.claimed -= 1
        log.warning("lane %s: partitions lost (not committed): %s", self.lane.name, partitions)

    def _feed(self, m: KafkaMessage) -> None:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("lane %s: consumer error: %s", self.lane.name, err)
            return
        part = self.parts.get((m.topic() or "", m.partition() or 0))
        if part is None:
            return
        part.inbox.append(m)
        if len(part.inbox) >= _INBOX_HIGH and not part.paused and self.consumer is not None:
            self.consumer.pause([TopicPartition(*part.tp)])
            part.paused = True

    def _pump(self, executor: ThreadPoolExecutor | None) -> bool:
        """Serve delivery reports, finished handlers and due resends, then start
        what the budget allows. Returns whether anything happened."""
        assert self.producer is not None
        progressed = self.producer.poll(0) > 0
        while True:
            try:
                part, e, msg, res = self.done.get_nowait()
            except queue.Empty:
                break
            progressed = True
            self._handled(part, e, msg, res)
        now = time.monotonic()
        while self.resends and self.resends[0].at <= now:
            r = heapq.heappop(self.resends)
            progressed = True
            self._send(r.part, r.entry, r.p, restamp(self.w.ladder, r.record, now_ms()), r.attempt)
        if executor is not None:
            progressed = self._start(executor) or progressed
        return progressed

    def _start(self, executor: ThreadPoolExecutor) -> bool:
        started = False
        for part in list(self.parts.values()):
            flow = part.flow
            while True:
                if flow.ready:
                    if self.in_flight >= self.lane.concurrency:
                        return started
                    e = flow.ready.popleft()
                    self.in_flight += 1
                    self.stats.in_flight += 1
                    part.busy += 1
                    executor.submit(self._call, part, e)
                    started = True
                elif part.inbox and flow.has_room():
                    m = part.inbox.popleft()
                    flow.take(m, m.offset() or 0, _raw(m.key()))
                    if part.paused and len(part.inbox) <= _INBOX_LOW and self.consumer is not None:
                        self.consumer.resume([TopicPartition(*part.tp)])
                        part.paused = False
                else:
                    break
        return started

    def _call(self, part: _Partition, e: Entry[KafkaMessage]) -> None:
        """On a handler thread."""
        assert e.item is not None
        msg = message(e.item)
        with self.stats_lock:
            self.stats.running += 1
        res: Result | None
        try:
            res = self.lane.handler(msg)
        except Exception as exc:
            with self.stats_lock:
                self.stats.errors += 1
            log.warning("lane %s: handler raised on %s@%d; retrying the message", self.lane.name, part.tp, msg.offset)
            res = raised(exc)
        finally:
            with self.stats_lock:
                self.stats.running -= 1
        self.done.put((part, e, msg, res))

    def _handled(self, part: _Partition, e: Entry[KafkaMessage], msg: Message, res: Result | None) -> None:
        self.stats.handled += 1
        part.flow.handled(e)
        if part.released:  # revoked meanwhile: the next owner handles it again
            self._finished(part, e, None)
            return
        p = plan(self.w.ladder, msg, res, max_attempts=self.lane.max_attempts, backoff=self.lane.backoff)
        if p.outcome is Outcome.DEAD_LETTER:
            log.warning("lane %s: dead-lettering %s@%d: %s", self.lane.name, part.tp, msg.offset, p.reason)
        if p.record is None:
            self._finished(part, e, p)
            return
        self._send(part, e, p, p.record, 0)

    def _send(self, part: _Partition, e: Entry[KafkaMessage], p: Plan, record: Record, attempt: int) -> None:
        assert self.producer is not None
        if part.released:
            self._finished(part, e, None)
            return

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            self.producing -= 1
            if err is None:
                self._finished(part, e, p)
                return
            d = send_retry_delay(attempt + 1)
            log.warning(
                "lane %s: producing to %s failed (attempt %d): %s; holding the offset, retrying in %.1fs",
                self.lane.name,
                record.topic,
                attempt + 1,
                err,
                d,
            )
            self.seq += 1
            heapq.heappush(self.resends, _Resend(time.monotonic() + d, self.seq, part, e, p, record, attempt + 1))

        while True:
            try:
                self.producer.produce(
                    record.topic,
                    record.value,
                    record.key,
                    on_delivery=delivered,
                    timestamp=record.timestamp_ms,
                    headers=_headers(record),
                )
                break
            except BufferError:  # the producer's queue is full: serve delivery reports
                self.producer.poll(0.05)
        self.producing += 1

    def _finished(self, part: _Partition, e: Entry[KafkaMessage], p: Plan | None) -> None:
        self.in_flight -= 1
        self.stats.in_flight -= 1
        part.busy -= 1
        if p is None or part.released:
            return
        self.stats.count(p.outcome)
        commit = part.flow.finish(e)
        if commit is not None:
            part.marked = commit

    def _wait(self, timeout: float) -> None:
        """Wait a little for a delivery report or a finished handler."""
        assert self.producer is not None
        if self.producing > 0:
            self.producer.poll(timeout)
            return
        try:
            item = self.done.get(timeout=timeout)
        except queue.Empty:
            return
        self._handled(*item)

    def _release(self, parts: list[_Partition], executor: ThreadPoolExecutor | None) -> None:
        """Stop taking records of parts, wait up to shutdown_timeout for their
        running handlers and deliveries, commit what finished, and drop them."""
        if not parts:
            return
        for part in parts:
            part.flow.stop()
            part.inbox.clear()
        deadline = time.monotonic() + self.w.shutdown_timeout
        while any(part.busy for part in parts) and time.monotonic() < deadline:
            if not self._pump(executor):
                self._wait(0.01)
        unfinished = sum(part.busy for part in parts)
        if unfinished:
            log.warning(
                "lane %s: releasing partitions with %d unfinished records; the next owner processes them again",
                self.lane.name,
                unfinished,
            )
        self._commit(parts)
        for part in parts:
            part.released = True
            if self.parts.pop(part.tp, None) is not None:
                self.stats.claimed -= 1
        log.info("lane %s: partitions released: %s", self.lane.name, sorted(part.tp for part in parts))

    def _commit(self, parts: Iterable[_Partition]) -> None:
        assert self.consumer is not None
        offsets = [
            TopicPartition(part.tp[0], part.tp[1], part.marked)
            for part in parts
            if part.marked is not None and part.marked != part.committed
        ]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("lane %s: committing %s failed: %s", self.lane.name, offsets, exc)
            return
        for part in parts:
            if part.marked is not None:
                part.committed = part.marked
