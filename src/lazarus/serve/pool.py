"""The server's warm models: one handle per model and settings, a lock each (one computation
per model at a time; the others queue), and least-recently-used eviction once the weights held
pass the memory cap: before a model loads, room is made for its weights as its files announce
them (`Handle._expected_weight_bytes`), and after each computation they are measured from its
parameters."""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

Key = tuple[Any, ...]  # the model's source and how it is run (device, dtype, ...)


@dataclass
class Entry:
    key: Key
    handle: Any = None  # a lazarus.Model, made by the first request (whole: every block)
    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes: int = 0  # of its parameters: expected before a load, measured after computing
    last_used: float = field(default_factory=time.time)
    requests: int = 0
    name: str = ""  # the model as the last request named it
    identity: Any = None  # its files on disk when loaded (`engine.cache.model_identity`)
    load_said: list = field(default_factory=list)  # what its load said, said again later


class Pool:
    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, Entry] = OrderedDict()  # least recently used first
        self._guard = threading.Lock()

    def entry(self, key: Key) -> Entry:
        """The entry of `key` (a new, empty one the first time), now the most recently used."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = Entry(key)
            self._entries.move_to_end(key)
            entry.last_used = time.time()
            return entry

    def drop(self, entry: Entry) -> None:
        """Forget `entry` (its model could not be made)."""
        with self._guard:
            if self._entries.get(entry.key) is entry:
                del self._entries[entry.key]

    def measure(self, entry: Entry) -> None:
        entry.bytes = entry.handle.weight_bytes() if entry.handle is not None else 0
        entry.last_used = time.time()

    def make_room(self, entry: Entry, needed: int) -> list[Entry]:
        """Before `entry` loads weights of about `needed` bytes: count them as held by it
        already (so that no other request counts without them), and drop the least recently
        used idle models until everything fits under the cap; the ones dropped."""
        with self._guard:
            entry.bytes = needed
        return self.evict(keep=entry)

    def evict(self, keep: Entry) -> list[Entry]:
        """Drop the least recently used idle models, other than `keep`, until the weights held
        fit under the cap; the ones dropped. A model computing right now is never dropped, and
        one model alone over the cap stays (nothing could be computed otherwise)."""
        dropped = []
        with self._guard:
            for entry in list(self._entries.values()):
                if self.max_bytes is None or self.total_bytes() <= self.max_bytes:
                    break
                if entry is keep or not entry.lock.acquire(blocking=False):
                    continue
                try:
                    del self._entries[entry.key]
                    entry.handle, entry.bytes = None, 0
                    dropped.append(entry)
                finally:
                    entry.lock.release()
        if dropped:
            gc.collect()  # the weights go now, before new ones come
        return dropped

    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self._entries.values())

    def entries(self) -> list[Entry]:
        with self._guard:
            return list(self._entries.values())
