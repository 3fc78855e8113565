"""What the three example workers share: configuration from the environment (the
same LADDER_* variables as the Go binary) and the example's handler logic.

Each example handles a message RESCHEDULES+1 times: every visit but the last
reschedules it DELAY seconds later with a header visit=N; the last is done. A value
starting with "fail" raises: it is retried after RETRY_BACKOFF seconds, then
dead-lettered after MAX_ATTEMPTS attempts. Every visit prints one JSON line."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import TypeVar

from kafka_ladder import Ladder, Lane, Message, Result, done, reschedule

BROKERS = os.environ.get("LADDER_BROKERS", "127.0.0.1:9092")
LADDER = Ladder.parse(
    os.environ.get("LADDER_TIERS", "1m,15m,1h,6h"),
    os.environ.get("LADDER_TOPIC_PREFIX", "delay-"),
)
LANE = os.environ.get("LANE", "work-fast")
GROUP = os.environ.get("GROUP", "workers-" + LANE)
DELAY = float(os.environ.get("DELAY", "90"))
RESCHEDULES = int(os.environ.get("RESCHEDULES", "2"))
MAX_ATTEMPTS = int(os.environ.get("MAX_ATTEMPTS", "3"))
RETRY_BACKOFF = float(os.environ.get("RETRY_BACKOFF", "10"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))
SESSION_TIMEOUT_MS = int(os.environ.get("SESSION_TIMEOUT_MS", "10000"))


def visit(msg: Message) -> int:
    """How many times the message was rescheduled so far (its visit header)."""
    v = msg.header("visit")
    return int(v) if v else 0


def emit(worker: str, msg: Message, outcome: str) -> None:
    """One JSON line per visit, for people and for the tests."""
    line = {
        "worker": worker,
        "lane": msg.topic,
        "key": (msg.key or b"").decode(),
        "value": (msg.value or b"").decode(),
        "visit": visit(msg),
        "attempt": msg.attempt,
        "hops": msg.envelope.hops,
        "due": msg.envelope.due_ms or 0,
        "early": msg.envelope.early_ms,
        "received": time.time_ns() // 1_000_000,
        "outcome": outcome,
        "pid": os.getpid(),
    }
    out = sys.__stdout__ or sys.stdout  # the real stdout: Faust's worker redirects sys.stdout to its log
    with _lock:
        out.write(json.dumps(line) + "\n")
        out.flush()


_lock = threading.Lock()  # the confluent worker's handlers run in threads


def decide(worker: str, msg: Message) -> Result:
    """The example's handler logic, the same in every client."""
    if (msg.value or b"").startswith(b"fail"):
        emit(worker, msg, "raise")
        raise RuntimeError("cannot process " + (msg.value or b"").decode())
    n = visit(msg)
    if n < RESCHEDULES:
        emit(worker, msg, "reschedule")
        own = [(k, v) for k, v in msg.headers if k != "visit"]
        return reschedule(DELAY).with_headers([*own, ("visit", str(n + 1).encode())])
    emit(worker, msg, "done")
    return done()


H = TypeVar("H")


def lane(handler: H) -> Lane[H]:
    """The example's lane, configured from the environment."""
    return Lane(
        [LANE],
        handler,
        group=GROUP,
        concurrency=CONCURRENCY,
        max_attempts=MAX_ATTEMPTS,
        backoff=lambda attempt: RETRY_BACKOFF,
    )
