"""The producer side: the Kafka record that schedules a message for a target
topic at a due time, as Go's ``schedule.Record`` builds it. Any client can send it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from .envelope import Header, HeaderInput, _pairs, _scheduling_headers
from .tier import InvalidTopicError, Ladder, validate_topic

__all__ = ["Delay", "InvalidMessageError", "Record", "When", "due_ms", "now_ms", "restamp", "schedule_record"]

Delay = float | int | timedelta
"""A delay: seconds (int or float) or a timedelta."""
When = float | int | datetime
"""A point in time: unix seconds (int or float) or a datetime (naive means local time)."""


class InvalidMessageError(ValueError):
    """A message that cannot be scheduled (Go: ``schedule.ErrInvalidMessage``)."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid message: " + detail)


@dataclass(slots=True)
class Record:
    """A Kafka record to produce: topic, key, value, headers and timestamp. (Not
    frozen: one is built per record on the hot path, and frozen costs there.)"""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    timestamp_ms: int
    """The record timestamp: the time the record was built (a tier measures from it)."""
    due_ms: int | None = None
    """The due time written to ladder-due, when the record schedules a message."""
    target: str | None = None
    """The target written to ladder-target, when the record schedules a message."""


def now_ms() -> int:
    """The current time in unix milliseconds."""
    return time.time_ns() // 1_000_000


def _ns(delay: Delay) -> int:
    if isinstance(delay, timedelta):
        return (delay.days * 86_400 + delay.seconds) * 1_000_000_000 + delay.microseconds * 1_000
    return int(delay * 1_000_000_000)


def due_ms(*, delay: Delay | None = None, at: When | None = None, now_ns: int | None = None) -> int:
    """The due time in unix milliseconds (truncated, as the wire carries it) of a
    message due at ``at``, or ``delay`` after now. Exactly one must be given."""
    if (delay is None) == (at is None):
        raise TypeError("give exactly one of delay and at")
    if isinstance(at, datetime):
        delta = (at if at.tzinfo is not None else at.astimezone()) - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if at is not None:
        return int(at * 1000)
    assert delay is not None
    if now_ns is None:
        now_ns = time.time_ns()
    return (now_ns + _ns(delay)) // 1_000_000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def schedule_record(
    ladder: Ladder,
    target: str,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[HeaderInput] | None,
    due: int,
    now: int,
) -> Record:
    """The record that schedules a message for ``target`` due at ``due`` (unix ms),
    built at ``now`` (unix ms): its topic is the tier the routing rule picks (the
    target itself when already due), its timestamp ``now``, its headers the caller's
    own (contract headers dropped) then ladder-target, ladder-due, ladder-scheduled
    and ladder-hops. Raises InvalidMessageError for a bad or internal target."""
    return _schedule_record(ladder, target, key, value, _pairs(headers), due, now)


def _schedule_record(
    ladder: Ladder, target: str, key: bytes | None, value: bytes | None, own: Iterable[Header], due: int, now: int
) -> Record:
    """schedule_record for own headers that are (str, bytes) pairs already (a Message's)."""
    try:
        validate_topic(target)
    except InvalidTopicError as exc:
        raise InvalidMessageError(f"target: {exc}") from None
    if ladder.internal(target):
        raise InvalidMessageError(f"target {target} is a topic of the ladder itself")
    hop = ladder.route(now, due)
    headers = _scheduling_headers(own, target, due, now)
    return Record(target if hop is None else hop.topic, key, value, headers, now, due, target)


def restamp(ladder: Ladder, record: Record, now: int) -> Record:
    """The record to send again at now after a failed send: a scheduling record is
    routed and stamped anew (the time left changed), any other only stamped anew."""
    if record.target is None or record.due_ms is None:
        return replace(record, timestamp_ms=now)
    return _schedule_record(ladder, record.target, record.key, record.value, record.headers, record.due_ms, now)
