"""Tiers and routing: parse a ladder such as ``"1m,15m,1h,6h"``, name its topics,
and pick a message's next hop.

The same rules as Go's ``pkg/tier``, checked against the shared test vectors in
``pkg/tier/testdata``. Times are integer unix milliseconds and delays integer
milliseconds, as on the wire.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from ._gofmt import duration_string, parse_go_duration, quote, quote_byte, trim_space

__all__ = [
    "CONTROL_SUFFIX",
    "DEFAULT_PREFIX",
    "DEFAULT_TIERS",
    "DLQ_SUFFIX",
    "MAX_TIERS",
    "InvalidSpecError",
    "InvalidTopicError",
    "Ladder",
    "Tier",
    "label",
    "parse_delays",
    "parse_duration",
    "release_at",
    "validate_prefix",
    "validate_topic",
]

DEFAULT_TIERS = "1m,15m,1h,6h"
"""The ladder used when none is configured."""
DEFAULT_PREFIX = "delay-"
"""The topic name prefix used when none is configured."""
DLQ_SUFFIX = "dlq"
"""Appended to the prefix to name the dead-letter topic."""
CONTROL_SUFFIX = "control"
"""Appended to the prefix to name the control topic (operator commands)."""
MAX_TIERS = 16
"""The most tiers a ladder may have."""

_MS = 1_000_000  # nanoseconds
_DAY_MS = 86_400_000


class InvalidTopicError(ValueError):
    """A topic name or prefix Kafka would refuse."""


class InvalidSpecError(ValueError):
    """A tier list that cannot be parsed (Go: ``tier.ErrInvalidSpec``)."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid tier list: " + detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Tier:
    """One fixed-delay topic of the ladder."""

    delay_ms: int
    """How long every record waits in this tier, from its record timestamp."""
    topic: str
    """The Kafka topic holding the tier: prefix + label."""

    @property
    def label(self) -> str:
        """The delay in its shortest exact unit ("1s", "90s", "15m", "1h", "2d")."""
        return label(self.delay_ms)


