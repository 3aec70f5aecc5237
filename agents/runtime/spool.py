"""The disk spool every agent uses: batches acknowledged only once they are durable, then
claimed, retried, dead-lettered or completed.

Layout: one file per batch, ``<dir>/batches/<seq>.batch`` (fixed header, JSON metadata, body),
plus an optional sidecar ``<seq>.state`` (JSON) once the batch has been retried or dead-lettered.
One file per batch keeps every state change a rename, unlink or tiny sidecar write; segment
files would need compaction and per-record liveness tracking, and DLQ eviction would not free
disk until a whole segment died.

Group commit: ``append`` queues the batch and awaits a future. One flusher task hands every
pending batch to a dedicated I/O thread, which writes each file and then makes the whole group
durable with a single ``syncfs(2)`` on the spool's filesystem (file data, inodes and directory
entries together); then every future of the group resolves. Appends arriving while a group is
being synced form the next group, so a burst of N concurrent appends costs a handful of syncs,
not N. Where ``syncfs`` is missing (not Linux) each file and the directory are fsynced instead.

No temporary name is needed: the header records the metadata and body lengths, so a batch cut
short by a crash has the wrong size and is removed on open. Such a batch was never acknowledged,
because acknowledgement waits for the sync.

State changes (complete, retry, dead-letter) are not synced: a crash may undo the last few, which
only means a batch is delivered again or its retry count restarts. Batch ids are unique, so the
next hop can drop duplicates. Claims live in memory only: after a restart every claimed batch is
ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import json
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from agents.runtime.health import Component

__all__ = [
    "Batch",
    "BatchMeta",
    "BatchState",
    "CorruptBatchError",
    "Spool",
    "SpoolClosedError",
    "SpoolError",
    "SpoolFull",
    "SpoolStats",
    "StateStats",
]

_MAGIC = b"FSP1"
# magic, metadata length, body crc32, body length
_HEADER = struct.Struct("<4sIIQ")
_SUFFIX = ".batch"
_STATE_SUFFIX = ".state"


class SpoolError(Exception):
    """Base class of the spool's errors."""


class SpoolFull(SpoolError):  # the name the brief and the callers use (not ...Error)
    """Raised by ``append`` when queued and retrying batches would exceed ``max_bytes``."""


class SpoolClosedError(SpoolError):
    """Raised when the spool is used after ``close``."""


class CorruptBatchError(SpoolError):
    """Raised by ``read`` when a batch's body no longer matches its checksum."""


class BatchState(StrEnum):
    QUEUE = "queue"
    RETRY = "retry"
    DLQ = "dlq"


@dataclass(frozen=True)
class BatchMeta:
    """What the caller knows about a batch; stored with it."""

    tenant: str
    dataset: str
    data_hint: str = ""
    """Free-form hint of the data's shape (``syslog``, ``json``...), part of object keys."""
    content_encoding: str = ""
    """Encoding of the body as spooled (``gzip``, ``zstd`` or empty); bodies are never decoded here."""
    records: int = 0
    """Number of records in the body, if known."""
    original_bytes: int = 0
    """Size of the records before compression, if known."""
    created_at: float = 0.0
    """Unix seconds; 0 means "now" at ``append``."""
    batch_id: str = ""
    """The sender's id of the batch (e.g. ``X-Floe-Batch-Id``), so the next hop can name it
    idempotently; empty when there is none. Not the spool's own id (``Batch.id``)."""


@dataclass(frozen=True)
class Batch:
    """A snapshot of one spooled batch. Pass it back to ``complete``/``retry``/``dead_letter``."""

    id: str
    meta: BatchMeta
    size: int
    """Body size in bytes."""
    state: BatchState
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    dlq_reason: str = ""
    dlq_at: float = 0.0


@dataclass
class StateStats:
    count: int = 0
    bytes: int = 0


@dataclass
class SpoolStats:
    """Counts and bytes per state (and per tenant/dataset), plus lifetime counters."""

    states: dict[BatchState, StateStats]
    by_dataset: dict[tuple[str, str], dict[BatchState, StateStats]]
    claimed: int
    appended: int
    appended_bytes: int
    syncs: int
    evicted: int
    evicted_bytes: int
    expired: int


