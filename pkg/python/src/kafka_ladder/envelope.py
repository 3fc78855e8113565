"""The header contract: read and write the ``ladder-*`` headers that carry a message
through the ladder; keys, values and every other header pass through byte for byte.

The same rules as Go's ``pkg/envelope``, checked against the shared test vectors in
``pkg/envelope/testdata``. Times are unix milliseconds and counts decimal ASCII.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from ._gofmt import quote
from .tier import InvalidTopicError, validate_topic

__all__ = [
    "DUE",
    "EARLY",
    "ERROR",
    "HOPS",
    "SCHEDULED",
    "TARGET",
    "Envelope",
    "Header",
    "HeaderError",
    "HeaderInput",
    "Reason",
    "dead_letter_headers",
    "decode",
    "is_contract_header",
    "new_headers",
    "next_headers",
]

TARGET = "ladder-target"
"""The topic the message goes to when it is due (required)."""
DUE = "ladder-due"
"""When the message is due, unix milliseconds (optional)."""
SCHEDULED = "ladder-scheduled"
"""When the message was first scheduled, unix milliseconds."""
HOPS = "ladder-hops"
"""How many tiers the message has passed through."""
EARLY = "ladder-early"
"""Milliseconds ahead of its due time, when idle work-ahead or ``ladder drain`` released it early."""
ERROR = "ladder-error"
"""On the dead-letter topic only: why the message could not be forwarded."""

_NAMES = (TARGET, DUE, SCHEDULED, HOPS, EARLY, ERROR)
_NAME_SET = frozenset(_NAMES)
_MIN_DUE_MS = 100_000_000_000  # 1973-03-03: a smaller ladder-due is unix seconds sent by mistake
_MAX_HOPS_VALUE = 1 << 30
_MAX_EARLY_MS = ((1 << 63) - 1) // 1_000_000  # the largest ladder-early Go's time.Duration holds

Header = tuple[str, bytes]
"""A record header as Python's Kafka clients give it: key, value."""
HeaderInput = tuple[str | bytes, bytes | str | None]
"""A header as accepted: key and value as str or bytes; a None value is empty."""


class Reason(enum.StrEnum):
    """Why a record cannot be routed: a small fixed set, fit for metric labels."""

    MISSING_TARGET = "missing_target"
    INVALID_TARGET = "invalid_target"
    INVALID_DUE = "invalid_due"
    INVALID_HOPS = "invalid_hops"
    INVALID_HEADER = "invalid_header"
    DUPLICATE_HEADER = "duplicate_header"
    DUE_TOO_FAR = "due_too_far"
    """ladder-due is further ahead than the forwarder's maximum delay."""
    REJECTED = "rejected_by_target"
    """The target refused the record for good."""


class HeaderError(ValueError):
    """A record whose ladder headers cannot be used. ``str(err)`` is the text the
    forwarder writes to ``ladder-error``: "<header>: <detail>"."""

    def __init__(self, header: str, reason: Reason, detail: str) -> None:
        super().__init__(f"{header}: {detail}")
        self.header = header
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Envelope:
    """The decoded ``ladder-*`` headers of a record. Read-only by convention, like
    Go's envelope.Envelope (not frozen: one is built per record on the hot path, and
    a frozen dataclass costs four times as much to build)."""

    target: str
    due_ms: int | None = None
    """None when the record carries no ladder-due."""
    scheduled_ms: int | None = None
    """None when the record carries no ladder-scheduled."""
    hops: int = 0
    early_ms: int = 0
    """Non-zero only when work-ahead released the record before its due time."""
    error: str = ""
    """Empty unless the record was dead-lettered."""


def _key(k: str | bytes) -> str:
    return k if isinstance(k, str) else k.decode("utf-8", "surrogateescape")


def _value(v: bytes | str | None) -> bytes:
    if v is None:
        return b""
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def is_contract_header(key: str | bytes) -> bool:
    """Whether key is one of the six headers of the wire contract."""
    return _key(key) in _NAME_SET


def _truncate(v: bytes) -> bytes:
    return v[:32]


def _bad_uint(header: str, v: bytes, reason: Reason) -> NoReturn:
    """The error of a value that is not ``0 < len(v) <= 18 and v.isdigit()``, the
    test _decode makes inline (bytes.isdigit: ASCII digits only)."""
    if len(v) == 0 or len(v) > 18:
        raise HeaderError(header, reason, f"{quote(_truncate(v))} is not a decimal number of at most 18 digits")
    raise HeaderError(header, reason, f"{quote(_truncate(v))} is not a non-negative decimal number")


def decode(headers: Iterable[HeaderInput | None] | None) -> Envelope:
    """Read the ladder headers of a consumed record. A record without a valid
    ladder-target, with a malformed time or count, or with a ladder header given
    twice raises HeaderError."""
    return _decode(_pairs(headers))