def label(delay_ms: int) -> str:
    """Render a delay in its shortest exact unit: "2d", "6h", "15m", "90s", "500ms"."""
    for unit_ms, suffix in ((_DAY_MS, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")):
        if delay_ms % unit_ms == 0:
            return f"{delay_ms // unit_ms}{suffix}"
    raise AssertionError("unreachable: every whole millisecond count has a label")


_DAYS = re.compile(r"[+-]?[0-9]+\Z")


def _parse_duration_ns(s: str) -> int:
    if s == "":
        raise ValueError("empty delay")
    if s.endswith("d"):
        n = s[:-1]
        days = int(n) if _DAYS.match(n) else 0
        if days <= 0 or days > 10000:
            raise ValueError(f"delay {quote(s)}: want a whole number of days such as 2d")
        return days * _DAY_MS * _MS
    try:
        return parse_go_duration(s)
    except ValueError:
        raise ValueError(f"delay {quote(s)}: want a duration such as 90s, 15m, 1h or 2d") from None


def parse_duration(s: str) -> int:
    """Parse a delay, Go's duration syntax ("1h30m", "90s", "500ms") plus whole days
    ("2d"), into whole milliseconds. Raises ValueError."""
    ns = _parse_duration_ns(s)
    if ns % _MS:
        raise ValueError(f"delay {duration_string(ns)} is not a whole number of milliseconds")
    return ns // _MS


def _parse_delays_ns(spec: str) -> list[int]:
    if trim_space(spec) == "":
        raise InvalidSpecError(f"empty (want comma-separated delays such as {quote(DEFAULT_TIERS)})")
    delays = []
    for field in spec.split(","):
        try:
            delays.append(_parse_duration_ns(trim_space(field)))
        except ValueError as exc:
            raise InvalidSpecError(str(exc)) from None
    return sorted(delays)


def parse_delays(spec: str) -> list[int]:
    """Parse a comma-separated tier list into delays in milliseconds, smallest first."""
    delays = _parse_delays_ns(spec)
    for d in delays:
        if d <= 0 or d % _MS:
            raise InvalidSpecError(f"delay {duration_string(d)} must be a positive whole number of milliseconds")
    return [d // _MS for d in delays]


_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}\Z")
_valid: set[str] = set()  # names checked already: lanes are few, and checked once per record


def validate_topic(name: str) -> None:
    """Check a Kafka topic name: 1 to 249 characters from [a-zA-Z0-9._-], and
    neither "." nor "..". Raises InvalidTopicError with Go's text."""
    if name in _valid:
        return
    if _TOPIC.match(name) and name != "." and name != "..":
        if len(_valid) >= 256:
            _valid.clear()
        _valid.add(name)
        return
    raw = name.encode("utf-8", "surrogateescape")
    if not raw:
        raise InvalidTopicError("topic name is empty")
    if len(raw) > 249:
        raise InvalidTopicError(f"topic name is {len(raw)} characters, at most 249 allowed")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name {quote(raw)} is not allowed")
    for c in raw:
        if not (97 <= c <= 122 or 65 <= c <= 90 or 48 <= c <= 57 or c in (46, 95, 45)):
            raise InvalidTopicError(
                f"topic name {quote(raw)} has character {quote_byte(c)} (allowed: a-z A-Z 0-9 . _ -)"
            )


def validate_prefix(prefix: str) -> None:
    """Check that prefix can start a Kafka topic name."""
    if prefix == "":
        raise InvalidTopicError("topic prefix must not be empty")
    try:
        validate_topic(prefix + DLQ_SUFFIX)
    except InvalidTopicError as exc:
        raise InvalidTopicError(f"topic prefix {quote(prefix)}: {exc}") from None


class Ladder:
    """An ordered set of tiers, smallest delay first. Immutable and safe to share."""

    __slots__ = ("_by_name", "_control", "_delays", "_dlq", "_prefix", "_tiers")

    def __init__(self, delays_ms: list[int] | tuple[int, ...], prefix: str = DEFAULT_PREFIX) -> None:
        """Build a ladder from delays in milliseconds (any order) and a topic prefix."""
        self._init_ns([int(d) * _MS for d in delays_ms], prefix)

    def _init_ns(self, delays_ns: list[int], prefix: str) -> None:
        if not delays_ns:
            raise InvalidSpecError("no tiers")
        if len(delays_ns) > MAX_TIERS:
            raise InvalidSpecError(f"{len(delays_ns)} tiers, at most {MAX_TIERS} allowed")
        validate_prefix(prefix)
        ordered = sorted(delays_ns)
        tiers: list[Tier] = []
        for i, d in enumerate(ordered):
            if d <= 0 or d % _MS:
                raise InvalidSpecError(f"delay {duration_string(d)} must be a positive whole number of milliseconds")
            if i > 0 and ordered[i - 1] == d:
                raise InvalidSpecError(f"delay {label(d // _MS)} appears twice")
            tiers.append(Tier(d // _MS, prefix + label(d // _MS)))
        self._prefix = prefix
        self._tiers = tuple(tiers)
        self._delays = [t.delay_ms for t in tiers]
        self._by_name = {t.topic: t for t in tiers}
        self._dlq = prefix + DLQ_SUFFIX
        self._control = prefix + CONTROL_SUFFIX
        for special in (self._dlq, self._control):
            if special in self._by_name:
                raise InvalidSpecError(f"a tier topic is named like the ladder's own topic {quote(special)}")

    @classmethod
    def parse(cls, spec: str = DEFAULT_TIERS, prefix: str = DEFAULT_PREFIX) -> Ladder:
        """Parse a comma-separated tier list such as "1m,15m,1h,6h". Order does not
        matter; duplicates, non-positive and sub-millisecond delays are refused."""
        ladder = cls.__new__(cls)
        ladder._init_ns(_parse_delays_ns(spec), prefix)
        return ladder

    @property
    def prefix(self) -> str:
        """The prefix of every tier topic and of the dead-letter topic."""
        return self._prefix

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The tiers, smallest delay first."""
        return self._tiers

    @property
    def topics(self) -> list[str]:
        """The tier topic names, smallest delay first."""
        return [t.topic for t in self._tiers]

    @property
    def smallest(self) -> Tier:
        """The tier with the smallest delay: it bounds lateness."""
        return self._tiers[0]

    @property
    def largest(self) -> Tier:
        """The tier with the largest delay."""
        return self._tiers[-1]

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic: prefix + "dlq"."""
        return self._dlq

    @property
    def control_topic(self) -> str:
        """The control topic: prefix + "control"."""
        return self._control

    def internal(self, topic: str) -> bool:
        """Whether topic is one of the ladder's own topics (never a valid target)."""
        return topic in self._by_name or topic == self._dlq or topic == self._control

    def lookup(self, topic: str) -> Tier | None:
        """The tier stored in topic, or None."""
        return self._by_name.get(topic)

    def __str__(self) -> str:
        return ",".join(t.label for t in self._tiers)

    def __repr__(self) -> str:
        return f"Ladder.parse({str(self)!r}, prefix={self._prefix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ladder) and self._tiers == other._tiers

    def __hash__(self) -> int:
        return hash(self._tiers)

    def route(self, now_ms: int, due_ms: int) -> Tier | None:
        """The next hop of a message due at due_ms, seen at now_ms: None when it is
        due (deliver to its target), else the largest tier whose delay fits in the
        remaining time, or the smallest tier when even that one is larger."""
        remaining = due_ms - now_ms
        if remaining <= 0:
            return None
        i = bisect.bisect_right(self._delays, remaining)
        return self._tiers[i - 1 if i else 0]

    def hops(self, delay_ms: int) -> int:
        """How many tiers a message scheduled with delay_ms passes through when every
        forwarder releases exactly on time."""
        hops = 0
        while delay_ms > 0:
            t = self.route(0, delay_ms)
            assert t is not None
            hops += 1
            if t.delay_ms >= delay_ms:
                break
            delay_ms -= t.delay_ms
        return hops


def release_at(tier: Tier, entered_ms: int, due_ms: int | None) -> int:
    """When a record that entered tier at entered_ms (its timestamp) leaves it: the
    end of the tier delay, or its due time if that comes first."""
    end = entered_ms + tier.delay_ms
    if due_ms is not None and due_ms < end:
        return due_ms
    return end
