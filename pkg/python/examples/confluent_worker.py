"""A synchronous worker on lane LANE with kafka_ladder's confluent-kafka Worker:
handlers are plain functions, run in a thread pool.

    LADDER_BROKERS=127.0.0.1:9092 LANE=work-fast python examples/confluent_worker.py

It stops cleanly on SIGINT/SIGTERM. See _common.py for what it does."""

from __future__ import annotations

import logging
import time

from _common import BROKERS, LADDER, SESSION_TIMEOUT_MS, decide, lane
from kafka_ladder import Message, Result
from kafka_ladder.confluent import Worker


def handle(msg: Message) -> Result:
    time.sleep(0.01)  # the I/O the work would do
    return decide("confluent", msg)


def main() -> None:
    worker = Worker(
        LADDER, lane(handle), bootstrap_servers=BROKERS, consumer_config={"session.timeout.ms": SESSION_TIMEOUT_MS}
    )
    worker.run(handle_signals=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    main()
