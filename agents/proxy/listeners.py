"""Listeners of the proxy: one bound socket per dataset, started, rebound and stopped as the
assigned datasets change, each counting what it receives in its health component.

Binding is checked during validation, so a port already in use on this host makes the whole
config FAILED (with the dataset and address named) while the previous listeners keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from dataclasses import dataclass
from typing import Any

from agents.runtime.health import Component, HealthBoard
from floe.protocol import transport
from floe.v1 import datasets_pb2

__all__ = ["ListenerSet", "bind_spec"]

log = logging.getLogger(__name__)
ST = datasets_pb2.SourceType


@dataclass(frozen=True)
class BindSpec:
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport.upper()} {self.host}:{self.port}"


def bind_spec(ds: datasets_pb2.Dataset) -> BindSpec | None:
    proto = transport(ds.source.type)
    return BindSpec(proto, ds.source.bind_host or "0.0.0.0", ds.source.port) if proto else None


def _probe(spec: BindSpec) -> str | None:
    """Try to bind ``spec``; the reason it cannot be bound, or None."""
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    kind = socket.SOCK_DGRAM if spec.transport == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((spec.host, spec.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{spec} is already in use on this host"
            if exc.errno == errno.EACCES:
                return f"{spec} needs privileges this agent does not have (ports below 1024)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{spec}: {spec.host} is not an address of this host"
            return f"{spec} cannot be bound: {exc.strerror}"
    return None


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, comp: Component) -> None:
        self.comp = comp

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.comp.events_in += 1
        self.comp.bytes_in += len(data)


class _Tcp(asyncio.Protocol):
    def __init__(self, comp: Component) -> None:
        self.comp = comp

    def data_received(self, data: bytes) -> None:
        self.comp.events_in += data.count(b"\n")
        self.comp.bytes_in += len(data)


@dataclass
class _Listener:
    dataset: datasets_pb2.Dataset
    spec: BindSpec
    closer: Any
    comp: Component


class ListenerSet:
    """The running listeners, keyed by dataset name."""

    def __init__(self, health: HealthBoard) -> None:
        self._health = health
        self._running: dict[str, _Listener] = {}

    def held(self) -> set[BindSpec]:
        return {lst.spec for lst in self._running.values()}

    def check(self, datasets: list[datasets_pb2.Dataset]) -> list[str]:
        """Every dataset whose listener could not be started here."""
        errors = []
        seen: dict[BindSpec, str] = {}
        held = self.held()
        wanted = {spec for ds in datasets if (spec := bind_spec(ds)) is not None}
        released = held - wanted
        for ds in datasets:
            spec = bind_spec(ds)
            if spec is None:
                continue
            if spec in seen:
                errors.append(f"{ds.name}: {spec} is also wanted by {seen[spec]}")
                continue
            seen[spec] = ds.name
            if spec in held:
                continue  # ours already
            problem = _probe(spec)
            if problem and any(r.transport == spec.transport and r.port == spec.port for r in released):
                # The port may be taken by our own listener that this config stops (a bind_host
                # change on the same port): the probe cannot tell, ``apply`` finds out and rolls back.
                continue
            if problem:
                errors.append(f"{ds.name}: {problem}")
        return errors

    async def apply(self, datasets: list[datasets_pb2.Dataset]) -> None:
        """Switch to ``datasets``' listeners; if one cannot be bound, the previous set is restored."""
        wanted = {ds.name: ds for ds in datasets if bind_spec(ds) is not None}
        # Stop listeners that are gone or whose address changed, then start the new ones.
        stopped: list[_Listener] = []
        kept: list[tuple[_Listener, datasets_pb2.Dataset]] = []
        for name, lst in list(self._running.items()):
            ds = wanted.get(name)
            if ds is None or bind_spec(ds) != lst.spec:
                stopped.append(lst)
                await self._stop(name)
            else:
                kept.append((lst, lst.dataset))
                lst.dataset = ds
        started: list[str] = []
        try:
            for name, ds in wanted.items():
                if name not in self._running:
                    await self._start(ds)
                    started.append(name)
        except Exception:
            for name in started:
                await self._stop(name)
            for lst, previous in kept:
                lst.dataset = previous
            for lst in stopped:
                try:
                    await self._start(lst.dataset)
                except OSError:
                    log.exception("Could not restore a listener", extra={"dataset": lst.dataset.name})
            raise

    async def _start(self, ds: datasets_pb2.Dataset) -> None:
        spec = bind_spec(ds)
        assert spec is not None
        loop = asyncio.get_running_loop()
        comp = self._health.component(
            f"source/{ds.name}", "source." + ST.Name(ds.source.type).removeprefix("SOURCE_TYPE_").lower()
        )
        try:
            if spec.transport == "udp":
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(comp), local_addr=(spec.host, spec.port)
                )
                closer: Any = transport
            else:
                closer = await loop.create_server(lambda: _Tcp(comp), spec.host, spec.port, reuse_address=True)
        except OSError as exc:
            self._health.remove(f"source/{ds.name}")
            raise OSError(exc.errno, f"{ds.name}: {spec} cannot be bound: {exc.strerror or exc}") from exc
        comp.message = f"listening on {spec}"
        self._running[ds.name] = _Listener(ds, spec, closer, comp)
        log.info("Listener started", extra={"dataset": ds.name, "address": str(spec)})

    async def _stop(self, name: str) -> None:
        lst = self._running.pop(name)
        lst.closer.close()
        if isinstance(lst.closer, asyncio.base_events.Server):
            with contextlib.suppress(Exception):
                await lst.closer.wait_closed()
        self._health.remove(f"source/{name}")
        log.info("Listener stopped", extra={"dataset": name, "address": str(lst.spec)})

    async def close(self) -> None:
        for name in list(self._running):
            await self._stop(name)
