"""Keeps the store from growing without bound: finished work leases and ended sign-in sessions.

Every raw object a piper processes leaves a ``done`` lease, so that the object is never processed
twice even if a receiver uploads it again (after a crash between its upload and its own
bookkeeping). Such a re-upload can only come while the receiver still holds the batch in its
spool, so finished leases are kept for ``lease_retention`` (7 days by default) and then deleted,
a bounded batch per statement so claims are never held up for long. Released leases (packer
partitions) go the same way: a claim after that starts from generation 1 again, which is safe
because every lease holding an older generation expired long before.

Sign-in sessions that expired or were revoked are deleted on the same round: they can never be
used again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter

from control_plane.store import Store
from floe.aio import cancel

__all__ = ["Housekeeper"]

log = logging.getLogger(__name__)

PRUNED = Counter("floe_store_pruned_total", "Rows deleted from the store by housekeeping.", ["kind"])
#: Rows per DELETE: each runs on the store's writer thread between other writes.
_BATCH = 5_000


class Housekeeper:
    def __init__(self, store: Store, *, lease_retention: float, interval: float) -> None:
        self._store = store
        self._retention = lease_retention
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="control-plane-housekeeping")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Housekeeping failed; trying again next round")
            await asyncio.sleep(self._interval)

    async def run_once(self) -> tuple[int, int]:
        """One round: (leases, sessions) deleted."""
        now = time.time_ns()
        leases = 0
        if self._retention > 0:
            cutoff = now - int(self._retention * 1e9)
            while True:
                deleted = await self._store.prune_leases(cutoff, _BATCH)
                leases += deleted
                if deleted < _BATCH:
                    break
                await asyncio.sleep(0)  # let waiting writes in between batches
        sessions = await self._store.prune_sessions(now)
        PRUNED.labels("lease").inc(leases)
        PRUNED.labels("session").inc(sessions)
        if leases or sessions:
            log.info("Housekeeping deleted old rows", extra={"leases": leases, "sessions": sessions})
        return leases, sessions
