"""What the aiokafka and confluent-kafka workers share: lane statistics, the
result of a handler that raised, and the back-off of a failed send."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .message import _DONE, _RESCHEDULE, _RETRY, Outcome, Result, retry

log = logging.getLogger("kafka_ladder")

SHUTDOWN_TIMEOUT = 15.0
"""Seconds a stopping worker or a revoked partition waits for its running handlers
and their results' acknowledgements (the Go SDK's default)."""
COMMIT_INTERVAL = 1.0
"""Seconds between commits of the finished prefixes (sarama's auto-commit interval)."""


@dataclass
class Stats:
    """One lane's running totals since the worker started."""

    lane: str
    handled: int = 0
    """Handler calls that returned (or raised)."""
    done: int = 0
    rescheduled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    """Finished messages by outcome; all but done finish when the broker acknowledged
    the record the outcome produced."""
    errors: int = 0
    """Handler calls that raised (each also counts as a retry or a dead letter)."""
    running: int = 0
    """Handlers running now."""
    in_flight: int = 0
    """Records holding a place in the lane's budget: running, or waiting for the
    acknowledgement of their result."""
    claimed: int = 0
    """Partitions claimed now."""

    def count(self, outcome: Outcome) -> None:
        if outcome is _DONE:
            self.done += 1
        elif outcome is _RESCHEDULE:
            self.rescheduled += 1
        elif outcome is _RETRY:
            self.retried += 1
        else:
            self.dead_lettered += 1


def raised(exc: Exception) -> Result:
    """The result of a handler that raised: a retry (Go: a recovered panic)."""
    return retry(f"handler raised {type(exc).__name__}: {exc}")


def send_retry_delay(attempt: int) -> float:
    """Seconds before sending a result again after the client gave up on it: 0.1s
    doubling to 10s. The cause (broker away, topic missing) is not the message's
    fault, so it is never dead-lettered for it; its offset is held meanwhile."""
    return float(min(0.1 * 2 ** min(attempt - 1, 10), 10.0))
