"""What a worker handles and what it answers: Message, Result, Lane, and the plan
that turns a handler's Result into the record to produce. Client-neutral: the
aiokafka, confluent-kafka and Faust adapters all act through plan()."""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from .envelope import TARGET, Envelope, Header, HeaderError, HeaderInput, _decode, _pairs, dead_letter_headers
from .schedule import Delay, InvalidMessageError, Record, When, _ns, _schedule_record, due_ms
from .tier import Ladder, validate_topic

__all__ = [
    "ATTEMPT",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_ATTEMPTS",
    "Lane",
    "LaneChooser",
    "Message",
    "Outcome",
    "Plan",
    "Result",
    "dead_letter",
    "dead_letter_record_headers",
    "default_backoff",
    "done",
    "plan",
    "reschedule",
    "reschedule_at",
    "retry",
    "retry_after",
]

ATTEMPT = "ladder-attempt"
"""Counts delivery attempts of a message a handler asked to retry: absent on the
first delivery, "2" on the first retry, and so on; a dead-lettered message carries
the number of attempts made. Decimal ASCII."""

DEFAULT_CONCURRENCY = 256
"""Lane.concurrency when none is set."""
DEFAULT_MAX_ATTEMPTS = 5
"""Lane.max_attempts when none is set."""

_LADDER = "ladder-"
_INT64 = re.compile(rb"[+-]?[0-9]+\Z")


def default_backoff(attempt: int) -> float:
    """Seconds to wait before attempt+1 after attempt failed: 10s after the first,
    doubling after each further one, at most 1h."""
    d = 10
    i = 1
    while i < attempt and d < 3600:
        d *= 2
        i += 1
    return float(min(d, 3600))


def _atoi(v: bytes) -> int | None:
    # Go's strconv.Atoi: an optional sign and ASCII digits, within int64.
    if not _INT64.match(v):
        return None
    n = int(v)
    return n if -(1 << 63) <= n < (1 << 63) else None


@dataclass(slots=True)
class Message:
    """A record consumed from a lane, as a handler sees it. Read-only by convention,
    like Go's worker.Message (not frozen: one is built per record on the hot path,
    and a frozen dataclass costs four times as much to build)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[Header, ...]
    """The record's own headers, in order and byte for byte: every header except
    the ladder-* ones, which are decoded into envelope and attempt."""
    envelope: Envelope
    """The decoded ladder-* headers. A record produced straight to the lane has an
    envelope with only target set (to the lane); malformed ladder headers are
    ignored here (the forwarder dead-letters such records before a lane)."""
    attempt: int = 1
    """1 on the first delivery and n+1 after n retries (the ladder-attempt header)."""
    raw_headers: tuple[Header, ...] = field(default=(), repr=False)
    """Every header as consumed, ladder-* included (a dead letter carries them)."""

    @classmethod
    def from_record(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
        headers: Iterable[HeaderInput | None] | None,
    ) -> Message:
        """Decode a consumed record for a handler."""
        raw = _pairs(headers)
        for h in raw:
            if h[0].startswith(_LADDER):
                break
        else:  # produced straight to the lane: its target is the lane, its headers its own
            t = tuple(raw)
            return cls(topic, partition, offset, key, value, timestamp_ms, t, Envelope(topic), 1, t)
        own = tuple([h for h in raw if not h[0].startswith(_LADDER)])
        attempt = 1
        for k, v in raw:
            if k == ATTEMPT:
                n = _atoi(v)
                if n is not None and n > 0:
                    attempt = n
        try:
            env = _decode(raw, topic)
        except HeaderError:
            env = Envelope(topic)
        return cls(topic, partition, offset, key, value, timestamp_ms, own, env, attempt, tuple(raw))

    def header(self, key: str) -> bytes | None:
        """The value of the first of the message's own headers named key, or None."""
        for k, v in self.headers:
            if k == key:
                return v
        return None

    @property
    def early(self) -> bool:
        """Whether idle work-ahead released the message before its due time."""
        return self.envelope.early_ms > 0

    def late_ms(self, now_ms: int | None = None) -> int:
        """How long after its due time the message is handled (negative when it came
        early, 0 without a due time)."""
        if self.envelope.due_ms is None:
            return 0
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        return now_ms - self.envelope.due_ms


class Outcome(enum.StrEnum):
    """What happens to a message once its handler returned."""

    DONE = "done"
    RESCHEDULE = "reschedule"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


# An enum member read from its class costs 0.1 us in Python 3.11 (the EnumType
# descriptor); plan() and the workers, once per record, read these instead.
_DONE = Outcome.DONE
_RESCHEDULE = Outcome.RESCHEDULE
_RETRY = Outcome.RETRY
_DEAD_LETTER = Outcome.DEAD_LETTER


class _Unset(enum.Enum):
    UNSET = 0


_UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class Result:
    """What happens to a message once its handler returned. Build one with done(),
    reschedule(), reschedule_at(), retry(), retry_after() or dead_letter()."""

    outcome: Outcome = Outcome.DONE
    delay: Delay | None = None
    at: When | None = None
    error: str = ""
    """The error of a retry, or the reason of a dead letter."""
    lane: str = ""
    value: bytes | _Unset | None = _UNSET
    headers: tuple[Header, ...] | None = None

    def to(self, lane: str) -> Result:
        """Make a reschedule come back to lane (a topic) instead of the lane it was
        consumed from. Other results ignore it."""
        return replace(self, lane=lane)

    def with_value(self, value: bytes | None) -> Result:
        """Make a reschedule come back with this value (None: a null value). Other
        results ignore it: a retry or a dead letter keeps the message as it was."""
        return replace(self, value=value)

    def with_headers(self, headers: Iterable[HeaderInput]) -> Result:
        """Make a reschedule come back with these headers in place of the message's
        own ones. ladder-* headers are dropped: the SDK sets its own."""
        own = tuple(h for h in _pairs(headers) if not h[0].startswith(_LADDER))
        return replace(self, headers=own)

    def __str__(self) -> str:
        return str(self.outcome)


def done() -> Result:
    """Finish the message: nothing more happens to it."""
    return Result()


def reschedule(delay: Delay) -> Result:
    """Bring the message back to its lane after delay (seconds or a timedelta; at
    once when <= 0) through the ladder, with its key, value and own headers."""
    return Result(Outcome.RESCHEDULE, delay=delay)


def reschedule_at(at: When) -> Result:
    """Bring the message back to its lane at ``at`` (unix seconds or a datetime)."""
    return Result(Outcome.RESCHEDULE, at=at)


def retry(error: BaseException | str | None = None) -> Result:
    """Bring the same message back to its own lane after the lane's back-off for its
    attempt, through the ladder, with ladder-attempt incremented. After
    max_attempts attempts it goes to the dead-letter topic instead."""
    return Result(Outcome.RETRY, error=_text(error) or "retry requested")


def retry_after(delay: Delay, error: BaseException | str | None = None) -> Result:
    """retry() with its own back-off in place of the lane's."""
    return Result(Outcome.RETRY, delay=delay, error=_text(error) or "retry requested")


def dead_letter(reason: str) -> Result:
    """Send the message to the dead-letter topic now, with reason as ladder-error."""
    return Result(Outcome.DEAD_LETTER, error=reason)


def _reschedule_result(
    delay: Delay | None,
    at: When | None,
    lane: str,
    value: bytes | _Unset | None,
    headers: Iterable[HeaderInput] | None,
) -> Result:
    """The Result of the adapters' reschedule(msg, delay, at=, lane=, value=, headers=)."""
    r = reschedule_at(at) if at is not None else reschedule(delay if delay is not None else 0)
    if lane:
        r = r.to(lane)
    if not isinstance(value, _Unset):
        r = r.with_value(value)
    if headers is not None:
        r = r.with_headers(headers)
    return r


def _retry_result(error: BaseException | str | None, backoff: Delay | None) -> Result:
    """The Result of the adapters' retry(msg, error, backoff=)."""
    return retry(error) if backoff is None else retry_after(backoff, error)


def _text(error: BaseException | str | None) -> str:
    if error is None:
        return ""
    return error if isinstance(error, str) else str(error) or type(error).__name__


HandlerT = TypeVar("HandlerT", covariant=True)


