"""The Faust (faust-streaming) adapter: a helper an agent awaits to reschedule,
retry or dead-letter the event it is processing. Install with the [faust] extra.

Each call sends with the app's own producer and returns only once the broker
acknowledged the record, so the agent moves on, and Faust acknowledges and later
commits the event's offset, only after what the event produced is safe::

    ladder = FaustLadder(app, "1m,15m,1h,6h")

    @app.agent(app.topic("work-fast", value_serializer="raw"))
    async def check(stream):
        async for event in stream.events():
            if await still_pending(event.value):
                await ladder.reschedule(event, delay=300)

The event's raw key, value and headers pass through byte for byte, whatever the
topic's codecs: the ladder never decodes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

try:
    import faust
    from faust.types import EventT as _EventT
except ImportError as exc:  # pragma: no cover
    raise ImportError(f"kafka_ladder.faust needs the [faust] extra: pip install 'kafka-ladder[faust]' ({exc})") from exc

from .envelope import HeaderInput
from .message import (
    DEFAULT_MAX_ATTEMPTS,
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
from .schedule import Delay, Record, When, due_ms, now_ms, schedule_record
from .tier import DEFAULT_PREFIX, DEFAULT_TIERS, Ladder

__all__ = ["Event", "FaustLadder", "message"]

Event = _EventT[Any]
"""A Faust event, whatever its value type."""


def message(event: Event) -> Message:
    """Decode the raw record of a Faust event for a handler."""
    m = event.message
    hs = m.headers
    headers: list[tuple[str, bytes]] | None = list(hs.items()) if isinstance(hs, Mapping) else hs
    ts = m.timestamp
    return Message.from_record(
        m.topic,
        m.partition,
        m.offset,
        m.key,
        m.value,
        round(ts * 1000) if ts is not None else 0,
        headers,
    )


class FaustLadder:
    """Reschedule, retry and dead-letter Faust events through the ladder with the
    app's producer, awaiting the broker's acknowledgement.

    Every method takes the event to act on; without one it acts on
    ``faust.current_event()``, the event the calling agent is processing."""

    def __init__(
        self,
        app: faust.App,
        ladder: Ladder | str = DEFAULT_TIERS,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Callable[[int], float] = default_backoff,
    ) -> None:
        """ladder: a Ladder, or a tier list such as "1m,15m,1h,6h" with prefix.
        max_attempts and backoff are those of retry()."""
        self.app = app
        self.ladder = ladder if isinstance(ladder, Ladder) else Ladder.parse(ladder, prefix)
        self.max_attempts = max_attempts
        self.backoff = backoff

    def message(self, event: Event | None = None) -> Message:
        """The event as a kafka_ladder Message: envelope (due, hops, early), attempt,
        own headers."""
        return message(_event(event))

    async def send(self, record: Record) -> Any:
        """Produce record with the app's producer and wait for the acknowledgement;
        returns the producer's RecordMetadata."""
        producer = await self.app.maybe_start_producer()
        return await producer.send_and_wait(
            record.topic,
            record.key,
            record.value,
            partition=None,
            # Faust takes seconds and truncates timestamp * 1000: half a millisecond
            # more keeps the exact millisecond through the float.
            timestamp=(record.timestamp_ms + 0.5) / 1000,
            headers=list(record.headers),
        )

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
        """Bring a new message to target after delay (seconds or timedelta) or at
        ``at``, through the ladder. Returns the record sent, once acknowledged."""
        rec = schedule_record(self.ladder, target, key, value, headers, due_ms(delay=delay, at=at), now_ms())
        await self.send(rec)
        return rec

    async def apply(self, result: Result | None, event: Event | None = None) -> Plan:
        """Carry out a Result (reschedule, retry, dead_letter, done) for event."""
        p = plan(
            self.ladder,
            self.message(event),
            result,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
        )
        if p.record is not None:
            await self.send(p.record)
        return p

    async def reschedule(
        self,
        event: Event | None = None,
        *,
        delay: Delay | None = None,
        at: When | None = None,
        lane: str = "",
        value: bytes | _Unset | None = _Unset.UNSET,
        headers: Iterable[HeaderInput] | None = None,
    ) -> Plan:
        """Bring the event back to its topic (or ``lane``) after delay or at ``at``,
        with its key, value and own headers unless given."""
        return await self.apply(_reschedule_result(delay, at, lane, value, headers), event)

    async def retry(
        self,
        event: Event | None = None,
        error: BaseException | str | None = None,
        *,
        backoff: Delay | None = None,
    ) -> Plan:
        """Bring the event back after the back-off of its attempt with ladder-attempt
        incremented; after max_attempts attempts, dead-letter it with the attempts
        made. The returned Plan's outcome says which."""
        return await self.apply(_retry_result(error, backoff), event)

    async def dead_letter(self, event: Event | None = None, reason: str = "dead-lettered by the application") -> Plan:
        """Send the event to the dead-letter topic with reason as ladder-error."""
        return await self.apply(_dead_letter(reason), event)


def _event(event: Event | None) -> Event:
    if event is not None:
        return event
    current = faust.current_event()
    if current is None:
        raise RuntimeError("no event given and no current event: call from an agent, or pass the event")
    return current
