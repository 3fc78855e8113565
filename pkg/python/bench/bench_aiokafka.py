"""Rescheduling throughput of kafka_ladder's aiokafka adapter against a raw aiokafka
producer sending the same records, in one run.

Both phases take the same N consumed records and send one record each to the
ladder, awaiting every acknowledgement, through one AIOKafkaProducer (acks=all,
idempotent) with the same settings and the same number in flight:

* adapter: Scheduler.apply(record, reschedule(90)) per consumed record (decode the
  record's headers, route, build the ladder headers, send, await the ack);
* raw: producer.send() of the records the adapter would produce, built
  beforehand, and await the ack.

The ratio adapter/raw is the adapter's cost. Rounds alternate which phase goes
first; the reported ratio is the median of the rounds' paired ratios. The consumed
records carry a header of their own; with --forwarded also the ladder headers a
forwarder delivers (target, due, scheduled, hops), which the adapter decodes and
validates (the records sent are the same either way).

    python bench/bench_aiokafka.py                      # starts ladder dev (builds it)
    python bench/bench_aiokafka.py --bootstrap HOST:PORT  # an existing broker with the ladder's topics
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kafka_ladder import Ladder, plan, reschedule
from kafka_ladder.aiokafka import Scheduler, message

REPO = Path(__file__).resolve().parents[3]
LANE = "bench-lane"


def start_dev(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    binary = os.environ.get("LADDER_BIN") or str(tmp / "ladder")
    if not os.environ.get("LADDER_BIN"):
        subprocess.run([shutil.which("go") or "go", "build", "-o", binary, "./cmd/ladder"], cwd=REPO, check=True)
    args = [binary, "dev", "--addr", "127.0.0.1:0", "--http-addr", "", "--data-dir", str(tmp / "data")]
    args += ["--forwarders=false", "--topics", LANE, "--partitions", "6", "--log-level", "warn"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    banner = p.stdout.readline()
    if "broker on " not in banner:
        p.kill()
        raise SystemExit(f"ladder dev did not start: {banner!r}")
    return p, banner.split("broker on ")[1].split()[0]


async def bounded(n: int, in_flight: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Run one(i) for i in range(n), at most in_flight at once; return the seconds taken."""
    sem = asyncio.Semaphore(in_flight)

    async def run(i: int) -> None:
        try:
            await one(i)
        finally:
            sem.release()

    t0 = time.perf_counter()
    tasks = []
    for i in range(n):
        await sem.acquire()
        tasks.append(asyncio.create_task(run(i)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


async def main(args: argparse.Namespace) -> dict[str, Any]:
    ladder = Ladder.parse(args.tiers)
    load_start = os.getloadavg()
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=args.linger_ms,
        max_batch_size=args.batch_bytes,
        max_request_size=max(args.batch_bytes, 1 << 20),
    )
    await producer.start()
    try:
        # Seed the lane and consume it back: the records a worker would reschedule.
        value = os.urandom(args.value_size // 2).hex().encode()[: args.value_size]
        came = b"%d" % (time.time_ns() // 1_000_000)  # --forwarded: due now, scheduled 15 minutes before
        ladder_headers = [
            ("ladder-target", LANE.encode()),
            ("ladder-due", came),
            ("ladder-scheduled", b"%d" % (int(came) - 900_000)),
            ("ladder-hops", b"2"),
        ]
        seeds = [
            asyncio.ensure_future(
                await producer.send(
                    LANE,
                    value,
                    key=b"key-%d" % i,
                    headers=[("trace-id", b"%016d" % i), *(ladder_headers if args.forwarded else [])],
                )
            )
            for i in range(args.records)
        ]
        await asyncio.gather(*seeds)
        consumer = AIOKafkaConsumer(LANE, bootstrap_servers=args.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        consumed: list[Any] = []
        try:
            while len(consumed) < args.records:
                for recs in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                    consumed += recs
        finally:
            await consumer.stop()
        consumed = consumed[: args.records]

        scheduler = Scheduler(producer, ladder)
        result = reschedule(args.delay)
        # What the adapter sends, built beforehand for the raw phase (same topics,
        # keys, values and headers; timestamps of the moment they were built).
        prebuilt = [plan(ladder, message(r), result).record for r in consumed]
        # The consumed and prebuilt records (hundreds of thousands of objects a worker
        # never holds at once) out of the garbage collector's sight: otherwise every
        # full collection walks them, charging each phase for the bench's own heap in
        # proportion to what the phase allocates, and the ratio depends on --records.
        gc.collect()
        gc.freeze()

        async def adapter(i: int) -> None:
            await scheduler.apply(consumed[i], result)

        async def raw(i: int) -> None:
            rec = prebuilt[i]
            assert rec is not None
            fut = await producer.send(
                rec.topic, rec.value, key=rec.key, headers=rec.headers, timestamp_ms=rec.timestamp_ms
            )
            await fut

        phases = {"adapter": adapter, "raw": raw}
        await bounded(min(args.records, 5000), args.in_flight, raw)  # warm up connections and batches
        rounds = []
        for r in range(args.rounds):
            order = ["raw", "adapter"] if r % 2 == 0 else ["adapter", "raw"]
            secs = {name: await bounded(args.records, args.in_flight, phases[name]) for name in order}
            rates = {name: args.records / s for name, s in secs.items()}
            rounds.append(
                {**{f"{k}_rate": round(v) for k, v in rates.items()}, "ratio": rates["adapter"] / rates["raw"]}
            )
            print(
                f"round {r + 1}: raw {rates['raw']:,.0f} rec/s, adapter {rates['adapter']:,.0f} rec/s, "
                f"ratio {rates['adapter'] / rates['raw']:.3f}",
                file=sys.stderr,
            )
    finally:
        await producer.stop()
    return {
        "records": args.records,
        "rounds": rounds,
        "ratio_median": round(statistics.median(r["ratio"] for r in rounds), 3),
        "raw_rate_median": round(statistics.median(r["raw_rate"] for r in rounds)),
        "adapter_rate_median": round(statistics.median(r["adapter_rate"] for r in rounds)),
        "value_size": args.value_size,
        "in_flight": args.in_flight,
        "batch_bytes": args.batch_bytes,
        "linger_ms": args.linger_ms,
        "forwarded": args.forwarded,
        "load_start": load_start,
        "load": os.getloadavg(),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", help="an existing broker (default: start ladder dev)")
    ap.add_argument("--tiers", default="1m,15m,1h,6h")
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--delay", type=float, default=90.0)
    ap.add_argument("--in-flight", type=int, default=4096)
    ap.add_argument("--batch-bytes", type=int, default=1 << 20, help="producer max_batch_size (1 MiB by default)")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument(
        "--forwarded",
        action="store_true",
        help="consumed records carry the ladder headers a forwarder delivers (the adapter decodes them)",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    dev = None
    tmp = Path(tempfile.mkdtemp(prefix="kafka-ladder-bench-"))
    try:
        if not a.bootstrap:
            dev, a.bootstrap = start_dev(tmp)
        out = asyncio.run(main(a))
    finally:
        if dev is not None:
            dev.terminate()
            dev.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(out))
    else:
        print(
            f"aiokafka adapter rescheduling: {out['adapter_rate_median']:,} rec/s; raw aiokafka producer, "
            f"same records: {out['raw_rate_median']:,} rec/s; ratio (median of {len(out['rounds'])} paired rounds) "
            f"{out['ratio_median']:.3f}; load {out['load_start'][0]:.2f} -> {out['load'][0]:.2f}"
        )