@dataclass(frozen=True)
class Lane(Generic[HandlerT]):
    """A set of topics (usually one, e.g. "work-fast") consumed by one consumer group
    with one handler and one in-flight budget."""

    topics: Sequence[str]
    """The lane topics to consume (required)."""
    handler: HandlerT
    """Processes the lane's messages: returns a Result (None is done); an exception
    counts as retry()."""
    name: str = ""
    """Names the lane in logs and stats (default: the topics, comma-separated)."""
    group: str = ""
    """The lane's consumer group (default "workers-" + name)."""
    concurrency: int = DEFAULT_CONCURRENCY
    """The most records running their handler or waiting for the acknowledgement of
    their result, shared by the lane's partitions in this process. Each partition
    also stops reading at concurrency records waiting behind their key, or 16 x
    concurrency records taken and not committed."""
    key_ordered: bool = False
    """Run records with the same non-null key one at a time, in offset order."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """How many times a message is handled before a retry dead-letters it."""
    backoff: Callable[[int], float] = default_backoff
    """Seconds before attempt+1 after attempt failed."""

    def __post_init__(self) -> None:
        # Defaults filled in once; a Lane is immutable afterwards.
        topics = tuple(self.topics)
        name = self.name or ",".join(topics)
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "group", self.group or "workers-" + name)
        if self.concurrency <= 0:
            object.__setattr__(self, "concurrency", DEFAULT_CONCURRENCY)
        if self.max_attempts <= 0:
            object.__setattr__(self, "max_attempts", DEFAULT_MAX_ATTEMPTS)

    def validate(self, ladder: Ladder) -> None:
        """Raise ValueError when the lane cannot run on ladder."""
        if not self.topics:
            raise ValueError(f"invalid lane {self.name}: no topics")
        for t in self.topics:
            try:
                validate_topic(t)
            except ValueError as exc:
                raise ValueError(f"invalid lane {self.name}: topic {t!r}: {exc}") from None
            if ladder.lookup(t) is not None or t == ladder.dlq_topic:
                raise ValueError(f"invalid lane {self.name}: topic {t} is a topic of the ladder itself, not a lane")
        if not callable(self.handler):
            raise ValueError(f"invalid lane {self.name}: no handler")


class LaneChooser:
    """Picks the lane of a message from its expected execution time: lanes are the
    2-3 buckets of execution time (for example work-fast up to 1s, work-slow up to
    60s, work-batch beyond), so slow messages never hold up fast ones.

    >>> lanes = LaneChooser([("work-fast", 1.0), ("work-slow", 60.0), ("work-batch", None)])
    >>> lanes.choose(0.2), lanes.choose(5), lanes.choose(3600)
    ('work-fast', 'work-slow', 'work-batch')
    """

    def __init__(self, buckets: Sequence[tuple[str, float | None]]) -> None:
        """buckets: (lane topic, longest expected seconds), the last one None (no bound)."""
        if not buckets:
            raise ValueError("no lanes")
        bounds = [b for _, b in buckets]
        if bounds[-1] is not None or any(b is None for b in bounds[:-1]):
            raise ValueError("only the last lane is unbounded (None), and it must be")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(finite) or len(set(finite)) != len(finite):
            raise ValueError("lane bounds must increase")
        for lane, _ in buckets:
            validate_topic(lane)
        self._buckets = list(buckets)

    @property
    def lanes(self) -> list[str]:
        """The lane topics, fastest first."""
        return [lane for lane, _ in self._buckets]

    def choose(self, expected_seconds: float) -> str:
        """The first lane whose bound is at least expected_seconds."""
        for lane, bound in self._buckets:
            if bound is None or expected_seconds <= bound:
                return lane
        raise AssertionError("unreachable: the last lane is unbounded")


def dead_letter_record_headers(
    headers: Sequence[HeaderInput | None], lane: str, attempt: int, reason: str
) -> list[Header]:
    """The headers of a dead-lettered record: every header as consumed, with
    ladder-attempt set to the attempts made, ladder-target naming the lane (so the
    record can be replayed into it) and ladder-error saying why."""
    out: list[Header] = []
    has_target = False
    for k, v in _pairs(headers):
        if k == ATTEMPT:
            continue
        if k == TARGET:
            if has_target:
                continue
            has_target = True
            v = lane.encode()
        out.append((k, v))
    if not has_target:
        out.append((TARGET, lane.encode()))
    out.append((ATTEMPT, str(attempt).encode()))
    return dead_letter_headers(out, reason)


@dataclass(slots=True)
class Plan:
    """What a Result comes to: the outcome and the record to produce (None when done)."""

    outcome: Outcome
    record: Record | None
    reason: str = ""
    """Why, for a dead letter."""


def plan(
    ladder: Ladder,
    msg: Message,
    result: Result | None,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: Callable[[int], float] = default_backoff,
    now_ns: int | None = None,
) -> Plan:
    """The record that carries out result for msg at now_ns, as the Go worker does."""
    if now_ns is None:
        now_ns = time.time_ns()
    now = now_ns // 1_000_000
    if result is None:
        return Plan(_DONE, None)
    outcome = result.outcome
    if outcome is _RESCHEDULE:
        value = msg.value if isinstance(result.value, _Unset) else result.value
        headers = msg.headers if result.headers is None else result.headers
        at = result.at
        due = (now_ns + _ns(result.delay or 0)) // 1_000_000 if at is None else due_ms(at=at)
        return _schedule(ladder, msg, outcome, result.lane or msg.topic, value, headers, due, now)
    if outcome is _DONE:
        return Plan(outcome, None)
    if outcome is _RETRY:
        if msg.attempt >= max_attempts:
            return _dead_letter(ladder, msg, f"{msg.attempt} attempts failed; last: {result.error}", now)
        wait = result.delay if result.delay is not None else backoff(msg.attempt)
        headers = (*msg.headers, (ATTEMPT, str(msg.attempt + 1).encode()))
        due = (now_ns + _ns(wait)) // 1_000_000
        return _schedule(ladder, msg, _RETRY, msg.topic, msg.value, headers, due, now)
    return _dead_letter(ladder, msg, result.error, now)


def _schedule(
    ladder: Ladder,
    msg: Message,
    outcome: Outcome,
    target: str,
    value: bytes | None,
    headers: Sequence[Header],
    due: int,
    now: int,
) -> Plan:
    try:
        rec = _schedule_record(ladder, target, msg.key, value, headers, due, now)
    except InvalidMessageError as exc:
        return _dead_letter(ladder, msg, f"cannot {outcome}: {exc}", now)
    return Plan(outcome, rec)


def _dead_letter(ladder: Ladder, msg: Message, reason: str, now: int) -> Plan:
    headers = dead_letter_record_headers(msg.raw_headers, msg.topic, msg.attempt, reason)
    return Plan(_DEAD_LETTER, Record(ladder.dlq_topic, msg.key, msg.value, headers, now), reason)
