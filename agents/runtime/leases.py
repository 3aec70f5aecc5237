"""Work leases for agents that scale out (piper, packer): the control plane's ``WorkService``
when the agent has one, an in-process table when it runs alone (local-only mode).

A lease names a work item (a raw object, a Parquet partition) and carries a generation that
grows on every claim. A worker renews its lease before each step that has effects outside it
(publishing output, deleting sources): if the lease was lost — it expired while the worker was
stalled and another worker claimed the item — ``renew`` raises ``LeaseLost`` and the worker stops
without publishing. This narrows, but cannot close, the window in which two workers act on one
item; the outputs are named from their inputs, so a late duplicate write overwrites the same
object rather than adding a second one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import grpc

from agents.runtime.settings import AgentSettings
from floe.client import AsyncClient
from floe.errors import RpcError
from floe.v1 import work_pb2

__all__ = ["ControlLeases", "Lease", "LeaseLost", "Leases", "LocalLeases", "open_leases"]


_LOST = frozenset({grpc.StatusCode.ABORTED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})


class LeaseLost(Exception):
    """Raised when a lease expired and its item may be held by another worker."""


@dataclass(frozen=True, slots=True)
class Lease:
    item: str
    holder: str
    generation: int
    expires_at: float


class Leases(Protocol):
    async def claim(self, items: list[str], ttl: float) -> tuple[list[Lease], set[str]]:
        """Claim what is free among ``items``: (leases won, items already done)."""
        ...

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend ``lease``; raise ``LeaseLost`` if it is no longer ours."""
        ...

    async def complete(self, lease: Lease) -> None:
        """Mark the item done for good (it is never handed out again)."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the item back (it may be claimed again at once)."""
        ...

    async def close(self) -> None: ...


class LocalLeases:
    """Leases in memory, for one agent without a control plane."""

    def __init__(self, holder: str) -> None:
        self._holder = holder
        self._held: dict[str, Lease] = {}
        self._done: set[str] = set()
        self._generation = 0

    async def claim(self, items: list[str], ttl: float) -> tuple[list[Lease], set[str]]:
        now = time.monotonic()
        won = []
        for item in items:
            if item in self._done:
                continue
            held = self._held.get(item)
            if held is not None and held.expires_at > now:
                continue
            self._generation += 1
            lease = self._held[item] = Lease(item, self._holder, self._generation, now + ttl)
            won.append(lease)
        return won, {i for i in items if i in self._done}

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        held = self._held.get(lease.item)
        if held is None or held.generation != lease.generation:
            raise LeaseLost(f"{lease.item}: the lease was lost.")
        renewed = self._held[lease.item] = Lease(lease.item, lease.holder, lease.generation, time.monotonic() + ttl)
        return renewed

    async def complete(self, lease: Lease) -> None:
        if self._held.pop(lease.item, None) is not None:
            self._done.add(lease.item)
            # Done items are remembered to answer ``claim``; callers delete the item's inputs,
            # so the set stays as small as the work not yet cleaned up.
            if len(self._done) > 100_000:
                self._done.clear()

    async def release(self, lease: Lease) -> None:
        held = self._held.get(lease.item)
        if held is not None and held.generation == lease.generation:
            del self._held[lease.item]

    async def close(self) -> None:
        return None


class ControlLeases:
    """Leases held by the control plane (``floe.v1.WorkService``), shared by every worker."""

    _MAX_ITEMS = 1000

    def __init__(self, client: AsyncClient, holder: str) -> None:
        self._client = client
        self._holder = holder

    async def claim(self, items: list[str], ttl: float) -> tuple[list[Lease], set[str]]:
        won: list[Lease] = []
        done: set[str] = set()
        for start in range(0, len(items), self._MAX_ITEMS):
            resp = await self._client.work.claim(items[start : start + self._MAX_ITEMS], self._holder, ttl_seconds=ttl)
            won += [_from_proto(lease) for lease in resp.leases]
            done.update(resp.done)
        return won, done

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        try:
            return _from_proto(await self._client.work.renew(_to_proto(lease), ttl_seconds=ttl))
        except RpcError as exc:
            if exc.code in _LOST:
                raise LeaseLost(f"{lease.item}: {exc.message}") from exc
            raise

    async def complete(self, lease: Lease) -> None:
        try:
            await self._client.work.complete(_to_proto(lease))
        except RpcError as exc:
            if exc.code in _LOST:
                raise LeaseLost(f"{lease.item}: {exc.message}") from exc
            raise

    async def release(self, lease: Lease) -> None:
        try:
            await self._client.work.release(_to_proto(lease))
        except RpcError as exc:
            if exc.code not in _LOST:
                raise

    async def close(self) -> None:
        await self._client.close()


def _from_proto(lease: work_pb2.Lease) -> Lease:
    return Lease(lease.item, lease.holder, lease.generation, lease.expire_time.ToNanoseconds() / 1e9)


def _to_proto(lease: Lease) -> work_pb2.Lease:
    return work_pb2.Lease(item=lease.item, holder=lease.holder, generation=lease.generation)


def open_leases(settings: AgentSettings, holder: str) -> tuple[Leases, AsyncClient | None]:
    """Control-plane leases and the client they use (closed with the leases), or in-process
    leases and no client in local-only mode."""
    if settings.config_mode == "local-only":
        return LocalLeases(holder), None
    client = AsyncClient(
        settings.control_url,
        api_key=settings.read_api_key(),
        ca_file=settings.ca_file,
        cert_file=settings.tls_cert_file,
        key_file=settings.tls_key_file,
    )
    return ControlLeases(client, holder), client
