#!/usr/bin/env python3
"""A ladder worker in Python, with nothing but a Kafka client (confluent-kafka).

It is the example of the worker contract for languages other than Go, and the
worker of pkg/worker's interoperability test (TestPythonWorkerInterop).

The contract:
  * Consume the lane topic in a consumer group, committing offsets yourself.
  * To bring a message back later, produce it (same key, value and headers) to
    the tier the routing rule picks, with
        ladder-target     the lane to come back to
        ladder-due        when, unix milliseconds, decimal ASCII
        ladder-scheduled  now, unix milliseconds (optional, for lateness figures)
    Routing: remaining = due - now; the largest tier whose delay <= remaining,
    else the smallest tier; a message already due goes straight to the lane.
    Drop the old ladder-* headers first: the ladder sets its own.
  * To retry: the same, after a back-off, with ladder-attempt (decimal) counting
    the delivery attempts (absent = 1). After the last attempt, produce the
    record as it came to the dead-letter topic <prefix>dlq with ladder-error
    (why) and ladder-attempt (attempts made).
  * Commit a message's offset only after the broker acknowledged what it
    produced (acks=all): a crash then replays, never loses. Here: a batch is
    handled, the producer flushed, and only then the batch committed.
  * Partition with murmur2 like Kafka's Java client and ladder do, so one key
    lands on one partition whoever produced it.

This example handles a message twice: the first visit reschedules it after
--delay-ms with a header visit=1; the second prints one JSON line and is done.
A value starting with "fail" raises: it is retried, then dead-lettered.

  /usr/bin/python3 worker.py --bootstrap 127.0.0.1:9092 --lane work \
      --tiers 1m,15m,1h,6h --delay-ms 90000
"""

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_delay_ms(text):
    """'90s' -> 90000: a tier delay as ladder writes it (ms, s, m, h, d)."""
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * UNITS[unit]
    raise ValueError(f"bad tier delay {text!r}")


class Ladder:
    def __init__(self, tiers, prefix):
        delays = sorted(parse_delay_ms(t.strip()) for t in tiers.split(","))
        labels = {parse_delay_ms(t.strip()): t.strip() for t in tiers.split(",")}
        self.tiers = [(d, prefix + labels[d]) for d in delays]  # smallest first
        self.dlq = prefix + "dlq"

    def route(self, now_ms, due_ms):
        """The topic a message due at due_ms goes to now, or None if it is due."""
        remaining = due_ms - now_ms
        if remaining <= 0:
            return None
        fitting = [topic for delay, topic in self.tiers if delay <= remaining]
        return fitting[-1] if fitting else self.tiers[0][1]


def now_ms():
    return int(time.time() * 1000)


def own_headers(msg):
    """The message's own headers, without the ladder-* ones."""
    return [(k, v) for k, v in (msg.headers() or []) if not k.startswith("ladder-")]


def header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode() if v is not None else None
    return None


class Worker:
    def __init__(self, args):
        self.args = args
        self.ladder = Ladder(args.tiers, args.prefix)
        self.failed = []  # delivery errors of the current batch
        self.consumer = Consumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })
        self.producer = Producer({
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,  # implies acks=all
            "partitioner": "murmur2_random",
            "linger.ms": 5,
        })

    def delivered(self, err, _msg):
        if err is not None:
            self.failed.append(err)

    def produce(self, topic, msg, headers):
        self.producer.produce(topic, key=msg.key(), value=msg.value(), headers=headers,
                              on_delivery=self.delivered)

    def reschedule(self, msg, delay_ms, extra=(), lane=None):
        """Bring msg back to lane (default: its own) after delay_ms, through the ladder."""
        lane = lane or msg.topic()
        now = now_ms()
        due = now + delay_ms
        headers = own_headers(msg) + list(extra) + [
            ("ladder-target", lane), ("ladder-due", str(due)), ("ladder-scheduled", str(now))]
        self.produce(self.ladder.route(now, due) or lane, msg, headers)

    def retry_or_dead_letter(self, msg, error):
        attempt = int(header(msg, "ladder-attempt") or 1)
        if attempt < self.args.max_attempts:
            backoff = self.args.backoff_ms * 2 ** (attempt - 1)
            self.reschedule(msg, backoff, extra=[("ladder-attempt", str(attempt + 1))])
            return
        # As it came, with why and how many attempts; ladder-target names the lane.
        headers = [(k, v) for k, v in (msg.headers() or [])
                   if k not in ("ladder-attempt", "ladder-error", "ladder-target")]
        headers += [("ladder-target", msg.topic()), ("ladder-attempt", str(attempt)),
                    ("ladder-error", f"{attempt} attempts failed; last: {error}")]
        self.produce(self.ladder.dlq, msg, headers)
        self.emit(msg, dead_letter=str(error), attempt=attempt)

    def handle(self, msg):
        """The application's handler."""
        if (msg.value() or b"").startswith(b"fail"):
            raise RuntimeError("cannot process " + msg.value().decode())
        if header(msg, "visit") is None:
            self.reschedule(msg, self.args.delay_ms, extra=[("visit", "1")])
            return
        self.emit(msg, visit=header(msg, "visit"))

    def emit(self, msg, **fields):
        line = {
            "lane": msg.topic(),
            "key": (msg.key() or b"").decode(),
            "value": (msg.value() or b"").decode(),
            "orig": header(msg, "orig"),
            "hops": int(header(msg, "ladder-hops") or 0),
            "due": int(header(msg, "ladder-due") or 0),
            "received": now_ms(),
        }
        line.update(fields)
        print(json.dumps(line), flush=True)

    def run(self, stop):
        self.consumer.subscribe([self.args.lane])
        try:
            while not stop():
                batch = self.consumer.consume(num_messages=500, timeout=0.2)
                commit = {}
                for msg in batch:
                    if msg.error():
                        raise KafkaException(msg.error())
                    try:
                        self.handle(msg)
                    except Exception as exc:  # the handler failed: retry through the ladder
                        self.retry_or_dead_letter(msg, exc)
                    commit[(msg.topic(), msg.partition())] = msg.offset() + 1
                if not commit:
                    continue
                # Everything the batch produced must be acknowledged before its offsets are committed.
                self.producer.flush()
                if self.failed:
                    raise KafkaException(self.failed[0])
                self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in commit.items()],
                                     asynchronous=False)
        finally:
            self.consumer.close()
            self.producer.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--lane", default="work")
    p.add_argument("--group", default="workers-python")
    p.add_argument("--tiers", default="1m,15m,1h,6h")
    p.add_argument("--prefix", default="delay-")
    p.add_argument("--delay-ms", type=int, default=90_000)
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--backoff-ms", type=int, default=10_000)
    args = p.parse_args()

    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    Worker(args).run(lambda: bool(stopping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
