"""The aiokafka adapter: an asyncio worker with the Go SDK's semantics, and a
Scheduler for code that runs its own consumer loop. Install with the [aiokafka] extra.

Guarantees of Worker (as Go's pkg/worker):

* nothing lost: an offset is committed only after the record its result produced
  was acknowledged (acks=all, idempotent producer), and only up to the lowest
  record not finished yet, so a crash replays records, never skips one;
* bounded memory: a lane has at most ``concurrency`` records running or waiting
  for their acknowledgement; a partition stops reading at ``concurrency`` records
  waiting behind their key or ``16 x concurrency`` taken and not committed;
* lanes are independent: each has its own consumer group and in-flight budget;
* graceful shutdown: stop() (or SIGINT/SIGTERM with ``run(handle_signals=True)``)
  stops taking records, lets running handlers finish and their results be
  acknowledged (up to ``shutdown_timeout``), commits, leaves the groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.structs import ConsumerRecord
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        f"kafka_ladder.aiokafka needs the [aiokafka] extra: pip install 'kafka-ladder[aiokafka]' ({exc})"
    ) from exc

from ._flow import Entry, PartitionFlow
from ._worker import COMMIT_INTERVAL, SHUTDOWN_TIMEOUT, Stats, log, raised, send_retry_delay
from .envelope import HeaderInput
from .message import (
    _DEAD_LETTER,
    DEFAULT_MAX_ATTEMPTS,
    Lane,
    Message,
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

__all__ = ["AsyncHandler", "Scheduler", "Stats", "Worker", "message"]

AsyncHandler = Callable[[Message], Awaitable[Result | None]]
"""A lane's handler: returns a Result (None is done); an exception counts as retry."""

_INBOX_HIGH = 256  # records fetched for a partition and not taken: pause it there
_INBOX_LOW = 64  # and resume it here


def message(record: ConsumerRecord[Any, Any]) -> Message:
    """Decode an aiokafka ConsumerRecord (raw bytes key and value) for a handler."""
    return Message.from_record(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.timestamp,
        record.headers,
    )


_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_words = struct.Struct("<I").iter_unpack


def _murmur2(data: bytes) -> int:
    """The Java client's murmur2 hash, as aiokafka.partitioner.murmur2 computes it
    (the tests check they agree) in 50-60% of its time: the batcher hashes every
    record's key."""
    n = len(data)
    h = 0x9747B28C ^ n
    end = n & ~3
    for (k,) in _words(data[:end]):
        k = (k * _M) & _U32
        k ^= k >> 24
        h = ((h * _M) & _U32) ^ ((k * _M) & _U32)
    tail = n & 3
    if tail:
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * _M) & _U32
    h ^= h >> 13
    h = (h * _M) & _U32
    return h ^ (h >> 15)


class Scheduler:
    """Schedules messages and carries out Results with an AIOKafkaProducer (acks=all
    recommended), each call returning once the broker acknowledged the record: a
    consumer that commits after awaiting it never loses a message. Many calls may
    be in flight at once; the producer batches them."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        ladder: Ladder,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Callable[[int], float] = default_backoff,
    ) -> None:
        self.producer = producer
        self.ladder = ladder
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._batcher = _Batcher(producer)

    async def send(self, record: Record) -> None:
        """Produce record and wait for the broker's acknowledgement. Records sent
        together (concurrent calls) go in one batch per partition."""
        await self._batcher.send(record)

    async def schedule(
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
        through the ladder. Returns the record sent, once acknowledged."""
        now = now_ms()
        rec = schedule_record(self.ladder, target, key, value, headers, due_ms(delay=delay, at=at), now)
        await self.send(rec)
        return rec

    async def apply(self, msg: Message | ConsumerRecord[Any, Any], result: Result | None) -> Plan:
        """Carry out result for a consumed message; returns once acknowledged."""
        m = msg if isinstance(msg, Message) else message(msg)
        p = plan(self.ladder, m, result, max_attempts=self.max_attempts, backoff=self.backoff)
        del m  # not kept alive while waiting: fewer objects per record in flight for the collector
        if p.record is not None:
            await self._batcher.send(p.record)
        return p

    async def reschedule(
        self,
        msg: Message | ConsumerRecord[Any, Any],
        delay: Delay | None = None,
        *,
        at: When | None = None,
        lane: str = "",
        value: bytes | _Unset | None = _Unset.UNSET,
        headers: Iterable[HeaderInput] | None = None,
    ) -> Plan:
        """Bring msg back to its lane (or ``lane``) after delay or at ``at``."""
        return await self.apply(msg, _reschedule_result(delay, at, lane, value, headers))

    async def retry(
        self,
        msg: Message | ConsumerRecord[Any, Any],
        error: BaseException | str | None = None,
        *,
        backoff: Delay | None = None,
    ) -> Plan:
        """Bring msg back after the back-off of its attempt with ladder-attempt
        incremented, or dead-letter it after max_attempts attempts."""
        return await self.apply(msg, _retry_result(error, backoff))

    async def dead_letter(self, msg: Message | ConsumerRecord[Any, Any], reason: str) -> Plan:
        """Send msg to the dead-letter topic with reason as ladder-error."""
        return await self.apply(msg, _dead_letter(reason))


