"""An asyncio worker on lane LANE with kafka_ladder's aiokafka Worker.

    LADDER_BROKERS=127.0.0.1:9092 LANE=work-fast python examples/aiokafka_worker.py

It stops cleanly on SIGINT/SIGTERM: running handlers finish, their results are
acknowledged, offsets are committed. See _common.py for what it does."""

from __future__ import annotations

import asyncio
import logging

from _common import BROKERS, LADDER, SESSION_TIMEOUT_MS, decide, lane
from kafka_ladder import Message, Result
from kafka_ladder.aiokafka import Worker


async def handle(msg: Message) -> Result:
    await asyncio.sleep(0.01)  # the I/O the work would do
    return decide("aiokafka", msg)


async def main() -> None:
    worker = Worker(
        LADDER, lane(handle), bootstrap_servers=BROKERS, consumer_config={"session_timeout_ms": SESSION_TIMEOUT_MS}
    )
    await worker.run(handle_signals=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(main())
