"""A Faust app whose agent handles lane LANE (default work-fast) and reschedules
through the ladder with kafka_ladder's FaustLadder.

    LADDER_BROKERS=127.0.0.1:9092 python examples/faust_app.py worker -l info

Every await on the ladder returns once the broker acknowledged the record, so
Faust commits an event's offset only after what it produced is safe. See
_common.py for what it does."""

from __future__ import annotations

import os
import sys

import faust

from _common import BROKERS, GROUP, LADDER, LANE, MAX_ATTEMPTS, RETRY_BACKOFF, SESSION_TIMEOUT_MS, decide
from kafka_ladder.faust import Event, FaustLadder

app = faust.App(
    GROUP,  # the app id is the consumer group
    broker=["kafka://" + b for b in BROKERS.split(",")],
    value_serializer="raw",
    web_enabled=False,
    broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
    topic_allow_declare=False,  # the lanes are provisioned with the ladder
    topic_disable_leader=True,
    datadir=os.environ.get("FAUST_DATADIR", "/tmp/faust-" + GROUP),
)
ladder = FaustLadder(app, LADDER, max_attempts=MAX_ATTEMPTS, backoff=lambda attempt: RETRY_BACKOFF)
lane = app.topic(LANE, value_serializer="raw")


@app.agent(lane, concurrency=int(os.environ.get("CONCURRENCY", "8")))
async def work(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        await handle(event)


async def handle(event: Event) -> None:
    try:
        result = decide("faust", ladder.message(event))
    except Exception as exc:
        await ladder.retry(event, exc)  # back after the back-off; dead-lettered after max_attempts
        return
    await ladder.apply(result, event)  # returns once acknowledged


if __name__ == "__main__":
    sys.argv[1:] = sys.argv[1:] or ["worker", "-l", "info", "--without-web"]
    app.main()
