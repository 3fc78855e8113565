"""The state of one claimed lane partition, without I/O: which records may start,
which wait behind an earlier record of their key, and which offset may be
committed. The aiokafka and confluent-kafka workers drive it; it is the Go SDK's
claim and window (pkg/worker) in Python.

A record is finished when its handler returned done, or when the record its
result produced was acknowledged. Offsets become committable only as a contiguous
finished prefix: a record that finishes before an earlier one waits for it, so a
crash replays, never skips."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

WINDOW_PER_CONCURRENCY = 16
"""x Lane.concurrency: the most records a partition holds taken and not committed."""


class Entry(Generic[T]):
    """One record taken from a partition, until it is finished."""

    __slots__ = ("finished", "item", "key", "offset")

    def __init__(self, item: T | None, offset: int, key: bytes | None) -> None:
        self.item = item
        self.offset = offset
        self.key = key
        self.finished = False


class PartitionFlow(Generic[T]):
    """Records of one partition from taken to committable."""

    def __init__(self, concurrency: int, key_ordered: bool) -> None:
        self.concurrency = concurrency
        self.key_ordered = key_ordered
        self.ready: deque[Entry[T]] = deque()
        """Records to start, in order, as places in the lane's budget free up."""
        self.waiting = 0
        """Records waiting behind an earlier one of their key (no place in the budget)."""
        self.stopping = False
        self._window: deque[Entry[T]] = deque()
        self._keys: dict[bytes, deque[Entry[T]]] = {}

    def __len__(self) -> int:
        """Records taken and not committable yet."""
        return len(self._window)

    def has_room(self) -> bool:
        """Whether the partition may take another record: fewer than concurrency wait
        behind their key, and fewer than 16 x concurrency are uncommitted."""
        return self.waiting < self.concurrency and len(self._window) < WINDOW_PER_CONCURRENCY * self.concurrency

    def take(self, item: T, offset: int, key: bytes | None) -> Entry[T]:
        """Add a record; it is ready unless an earlier record of its key is running
        or ready, in which case it waits behind it."""
        e = Entry(item, offset, key)
        self._window.append(e)
        if self.key_ordered and key is not None:
            q = self._keys.get(key)
            if q is not None:
                q.append(e)
                self.waiting += 1
                return e
            self._keys[key] = deque((e,))
        self.ready.append(e)
        return e

    def handled(self, e: Entry[T]) -> None:
        """e's handler returned: the next record of its key becomes ready (not once
        the partition is stopping: it is left for the next owner)."""
        if not self.key_ordered or e.key is None:
            return
        q = self._keys.get(e.key)
        if q is None:
            return
        if q and q[0] is e:
            q.popleft()
        if not q:
            del self._keys[e.key]
            return
        self.waiting -= 1
        if not self.stopping:
            self.ready.append(q[0])

    def finish(self, e: Entry[T]) -> int | None:
        """Mark e finished; return the offset to commit (after the last record of the
        finished prefix) when the prefix advanced, else None."""
        if e.finished:
            return None
        e.finished = True
        e.item = None  # a finished record keeps only its offset
        commit = None
        w = self._window
        while w and w[0].finished:
            commit = w.popleft().offset + 1
        return commit

    def stop(self) -> None:
        """Start nothing more: the records not started are left for the next owner."""
        self.stopping = True
        self.ready.clear()
