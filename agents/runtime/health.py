"""Health of an agent's components: counters of the data path and a status each, rolled up
into the HealthReport sent on the control stream and served on the API port."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from floe.v1 import agent_pb2, health_pb2

__all__ = ["Component", "HealthBoard"]

HS = health_pb2.HealthStatus


@dataclass
class Component:
    """One part of the data path. Code on the hot path bumps the counters in place."""

    name: str
    kind: str
    status: int = HS.HEALTH_STATUS_HEALTHY
    message: str = ""
    events_in: int = 0
    events_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    backlog: int = 0
    dlq_size: int = 0
    lag_seconds: float = 0.0
    last_flush: float = 0.0
    errors: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def to_proto(self) -> agent_pb2.ComponentHealth:
        out = agent_pb2.ComponentHealth(
            name=self.name,
            kind=self.kind,
            status=self.status,  # type: ignore[arg-type]
            message=self.message,
            events_in=self.events_in,
            events_out=self.events_out,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            backlog=self.backlog,
            dlq_size=self.dlq_size,
            errors=self.errors,
            dropped=self.dropped,
        )
        out.lag.FromNanoseconds(int(self.lag_seconds * 1e9))
        if self.last_flush:
            out.last_flush_time.FromNanoseconds(int(self.last_flush * 1e9))
        return out


class HealthBoard:
    """Every registered component; ``report`` rolls them up (worst status wins)."""

    def __init__(self) -> None:
        self._components: dict[str, Component] = {}
        self._checks: list[Callable[[], tuple[int, str] | None]] = []

    def component(self, name: str, kind: str) -> Component:
        comp = self._components.get(name)
        if comp is None:
            comp = self._components[name] = Component(name, kind)
        return comp

    def remove(self, name: str) -> None:
        self._components.pop(name, None)

    def add_check(self, check: Callable[[], tuple[int, str] | None]) -> None:
        """A check returns None when fine, else (status, message)."""
        self._checks.append(check)

    def components(self) -> list[Component]:
        return [self._components[k] for k in sorted(self._components)]

    def report(self) -> agent_pb2.HealthReport:
        status: int = HS.HEALTH_STATUS_HEALTHY
        messages = []
        for comp in self._components.values():
            status = max(status, comp.status)
            if comp.status != HS.HEALTH_STATUS_HEALTHY and comp.message:
                messages.append(f"{comp.name}: {comp.message}")
        for check in self._checks:
            result = check()
            if result is not None:
                status = max(status, result[0])
                messages.append(result[1])
        report = agent_pb2.HealthReport(
            status=status,  # type: ignore[arg-type]
            message="; ".join(messages),
            components=[c.to_proto() for c in self.components()],
        )
        report.report_time.FromNanoseconds(time.time_ns())
        return report