class Worker:
    """Consumes lanes in consumer groups and runs their handlers, many records of a
    partition at once, carrying out each Result before its offset is committed.

    >>> worker = Worker(Ladder.parse("1m,15m,1h,6h"), Lane(["work-fast"], handle), bootstrap_servers="kafka:9092")
    >>> await worker.run(handle_signals=True)
    """

    def __init__(
        self,
        ladder: Ladder,
        *lanes: Lane[AsyncHandler],
        bootstrap_servers: str | list[str] = "127.0.0.1:9092",
        client_id: str = "ladder-worker",
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        commit_interval: float = COMMIT_INTERVAL,
        consumer_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        """consumer_config and producer_config are passed to AIOKafkaConsumer and
        AIOKafkaProducer (security settings, session_timeout_ms, linger_ms...)."""
        if not lanes:
            raise ValueError("invalid worker config: no lanes")
        groups = set()
        for lane in lanes:
            lane.validate(ladder)
            if lane.group in groups:
                raise ValueError(f"invalid lane {lane.name}: consumer group {lane.group} is used by another lane")
            groups.add(lane.group)
        self.ladder = ladder
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.shutdown_timeout = shutdown_timeout
        self.commit_interval = commit_interval
        self.consumer_config = dict(consumer_config or {})
        self.producer_config = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, **(producer_config or {})}
        self._lanes = [_LaneRunner(self, lane) for lane in lanes]
        self._stop = asyncio.Event()
        self._started = False
        self.producer: AIOKafkaProducer | None = None
        self._batcher: _Batcher | None = None

    def stats(self) -> list[Stats]:
        """Each lane's totals, in the order the lanes were given."""
        return [lr.stats for lr in self._lanes]

    def stop(self) -> None:
        """Ask run() to stop cleanly. Safe to call from a signal handler."""
        self._stop.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Consume every lane until stop() (or SIGINT/SIGTERM with handle_signals),
        then stop cleanly: stop taking records, let running handlers finish (up to
        shutdown_timeout), wait for their results' acknowledgements, commit, leave
        the groups, flush the producer. A Worker runs once."""
        if self._started:
            raise RuntimeError("worker: run called twice")
        self._started = True
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        try:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers, client_id=self.client_id, **self.producer_config
            )
            if not await _connect(self._stop, "starting producer", producer.start):
                return
            self.producer = producer
            self._batcher = _Batcher(producer)
            try:
                log.info("worker started: lanes %s", [lr.lane.name for lr in self._lanes])
                await asyncio.gather(*(lr.run() for lr in self._lanes))
            finally:
                await producer.stop()
            log.info("worker stopped")
        finally:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    async def _deliver(self, record: Record) -> None:
        """Send record until the broker acknowledges it, restamped at every attempt."""
        assert self._batcher is not None
        attempt = 0
        while True:
            try:
                await self._batcher.send(record)
                return
            except Exception as exc:
                attempt += 1
                d = send_retry_delay(attempt)
                log.warning(
                    "producing to %s failed (attempt %d): %r; holding the offset, retrying in %.1fs",
                    record.topic,
                    attempt,
                    exc,
                    d,
                )
                await asyncio.sleep(d)
                record = restamp(self.ladder, record, now_ms())


class _Batcher:
    """Sends records in batches: the records sent in one turn of the event loop go
    in one batch per partition, built by aiokafka's BatchBuilder (in C) and sent
    with send_batch, which costs less per record than producer.send(). Partitions
    are chosen as producer.send() chooses them with its default partitioner (murmur2
    of the key, like the Java client and Go's ladder; at random without a key). Each
    record's send completes once its batch is acknowledged, or raises its batch's
    error."""

    _PARTITIONS_TTL = 30.0  # seconds a topic's partition list is used before asking again

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._open: dict[tuple[str, int], tuple[Any, list[asyncio.Future[None]]]] = {}
        self._flush_scheduled = False
        self._partitions: dict[str, tuple[float, list[int]]] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, record: Record) -> Awaitable[None]:
        """Add record to its partition's batch of this turn of the event loop; the
        awaitable returned completes once the batch is acknowledged. No coroutine of
        its own when the topic's partitions are known: a future."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        known = self._partitions.get(record.topic)
        if known is None or loop.time() > known[0]:
            return self._send_after_metadata(record)
        parts = known[1]
        key = record.key
        partition = random.choice(parts) if key is None else parts[(_murmur2(key) & 0x7FFFFFFF) % len(parts)]
        tp = (record.topic, partition)
        fut: asyncio.Future[None] = loop.create_future()
        if not self._append(tp, record, fut):
            if tp in self._open:
                self._flush(tp)  # full: send it, start the next one
            if not self._append(tp, record, fut):  # larger than a batch: on its own
                del self._open[tp]
                return self._send_alone(record, partition)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_all)
        return fut

    async def _send_after_metadata(self, record: Record) -> None:
        parts = sorted(await self.producer.partitions_for(record.topic))
        assert self._loop is not None
        self._partitions[record.topic] = (self._loop.time() + self._PARTITIONS_TTL, parts)
        await self.send(record)

    async def _send_alone(self, record: Record, partition: int) -> None:
        md = await self.producer.send(
            record.topic,
            record.value,
            key=record.key,
            partition=partition,
            headers=record.headers,
            timestamp_ms=record.timestamp_ms,
        )
        await md

    def _append(self, key: tuple[str, int], record: Record, fut: asyncio.Future[None]) -> bool:
        open_ = self._open.get(key)
        if open_ is None:
            open_ = self._open[key] = (self.producer.create_batch(), [])
        batch, futs = open_
        if (
            batch.append(key=record.key, value=record.value, timestamp=record.timestamp_ms, headers=record.headers)
            is None
        ):
            return False
        futs.append(fut)
        return True

    def _flush_all(self) -> None:
        self._flush_scheduled = False
        for key in list(self._open):
            self._flush(key)

    def _flush(self, key: tuple[str, int]) -> None:
        batch, futs = self._open.pop(key)
        if not futs:
            return
        t = asyncio.create_task(self._send_batch(batch, key, futs))
        self._sending.add(t)
        t.add_done_callback(self._sending.discard)

    async def _send_batch(self, batch: Any, key: tuple[str, int], futs: list[asyncio.Future[None]]) -> None:
        try:
            ack = await self.producer.send_batch(batch, key[0], partition=key[1])
            await ack
        except Exception as exc:
            for f in futs:
                if not f.done():
                    f.set_exception(exc)
            return
        for f in futs:
            if not f.done():
                f.set_result(None)