@dataclass
class _Entry:
    seq: int
    meta: BatchMeta
    size: int
    state: BatchState = BatchState.QUEUE
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""
    dlq_reason: str = ""
    dlq_at: float = 0.0
    claimed: bool = False
    # Bumped on every transition so stale heap items are skipped.
    version: int = 0

    def snapshot(self) -> Batch:
        return Batch(
            id=_batch_id(self.seq),
            meta=self.meta,
            size=self.size,
            state=self.state,
            attempts=self.attempts,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            dlq_reason=self.dlq_reason,
            dlq_at=self.dlq_at,
        )


@dataclass
class _Pending:
    seq: int
    header: bytes
    body: bytes
    entry: _Entry
    future: asyncio.Future[None]


@dataclass
class _Counters:
    appended: int = 0
    appended_bytes: int = 0
    syncs: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    expired: int = 0
    by_state: dict[BatchState, StateStats] = field(default_factory=lambda: {s: StateStats() for s in BatchState})


def _batch_id(seq: int) -> str:
    return f"{seq:020d}"


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int

    def syncfs(fd: int) -> int:
        return int(fn(fd))

    return syncfs


_SYNCFS = _load_syncfs()


class Spool:
    """A directory of durable batches. Open with ``await Spool.open(dir, ...)``.

    All methods must be called from the event loop that opened the spool. Disk I/O runs in one
    dedicated thread, so writes and state changes reach the disk in the order they were made.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        dlq_max_bytes: int,
        max_age: float,
        clock: Callable[[], float],
        use_syncfs: bool,
    ) -> None:
        self._dir = directory
        self._batches = directory / "batches"
        self._max_bytes = max_bytes
        self._dlq_max_bytes = dlq_max_bytes
        self._max_age = max_age
        self._clock = clock
        self._syncfs = _SYNCFS if use_syncfs else None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floe-spool")
        self._entries: dict[int, _Entry] = {}
        # (ready_at, seq, version): queued and retrying batches by when they may be claimed.
        self._ready: list[tuple[float, int, int]] = []
        # Dead-lettered seqs in the order they entered the DLQ (oldest first, for eviction).
        self._dlq: dict[int, None] = {}
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._next_seq = 0
        self._claimed = 0
        self._closed = False
        self._c = _Counters()

    # -- opening and closing -----------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        dlq_max_bytes: int = 10 << 30,
        max_age: float = 0.0,
        clock: Callable[[], float] = time.time,
        use_syncfs: bool = True,
    ) -> Spool:
        """Open (creating if needed) the spool in ``directory`` and recover what a crash left.

        ``max_bytes`` bounds the bodies queued or retrying and ``dlq_max_bytes`` the DLQ (oldest
        evicted first); ``max_age`` seconds moves older batches to the DLQ on ``sweep``. Zero means
        unlimited for all three. ``use_syncfs=False`` forces one fsync per file (for comparison).
        """
        for name, value in (("max_bytes", max_bytes), ("dlq_max_bytes", dlq_max_bytes), ("max_age", max_age)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0 means unlimited), got {value}")
        spool = cls(
            Path(directory),
            max_bytes=max_bytes,
            dlq_max_bytes=dlq_max_bytes,
            max_age=max_age,
            clock=clock,
            use_syncfs=use_syncfs,
        )
        try:
            entries = await asyncio.get_running_loop().run_in_executor(spool._io, spool._recover)
        except BaseException:
            spool._io.shutdown(wait=False)
            raise
        for entry in sorted(entries, key=lambda e: e.seq):
            spool._index(entry)
        for seq in sorted(spool._dlq, key=lambda s: (spool._entries[s].dlq_at, s)):
            spool._dlq.pop(seq)
            spool._dlq[seq] = None
        # Sequence numbers start from the wall clock in nanoseconds, so ids stay unique even when
        # every batch was completed (and its file deleted) before a restart.
        highest = max((e.seq for e in entries), default=0)
        spool._next_seq = max(highest + 1, time.time_ns())
        await spool._evict()
        await spool.sweep()
        return spool

    async def close(self) -> None:
        """Wait for pending appends to become durable, then stop the I/O thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        # Off the loop: shutdown waits for state changes other tasks may still have in flight.
        await asyncio.to_thread(self._io.shutdown, wait=True)

    async def __aenter__(self) -> Spool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- appending ---------------------------------------------------------------------------

    async def append(self, meta: BatchMeta, body: bytes) -> str:
        """Store ``body`` with ``meta``; return its id once both are durable on disk.

        Raises ``SpoolFull`` (before writing anything) when the queued and retrying bytes would
        exceed ``max_bytes``. If the caller is cancelled while waiting, the batch may still be
        written and later delivered.
        """
        self._check_open()
        size = len(body)
        if self._max_bytes and self._live_bytes() + self._pending_bytes + size > self._max_bytes:
            raise SpoolFull(
                f"The spool in {self._dir} holds {self._live_bytes() + self._pending_bytes} of its "
                f"{self._max_bytes} bytes; retry later or raise max_bytes."
            )
        if not meta.created_at:
            meta = replace(meta, created_at=self._clock())
        seq = self._next_seq
        self._next_seq += 1
        meta_json = json.dumps(asdict(meta), separators=(",", ":")).encode()
        header = _HEADER.pack(_MAGIC, len(meta_json), zlib.crc32(body), size) + meta_json
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(seq, header, body, _Entry(seq, meta, size), future))
        self._pending_bytes += size
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop())
        await future
        return _batch_id(seq)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    await loop.run_in_executor(self._io, self._write_group, group)
                except OSError as exc:
                    for p in group:
                        self._pending_bytes -= p.entry.size
                        if not p.future.done():
                            p.future.set_exception(SpoolError(f"Could not write to the spool in {self._dir}: {exc}"))
                    continue
                for p in group:
                    self._pending_bytes -= p.entry.size
                    self._index(p.entry)
                    self._c.appended += 1
                    self._c.appended_bytes += p.entry.size
                    if not p.future.done():
                        p.future.set_result(None)
        finally:
            self._flusher = None

    def _write_group(self, group: list[_Pending]) -> None:
        """I/O thread: write every batch of the group, then make them all durable at once."""
        fds: list[int] = []
        paths: list[Path] = []
        try:
            for p in group:
                path = self._batches / f"{_batch_id(p.seq)}{_SUFFIX}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
                fds.append(fd)
                paths.append(path)
                _write_all(fd, p.header, p.body)
            if self._syncfs is not None:
                if self._syncfs(fds[0]) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs: {os.strerror(err)}")
                self._c.syncs += 1
            else:
                for fd in fds:
                    os.fsync(fd)
                self._c.syncs += len(fds)
                self._fsync_dir()
        except OSError:
            # Nobody was told these batches are stored: don't let them reappear after a restart.
            for path in paths:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        finally:
            for fd in fds:
                os.close(fd)

    def _fsync_dir(self) -> None:
        dfd = os.open(self._batches, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
            self._c.syncs += 1
        finally:
            os.close(dfd)

    # -- claiming and transitions ------------------------------------------------------------

    def claim(self, limit: int = 1) -> list[Batch]:
        """Lease up to ``limit`` batches that are ready (queued, or retrying and due), oldest first.

        A claimed batch is not handed out again until it is completed, retried or dead-lettered
        (or the process restarts). Never blocks.
        """
        self._check_open()
        now = self._clock()
        out: list[Batch] = []
        while self._ready and len(out) < limit and self._ready[0][0] <= now:
            _, seq, version = heapq.heappop(self._ready)
            entry = self._entries.get(seq)
            if entry is None or entry.version != version or entry.claimed or entry.state is BatchState.DLQ:
                continue
            entry.claimed = True
            self._claimed += 1
            out.append(entry.snapshot())
        return out

    def next_ready_at(self) -> float | None:
        """When the earliest unclaimed batch becomes claimable (clock seconds), None if none."""
        while self._ready:
            _, seq, version = self._ready[0]
            entry = self._entries.get(seq)
            if entry is not None and entry.version == version and not entry.claimed:
                return self._ready[0][0]
            heapq.heappop(self._ready)
        return None

    async def read(self, batch: Batch) -> bytes:
        """The body of ``batch``, checked against its checksum (``CorruptBatchError`` if not)."""
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(None, self._read_body, _seq_of(batch.id))

    def path(self, batch: Batch) -> tuple[Path, int]:
        """The batch file and the offset of its body, for streaming without copying."""
        path = self._batches / f"{batch.id}{_SUFFIX}"
        with path.open("rb") as f:
            magic, meta_len, _, _ = _HEADER.unpack(f.read(_HEADER.size))
        if magic != _MAGIC:
            raise CorruptBatchError(f"{path} is not a spool batch file.")
        return path, _HEADER.size + meta_len

    async def complete(self, batch: Batch) -> None:
        """The batch was delivered: delete it."""
        entry = self._take(batch)
        if entry is None:
            return
        self._forget(entry.seq)
        await self._run(self._delete_files, entry.seq)

    async def retry(self, batch: Batch, error: str, delay: float) -> Batch:
        """Delivery failed transiently: count the attempt and make it claimable after ``delay`` s."""
        entry = self._take(batch)
        if entry is None:
            return batch
        self._set_state(entry, BatchState.RETRY)
        entry.attempts += 1
        entry.last_error = error
        entry.next_attempt_at = self._clock() + max(0.0, delay)
        heapq.heappush(self._ready, (entry.next_attempt_at, entry.seq, entry.version))
        await self._run(self._write_states, [(entry.seq, _state_doc(entry))])
        return entry.snapshot()

    async def dead_letter(self, batch: Batch, reason: str) -> Batch:
        """Delivery failed for good: move the batch to the DLQ (evicting the oldest if over limit)."""
        entry = self._take(batch)
        if entry is None:
            return batch
        await self._run(self._write_states, [self._to_dlq(entry, reason)])
        await self._evict()
        return entry.snapshot()

    def release(self, batch: Batch) -> None:
        """Give a claimed batch back unchanged (e.g. on shutdown); it is ready again at once."""
        entry = self._take(batch)
        if entry is not None:
            entry.version += 1
            heapq.heappush(self._ready, (_ready_at(entry), entry.seq, entry.version))

    async def sweep(self) -> int:
        """Move queued and retrying batches older than ``max_age`` to the DLQ; return how many.

        Claimed batches are left to their worker. Call it on the agent's cleanup interval.
        """
        if not self._max_age:
            return 0
        cutoff = self._clock() - self._max_age
        old = [
            e
            for e in self._entries.values()
            if e.state is not BatchState.DLQ and not e.claimed and e.meta.created_at < cutoff
        ]
        docs = [self._to_dlq(entry, f"older than max_age ({self._max_age:g} s)") for entry in old]
        self._c.expired += len(old)
        if docs:
            await self._run(self._write_states, docs)
        await self._evict()
        return len(old)

    # -- the DLQ -----------------------------------------------------------------------------

    def dlq_list(self, *, tenant: str | None = None, dataset: str | None = None, limit: int = 1000) -> list[Batch]:
        """Dead-lettered batches, oldest first, optionally of one tenant and/or dataset."""
        out: list[Batch] = []
        for seq in self._dlq:
            entry = self._entries[seq]
            if tenant is not None and entry.meta.tenant != tenant:
                continue
            if dataset is not None and entry.meta.dataset != dataset:
                continue
            out.append(entry.snapshot())
            if len(out) >= limit:
                break
        return out

    async def dlq_retry(self, ids: Iterable[str] | None = None) -> int:
        """Move dead-lettered batches (``ids``, or all when None) back to the queue; return how many.

        Their attempt counts restart from zero. Unknown ids are ignored.
        """
        self._check_open()
        seqs = list(self._dlq) if ids is None else [s for s in map(_seq_of, ids) if s in self._dlq]
        for seq in seqs:
            entry = self._entries[seq]
            del self._dlq[seq]
            self._set_state(entry, BatchState.QUEUE)
            entry.attempts = 0
            entry.next_attempt_at = 0.0
            entry.last_error = entry.dlq_reason = ""
            entry.dlq_at = 0.0
            heapq.heappush(self._ready, (0.0, seq, entry.version))
        if seqs:
            await self._run(self._remove_states, seqs)
        return len(seqs)

    # -- statistics and health ---------------------------------------------------------------

    def stats(self) -> SpoolStats:
        by_dataset: dict[tuple[str, str], dict[BatchState, StateStats]] = {}
        for entry in self._entries.values():
            per = by_dataset.setdefault((entry.meta.tenant, entry.meta.dataset), {s: StateStats() for s in BatchState})
            per[entry.state].count += 1
            per[entry.state].bytes += entry.size
        return SpoolStats(
            states={s: replace(v) for s, v in self._c.by_state.items()},
            by_dataset=by_dataset,
            claimed=self._claimed,
            appended=self._c.appended,
            appended_bytes=self._c.appended_bytes,
            syncs=self._c.syncs,
            evicted=self._c.evicted,
            evicted_bytes=self._c.evicted_bytes,
            expired=self._c.expired,
        )

    def fill_health(self, component: Component) -> None:
        """Copy the spool's figures onto a health-board component (backlog and DLQ in batches)."""
        states = self._c.by_state
        component.backlog = states[BatchState.QUEUE].count + states[BatchState.RETRY].count
        component.dlq_size = states[BatchState.DLQ].count
        component.events_in = self._c.appended
        component.bytes_in = self._c.appended_bytes
        if self._c.evicted:
            component.dropped["dlq_evicted"] = self._c.evicted
        oldest = min((e.meta.created_at for e in self._entries.values() if e.state is not BatchState.DLQ), default=0.0)
        component.lag_seconds = max(0.0, self._clock() - oldest) if oldest else 0.0

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolClosedError(f"The spool in {self._dir} is closed.")

    def _live_bytes(self) -> int:
        return self._c.by_state[BatchState.QUEUE].bytes + self._c.by_state[BatchState.RETRY].bytes

    async def _run(self, fn: Callable[..., None], *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _index(self, entry: _Entry) -> None:
        self._entries[entry.seq] = entry
        stats = self._c.by_state[entry.state]
        stats.count += 1
        stats.bytes += entry.size
        if entry.state is BatchState.DLQ:
            self._dlq[entry.seq] = None
        else:
            heapq.heappush(self._ready, (_ready_at(entry), entry.seq, entry.version))

    def _set_state(self, entry: _Entry, state: BatchState) -> None:
        old, new = self._c.by_state[entry.state], self._c.by_state[state]
        old.count -= 1
        old.bytes -= entry.size
        new.count += 1
        new.bytes += entry.size
        entry.state = state
        entry.version += 1

    def _take(self, batch: Batch) -> _Entry | None:
        """The claimed entry behind ``batch``, unclaimed; None if it is gone."""
        self._check_open()
        entry = self._entries.get(_seq_of(batch.id))
        if entry is None:
            return None
        if not entry.claimed:
            raise SpoolError(f"Batch {batch.id} is not claimed; claim it before changing its state.")
        entry.claimed = False
        self._claimed -= 1
        return entry

    def _to_dlq(self, entry: _Entry, reason: str) -> tuple[int, dict[str, Any]]:
        """Move ``entry`` to the DLQ in memory; return the sidecar the caller must write."""
        self._set_state(entry, BatchState.DLQ)
        entry.dlq_reason = reason
        entry.dlq_at = self._clock()
        self._dlq[entry.seq] = None
        return entry.seq, _state_doc(entry)

    async def _evict(self) -> None:
        if not self._dlq_max_bytes:
            return
        dlq = self._c.by_state[BatchState.DLQ]
        evicted: list[int] = []
        while dlq.bytes > self._dlq_max_bytes and self._dlq:
            seq = next(iter(self._dlq))
            del self._dlq[seq]
            entry = self._entries.pop(seq)
            dlq.count -= 1
            dlq.bytes -= entry.size
            self._c.evicted += 1
            self._c.evicted_bytes += entry.size
            evicted.append(seq)
        if evicted:
            await self._run(self._delete_files, *evicted)

    def _forget(self, seq: int) -> None:
        entry = self._entries.pop(seq)
        stats = self._c.by_state[entry.state]
        stats.count -= 1
        stats.bytes -= entry.size

    # I/O-thread helpers: they touch only files, never the in-memory index.

    def _delete_files(self, *seqs: int) -> None:
        for seq in seqs:
            base = self._batches / _batch_id(seq)
            for suffix in (_STATE_SUFFIX, _SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{base}{suffix}")

    def _write_states(self, docs: list[tuple[int, dict[str, Any]]]) -> None:
        for seq, doc in docs:
            path = self._batches / f"{_batch_id(seq)}{_STATE_SUFFIX}"
            tmp = path.with_suffix(".state-tmp")
            tmp.write_bytes(json.dumps(doc, separators=(",", ":")).encode())
            os.replace(tmp, path)

    def _remove_states(self, seqs: list[int]) -> None:
        for seq in seqs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._batches / f"{_batch_id(seq)}{_STATE_SUFFIX}")

    def _read_body(self, seq: int) -> bytes:
        path = self._batches / f"{_batch_id(seq)}{_SUFFIX}"
        data = path.read_bytes()
        magic, meta_len, crc, body_len = _HEADER.unpack_from(data)
        body = data[_HEADER.size + meta_len :]
        if magic != _MAGIC or len(body) != body_len or zlib.crc32(body) != crc:
            raise CorruptBatchError(f"Batch file {path} is damaged; dead-letter it.")
        return body

    def _recover(self) -> list[_Entry]:
        """I/O thread, at open: load every complete batch, delete partial files and stray sidecars."""
        self._batches.mkdir(parents=True, exist_ok=True)
        entries: list[_Entry] = []
        states: dict[int, Path] = {}
        changed = False
        for path in self._batches.iterdir():
            name = path.name
            if name.endswith(_SUFFIX):
                entry = _load_entry(path)
                if entry is None:
                    path.unlink()
                    changed = True
                else:
                    entries.append(entry)
            elif name.endswith(_STATE_SUFFIX) and name[: -len(_STATE_SUFFIX)].isdigit():
                states[int(name[: -len(_STATE_SUFFIX)])] = path
            else:  # half-written sidecars and anything else that is not ours to keep
                path.unlink()
                changed = True
        for entry in entries:
            state_path = states.pop(entry.seq, None)
            if state_path is not None:
                _apply_state(entry, state_path)
        for path in states.values():  # sidecar of a completed batch
            path.unlink()
            changed = True
        if changed:
            self._fsync_dir()
        return entries


def _write_all(fd: int, header: bytes, body: bytes) -> None:
    buffers = [memoryview(header), memoryview(body)]
    while buffers:
        written = os.writev(fd, buffers)
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers.pop(0)
        if buffers and written:
            buffers[0] = buffers[0][written:]


def _seq_of(batch_id: str) -> int:
    if not batch_id.isdigit():
        raise ValueError(f"{batch_id!r} is not a spool batch id")
    return int(batch_id)


def _ready_at(entry: _Entry) -> float:
    return entry.next_attempt_at if entry.state is BatchState.RETRY else 0.0


def _state_doc(entry: _Entry) -> dict[str, Any]:
    return {
        "state": entry.state.value,
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at,
        "last_error": entry.last_error,
        "dlq_reason": entry.dlq_reason,
        "dlq_at": entry.dlq_at,
    }


def _load_entry(path: Path) -> _Entry | None:
    """The batch in ``path``, or None when it is incomplete (a crash cut its write short)."""
    name = path.name[: -len(_SUFFIX)]
    if not name.isdigit():
        return None
    try:
        with path.open("rb") as f:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return None
            magic, meta_len, _, body_len = _HEADER.unpack(head)
            if magic != _MAGIC or os.fstat(f.fileno()).st_size != _HEADER.size + meta_len + body_len:
                return None
            meta = BatchMeta(**json.loads(f.read(meta_len)))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return _Entry(int(name), meta, body_len)


def _apply_state(entry: _Entry, path: Path) -> None:
    """Restore retry/DLQ details; an unreadable sidecar (crash mid-write) leaves the batch queued."""
    try:
        doc = json.loads(path.read_bytes())
        state = BatchState(doc["state"])
        attempts = int(doc["attempts"])
        next_attempt_at = float(doc["next_attempt_at"])
        last_error = str(doc["last_error"])
        dlq_reason = str(doc["dlq_reason"])
        dlq_at = float(doc["dlq_at"])
    except (ValueError, KeyError, TypeError):
        return
    entry.state = state
    entry.attempts = attempts
    entry.next_attempt_at = next_attempt_at
    entry.last_error = last_error
    entry.dlq_reason = dlq_reason
    entry.dlq_at = dlq_at
