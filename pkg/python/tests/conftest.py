"""Brokers for the tests: by default `ladder dev` (the embedded broker and the Go
forwarders, built from this repository) on free ports; with LADDER_TEST_KAFKA=real,
an already running Apache Kafka at LADDER_TEST_BROKERS, where the tests create
their topics (with a prefix of their own) and run `ladder run` beside it."""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kafka_ladder import Ladder

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TIERS = "1s,3s"
"""Short tiers: a 2 s reschedule takes two hops through delay-1s."""
KINDS = ("aiokafka", "confluent", "faust")
"""The example workers under test, one lane each."""
LANES = (*KINDS, "scheduler", "inproc", "ordered")
"""Every lane the tests use."""
SESSION_TIMEOUT_MS = 6000  # the embedded broker's minimum: a killed worker's partitions move on after it


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str] | str) -> None:
    """Wait until cond() holds, or fail after timeout seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for: {what() if callable(what) else what}")
        time.sleep(0.05)


class Proc:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.args = args
        self.p = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            text=True,
            start_new_session=True,  # a Ctrl-C of pytest reaches it only through stop()
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.p.stdout, self.out, True), daemon=True),
            threading.Thread(target=self._read, args=(self.p.stderr, self.err, False), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: Any, sink: list[str], stdout: bool) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if stdout:
                self.lines.put(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process and wait for it; kill it if it outlives timeout."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                pytest.fail(f"{self.args[:3]} did not stop within {timeout:.0f}s of signal {sig}")
        for t in self._readers:
            t.join(5)
        return self.p.returncode

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.err[-n:])


@dataclass
class Cluster:
    """Where the tests run: bootstrap address, ladder and lane topics."""

    bootstrap: str
    ladder: Ladder
    lanes: dict[str, str]
    """Worker kind -> its lane topic."""
    kind: str
    """"dev" (ladder dev) or "real" (Apache Kafka and ladder run)."""
    procs: list[Proc] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "LADDER_BROKERS": self.bootstrap,
            "LADDER_TIERS": str(self.ladder),
            "LADDER_TOPIC_PREFIX": self.ladder.prefix,
        }


def _ladder_binary(tmp: Path) -> str:
    given = os.environ.get("LADDER_BIN")
    if given:
        return given
    go = shutil.which("go")
    if go is None:
        pytest.skip("no go toolchain to build ladder (set LADDER_BIN to a built binary)")
    out = tmp / "ladder"
    subprocess.run([go, "build", "-o", str(out), "./cmd/ladder"], cwd=REPO, check=True)
    return str(out)


def _wait_log(p: Proc, needle: str, timeout: float) -> None:
    wait_for(
        lambda: any(needle in line for line in p.err) or p.p.poll() is not None,
        timeout,
        lambda: f"{needle!r} in the log of {p.args[:2]}:\n{p.tail()}",
    )
    if p.p.poll() is not None:
        pytest.fail(f"{p.args[:2]} exited with {p.p.returncode}:\n{p.tail()}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """ladder dev on free ports, or real Kafka with ladder run (LADDER_TEST_KAFKA=real)."""
    tmp = Path(tempfile.mkdtemp(prefix="kafka-ladder-test-"))
    binary = _ladder_binary(tmp)
    mode = os.environ.get("LADDER_TEST_KAFKA", "")
    run_id = secrets.token_hex(3)
    if mode == "real":
        bootstrap = os.environ.get("LADDER_TEST_BROKERS", "")
        if not bootstrap:
            pytest.fail("LADDER_TEST_KAFKA=real needs LADDER_TEST_BROKERS (host:port of the running Kafka)")
        ladder = Ladder.parse(TIERS, f"pyt-{run_id}-delay-")
        lanes = {k: f"pyt-{run_id}-lane-{k}" for k in LANES}
        _create_topics(bootstrap, ladder, list(lanes.values()))
        args = [binary, "run", "--brokers", bootstrap, "--tiers", TIERS, "--topic-prefix", ladder.prefix]
        args += ["--group", f"pyt-{run_id}-ladder", "--http-addr", "", "--log-format", "json"]
        c = Cluster(bootstrap, ladder, lanes, "real")
        fwd = Proc(args)
        c.procs.append(fwd)
        _wait_log(fwd, "partitions assigned", 60)
    else:
        ladder = Ladder.parse(TIERS)
        lanes = {k: f"lane-{k}" for k in LANES}
        args = [binary, "dev", "--addr", "127.0.0.1:0", "--http-addr", "", "--data-dir", str(tmp / "data")]
        args += ["--tiers", TIERS, "--topics", ",".join(lanes.values()), "--partitions", "3"]
        args += ["--workahead=false", "--log-format", "json"]
        dev = Proc(args)
        wait_for(lambda: bool(dev.out) or dev.p.poll() is not None, 60, lambda: "ladder dev's banner:\n" + dev.tail())
        banner = dev.out[0]
        if "broker on " not in banner:
            pytest.fail(f"unexpected banner {banner!r}:\n{dev.tail()}")
        bootstrap = banner.split("broker on ")[1].split()[0]
        c = Cluster(bootstrap, ladder, lanes, "dev", [dev])
        _wait_log(dev, "partitions assigned", 60)
    try:
        yield c
    finally:
        for p in reversed(c.procs):
            p.stop(signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


def _create_topics(bootstrap: str, ladder: Ladder, lanes: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(t, num_partitions=3) for t in [*ladder.topics, ladder.dlq_topic, *lanes]]
    topics.append(NewTopic(ladder.control_topic, num_partitions=1))
    for name, fut in admin.create_topics(topics, operation_timeout=30).items():
        try:
            fut.result(60)
        except Exception as exc:
            raise RuntimeError(f"creating topic {name}: {exc}") from exc


@dataclass
class Visit:
    """One JSON line of an example worker."""

    worker: str
    lane: str
    key: str
    value: str
    visit: int
    attempt: int
    hops: int
    due: int
    early: int
    received: int
    outcome: str
    pid: int


class WorkerRun:
    """An example worker (examples/<kind>_worker.py or faust_app.py), restartable,
    and every visit line it printed."""

    def __init__(self, cluster: Cluster, kind: str, group: str) -> None:
        self.cluster = cluster
        self.kind = kind
        self.group = group
        self.visits: list[Visit] = []
        self.procs: list[Proc] = []
        self._lock = threading.Lock()

    def start(self) -> Proc:
        script = {"aiokafka": "aiokafka_worker.py", "confluent": "confluent_worker.py", "faust": "faust_app.py"}
        args = [sys.executable, str(EXAMPLES / script[self.kind])]
        if self.kind == "faust":
            args += ["worker", "-l", "info", "--without-web"]
        env = {
            **self.cluster.env(),
            "LANE": self.cluster.lanes[self.kind],
            "GROUP": self.group,
            "DELAY": "2",
            "RESCHEDULES": "2",
            "MAX_ATTEMPTS": "3",
            "RETRY_BACKOFF": "1",
            "CONCURRENCY": "16",
            "SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "FAUST_DATADIR": tempfile.mkdtemp(prefix="faust-"),
            "PYTHONUNBUFFERED": "1",
        }
        p = Proc(args, env=env, cwd=EXAMPLES)
        self.procs.append(p)
        threading.Thread(target=self._collect, args=(p,), daemon=True).start()
        return p

    def _collect(self, p: Proc) -> None:
        while True:
            try:
                line = p.lines.get(timeout=0.5)
            except queue.Empty:
                if p.p.poll() is not None and p.lines.empty():
                    return
                continue
            if not line.startswith("{"):
                continue
            v = Visit(**json.loads(line))
            with self._lock:
                self.visits.append(v)

    def snapshot(self) -> list[Visit]:
        with self._lock:
            return list(self.visits)

    def stop_all(self) -> None:
        for p in self.procs:
            p.stop(signal.SIGKILL if p.p.poll() is None else signal.SIGTERM)

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.args[1]} (pid {p.p.pid}) stderr:\n{p.tail(60)}" for p in self.procs)