async def _connect(stop: asyncio.Event, what: str, start: Callable[[], Awaitable[None]]) -> bool:
    """Call start until it succeeds (True), with back-off, or stop is set (False):
    Kafka may not be reachable yet (a pod starting beside its cluster)."""
    delay = 1.0
    while not stop.is_set():
        try:
            await start()
            return True
        except Exception as exc:
            log.error("cannot connect to Kafka: %s: %r; retrying in %.0fs", what, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
    return False


class _LaneRunner(ConsumerRebalanceListener):  # type: ignore[misc]
    """One lane at run time: its consumer, budget and claimed partitions."""

    def __init__(self, worker: Worker, lane: Lane[AsyncHandler]) -> None:
        self.w = worker
        self.lane = lane
        self.stats = Stats(lane.name)
        self.sem = asyncio.Semaphore(lane.concurrency)
        self.parts: dict[TopicPartition, _Partition] = {}
        self.consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        w = self.w
        config = {"auto_offset_reset": "earliest", **w.consumer_config, "enable_auto_commit": False}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=w.bootstrap_servers, client_id=w.client_id, group_id=self.lane.group, **config
        )
        if not await _connect(w._stop, "joining consumer group " + self.lane.group, consumer.start):
            return
        self.consumer = consumer
        committer = asyncio.create_task(self._commit_every(w.commit_interval))
        stop = asyncio.create_task(w._stop.wait())
        try:
            consumer.subscribe(self.lane.topics, listener=self)
            log.info("lane %s started: topics %s, group %s", self.lane.name, self.lane.topics, self.lane.group)
            while not w._stop.is_set():
                fetch = asyncio.create_task(consumer.getmany(timeout_ms=500, max_records=2 * _INBOX_HIGH))
                await asyncio.wait((fetch, stop), return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                for tp, records in fetch.result().items():
                    part = self.parts.get(tp)
                    if part is not None:
                        part.feed(records)
            log.info("lane %s stopping", self.lane.name)
            await self.release(list(self.parts))
        finally:
            stop.cancel()
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await consumer.stop()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assert self.consumer is not None
        for tp in assigned:
            if tp not in self.parts:
                self.parts[tp] = _Partition(self, tp)
                self.stats.claimed += 1
        if assigned:
            self.consumer.resume(*assigned)
        log.info("lane %s: partitions assigned: %s", self.lane.name, sorted(assigned))

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.release(list(revoked))

    async def release(self, tps: list[TopicPartition]) -> None:
        """Stop taking records of tps, wait up to shutdown_timeout for their running
        handlers and acknowledgements, commit what finished, and drop them. Records
        still unfinished then are cancelled and left uncommitted for the next owner."""
        parts = [self.parts.pop(tp) for tp in tps if tp in self.parts]
        if not parts:
            return
        for p in parts:
            p.stop()
        busy = [p for p in parts if p.tasks]
        if busy:
            waits = [asyncio.create_task(p.idle.wait()) for p in busy]
            _, pending = await asyncio.wait(waits, timeout=self.w.shutdown_timeout)
            for waiter in pending:
                waiter.cancel()
            if pending:
                running = sum(len(p.tasks) for p in busy)
                log.warning(
                    "lane %s: releasing partitions with %d unfinished records after %.0fs; "
                    "the next owner processes them again",
                    self.lane.name,
                    running,
                    self.w.shutdown_timeout,
                )
                tasks = [t for p in busy for t in p.tasks]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        await self.commit(parts)
        self.stats.claimed -= len(parts)
        log.info("lane %s: partitions released: %s", self.lane.name, sorted(p.tp for p in parts))

    async def commit(self, parts: Iterable[_Partition]) -> None:
        """Commit the finished prefix of each partition that advanced."""
        offsets = {p.tp: p.marked for p in parts if p.marked is not None and p.marked != p.committed}
        if not offsets or self.consumer is None:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:
            log.warning("lane %s: committing %s failed: %r", self.lane.name, offsets, exc)
            return
        for p in parts:
            if p.tp in offsets:
                p.committed = offsets[p.tp]

    async def _commit_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.commit(list(self.parts.values()))


class _Partition:
    """One claimed partition: takes fetched records in offset order, starts them as
    the lane's budget allows, and marks the finished prefix."""

    def __init__(self, lr: _LaneRunner, tp: TopicPartition) -> None:
        self.lr = lr
        self.tp = tp
        self.flow: PartitionFlow[ConsumerRecord[Any, Any]] = PartitionFlow(lr.lane.concurrency, lr.lane.key_ordered)
        self.inbox: deque[ConsumerRecord[Any, Any]] = deque()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.marked: int | None = None
        self.committed: int | None = None
        self.paused = False
        self.runner = asyncio.create_task(self._run())

    def feed(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        self.inbox.extend(records)
        self.wake.set()
        if len(self.inbox) >= _INBOX_HIGH and not self.paused and self.lr.consumer is not None:
            self.lr.consumer.pause(self.tp)
            self.paused = True

    def stop(self) -> None:
        self.flow.stop()
        self.inbox.clear()
        self.runner.cancel()

    async def _run(self) -> None:
        flow, sem = self.flow, self.lr.sem
        while True:
            if flow.ready:
                await sem.acquire()
                if not flow.ready:  # pragma: no cover - only this task empties it
                    sem.release()
                    continue
                self._start(flow.ready.popleft())
            elif self.inbox and flow.has_room():
                rec = self.inbox.popleft()
                flow.take(rec, rec.offset, rec.key)
                if self.paused and len(self.inbox) <= _INBOX_LOW and self.lr.consumer is not None:
                    self.lr.consumer.resume(self.tp)
                    self.paused = False
            else:
                self.wake.clear()
                await self.wake.wait()

    def _start(self, e: Entry[ConsumerRecord[Any, Any]]) -> None:
        self.idle.clear()
        self.lr.stats.in_flight += 1
        t = asyncio.create_task(self._process(e))
        self.tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[None]) -> None:
        self.tasks.discard(t)
        if not self.tasks:
            self.idle.set()
        if not t.cancelled() and t.exception() is not None:
            log.error("lane %s: processing a record failed", self.lr.lane.name, exc_info=t.exception())

    async def _process(self, e: Entry[ConsumerRecord[Any, Any]]) -> None:
        lr, lane, stats = self.lr, self.lr.lane, self.lr.stats
        try:
            assert e.item is not None
            msg = message(e.item)
            stats.running += 1
            try:
                res = await lane.handler(msg)
            except Exception as exc:
                stats.errors += 1
                log.warning("lane %s: handler raised on %s@%d; retrying the message", lane.name, self.tp, msg.offset)
                res = raised(exc)
            finally:
                stats.running -= 1
            stats.handled += 1
            self.flow.handled(e)
            self.wake.set()
            p = plan(lr.w.ladder, msg, res, max_attempts=lane.max_attempts, backoff=lane.backoff)
            if p.outcome is _DEAD_LETTER:
                log.warning("lane %s: dead-lettering %s@%d: %s", lane.name, self.tp, msg.offset, p.reason)
            if p.record is not None:
                await lr.w._deliver(p.record)
            stats.count(p.outcome)
            commit = self.flow.finish(e)
            if commit is not None:
                self.marked = commit
        finally:
            lr.sem.release()
            stats.in_flight -= 1