def _decode(headers: Iterable[Header], default_target: str = "") -> Envelope:
    """decode for (str, bytes) pairs; headers other than the contract's are skipped.
    default_target stands for a missing ladder-target (a record on its lane)."""
    target: str | None = None
    due: int | None = None
    scheduled: int | None = None
    hops: int | None = None
    early: int | None = None
    error: str | None = None
    for name, v in headers:
        if name not in _NAME_SET:
            continue
        if name == TARGET:
            if target is not None:
                raise _twice(name)
            target = _target(v)
        elif name == DUE:
            if due is not None:
                raise _twice(name)
            due = int(v) if 0 < len(v) <= 18 and v.isdigit() else _bad_uint(DUE, v, Reason.INVALID_DUE)
            if due < _MIN_DUE_MS:
                raise HeaderError(
                    DUE, Reason.INVALID_DUE, f"{due} is before 1973: ladder-due is unix milliseconds, not seconds"
                )
        elif name == SCHEDULED:
            if scheduled is not None:
                raise _twice(name)
            scheduled = int(v) if 0 < len(v) <= 18 and v.isdigit() else _bad_uint(SCHEDULED, v, Reason.INVALID_HEADER)
        elif name == HOPS:
            if hops is not None:
                raise _twice(name)
            hops = int(v) if 0 < len(v) <= 18 and v.isdigit() else _bad_uint(HOPS, v, Reason.INVALID_HOPS)
            if hops > _MAX_HOPS_VALUE:
                raise HeaderError(HOPS, Reason.INVALID_HOPS, f"{hops} is out of range")
        elif name == EARLY:
            if early is not None:
                raise _twice(name)
            early = int(v) if 0 < len(v) <= 18 and v.isdigit() else _bad_uint(EARLY, v, Reason.INVALID_HEADER)
            if early > _MAX_EARLY_MS:
                raise HeaderError(
                    EARLY,
                    Reason.INVALID_HEADER,
                    f"{early} ms is more than a duration holds ({_MAX_EARLY_MS} ms, about 292 years)",
                )
        else:
            if error is not None:
                raise _twice(name)
            error = v.decode("utf-8", "replace")
    if target is None:
        if not default_target:
            raise HeaderError(TARGET, Reason.MISSING_TARGET, "header is missing")
        target = _target(default_target.encode())
    return Envelope(target, due, scheduled, hops or 0, early or 0, error or "")


def _twice(name: str) -> HeaderError:
    return HeaderError(name, Reason.DUPLICATE_HEADER, "appears more than once")


def _target(v: bytes) -> str:
    if not v:
        raise HeaderError(TARGET, Reason.MISSING_TARGET, "is empty")
    t = v.decode("utf-8", "surrogateescape")
    try:
        validate_topic(t)
    except InvalidTopicError as exc:
        raise HeaderError(TARGET, Reason.INVALID_TARGET, str(exc)) from None
    if t.startswith("__"):
        raise HeaderError(TARGET, Reason.INVALID_TARGET, f"{t} is a Kafka internal topic (named __...): never a target")
    return t


def _pairs(headers: Iterable[HeaderInput | None] | None) -> list[Header]:
    """Headers as (str, bytes) pairs; those already so (what the clients give) as they are."""
    out: list[Header] = []
    for h in headers or ():
        if h is None:
            continue
        k, v = h
        if type(k) is not str or type(v) is not bytes:
            out.append((_key(k), _value(v)))
        else:
            out.append(h)  # type: ignore[arg-type]
    return out


def new_headers(
    target: str, due_ms: int | None, scheduled_ms: int, own: Iterable[HeaderInput] | None = None
) -> list[Header]:
    """The headers that schedule a message: the caller's own headers in order
    (those named like a contract header dropped), then ladder-target, ladder-due
    (omitted when due_ms is None), ladder-scheduled and ladder-hops=0."""
    return _scheduling_headers(_pairs(own), target, due_ms, scheduled_ms)


_HOPS_ZERO: Header = (HOPS, b"0")
_target_headers: dict[str, Header] = {}


def _scheduling_headers(own: Iterable[Header], target: str, due_ms: int | None, scheduled_ms: int) -> list[Header]:
    """new_headers for own headers that are (str, bytes) pairs already."""
    th = _target_headers.get(target)  # one tuple per target, built once
    if th is None:
        if len(_target_headers) >= 256:
            _target_headers.clear()
        th = _target_headers[target] = (TARGET, target.encode())
    out = [h for h in own if h[0] not in _NAME_SET]
    if due_ms is None:
        out += (th, (SCHEDULED, str(scheduled_ms).encode()), _HOPS_ZERO)
    else:
        out += (th, (DUE, str(due_ms).encode()), (SCHEDULED, str(scheduled_ms).encode()), _HOPS_ZERO)
    return out


def next_headers(headers: Sequence[HeaderInput | None], hops: int, early_ms: int = 0) -> list[Header]:
    """The headers of a record's next hop: every header in its order and byte for
    byte, except ladder-hops, which becomes hops+1, and ladder-early, which is
    replaced when early_ms > 0."""
    out = []
    for k, v in _pairs(headers):
        if k == HOPS or (k == EARLY and early_ms > 0):
            continue
        out.append((k, v))
    out.append((HOPS, str(hops + 1).encode()))
    if early_ms > 0:
        out.append((EARLY, str(early_ms).encode()))
    return out


def dead_letter_headers(headers: Sequence[HeaderInput | None], reason: str) -> list[Header]:
    """The headers of a record bound for the dead-letter topic: every header as it
    came, with ladder-error set to reason in place of any earlier one."""
    out = [(k, v) for k, v in _pairs(headers) if k != ERROR]
    out.append((ERROR, reason.encode("utf-8")))
    return out
