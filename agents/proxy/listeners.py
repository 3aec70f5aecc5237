"""Listeners of the proxy: one input per assigned dataset, built by the source type's plugin
(``agents/sources/registry.py``), started, rebound and stopped as the assigned datasets change.
Each counts what it receives and drops in its health component ``source/<dataset>`` and hands
its records to the forwarding path (``Sink``) as NDJSON buffers.

Options and binding are checked during validation, so bad options or a port already in use on
this host make the whole config FAILED (with the dataset and address named) while the previous
listeners keep running.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

from agents.proxy.sink import Sink
from agents.runtime.health import HealthBoard
from agents.sources import registry
from agents.sources.plugin import Input, InputContext
from floe.protocol import transport
from floe.v1 import datasets_pb2

__all__ = ["ListenerSet", "bind_spec"]

log = logging.getLogger(__name__)


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


def _restart_key(ds: datasets_pb2.Dataset) -> tuple[int, BindSpec | None, tuple[tuple[str, str], ...]]:
    """What a running input depends on: a change in any of it restarts the input."""
    return ds.source.type, bind_spec(ds), tuple(sorted(ds.source.options.items()))


@dataclass
class _Listener:
    ctx: InputContext
    spec: BindSpec | None
    key: tuple[int, BindSpec | None, tuple[tuple[str, str], ...]]
    input: Input

    @property
    def dataset(self) -> datasets_pb2.Dataset:
        return self.ctx.dataset


class ListenerSet:
    """The running inputs, keyed by dataset name, handing their records to ``sink``."""

    def __init__(self, health: HealthBoard, sink: Sink) -> None:
        self._health = health
        self._sink = sink
        self._running: dict[str, _Listener] = {}

    def held(self) -> set[BindSpec]:
        return {lst.spec for lst in self._running.values() if lst.spec is not None}

    def check(self, datasets: list[datasets_pb2.Dataset]) -> list[str]:
        """Every reason a dataset's input could not be started here: bad options, an address
        wanted twice or already in use on this host."""
        errors = []
        seen: dict[BindSpec, str] = {}
        held = self.held()
        wanted = {spec for ds in datasets if (spec := bind_spec(ds)) is not None}
        released = held - wanted
        for ds in datasets:
            errors += [f"{ds.name}: options.{key}: {problem}" for key, problem in registry.problems(ds.source)]
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
        """Switch to ``datasets``' inputs; if one cannot be started, the previous set is restored.

        An input whose source (type, address or options) is unchanged keeps running and sees the
        new dataset; the others are stopped first (releasing their ports), then the new ones start.
        """
        wanted = {ds.name: ds for ds in datasets if registry.plugin(ds.source.type) is not None}
        stopped: list[_Listener] = []
        kept: list[tuple[_Listener, datasets_pb2.Dataset]] = []
        for name, lst in list(self._running.items()):
            ds = wanted.get(name)
            if ds is None or _restart_key(ds) != lst.key:
                stopped.append(lst)
                await self._stop(name)
            else:
                kept.append((lst, lst.dataset))
                lst.ctx.dataset = ds
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
                lst.ctx.dataset = previous
            for lst in stopped:
                try:
                    await self._start(lst.dataset)
                except Exception:
                    log.exception("Could not restore a listener", extra={"dataset": lst.dataset.name})
            raise

    async def _start(self, ds: datasets_pb2.Dataset) -> None:
        found = registry.plugin(ds.source.type)
        assert found is not None
        spec = bind_spec(ds)
        comp = self._health.component(f"source/{ds.name}", f"source.{found.name}")
        comp.message = f"listening on {spec}" if spec is not None else ""
        ctx = InputContext(ds, found.parse(ds.source.options), comp, self._sink)
        running = found.build(ctx)
        try:
            await running.start()
        except OSError as exc:
            self._health.remove(f"source/{ds.name}")
            raise OSError(exc.errno, f"{ds.name}: {spec} cannot be bound: {exc.strerror or exc}") from exc
        except Exception:
            self._health.remove(f"source/{ds.name}")
            raise
        self._running[ds.name] = _Listener(ctx, spec, _restart_key(ds), running)
        log.info("Listener started", extra={"dataset": ds.name, "address": str(spec or found.name)})

    async def _stop(self, name: str) -> None:
        lst = self._running.pop(name)
        try:
            await lst.input.stop()
        except Exception:
            log.exception("A listener did not stop cleanly", extra={"dataset": name})
        self._health.remove(f"source/{name}")
        log.info("Listener stopped", extra={"dataset": name, "address": str(lst.spec or "")})

    async def close(self) -> None:
        """Stop every input (what each already received is handed to the sink first)."""
        for name in list(self._running):
            await self._stop(name)
