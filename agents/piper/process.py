"""Parse and transform one raw object's records with its dataset's transformation list.

Plans are compiled once per dataset config and reused; a plan runs one batch at a time (it
counts records across runs for ``sample``), so each dataset has a lock. Parsing and the plan
run in a worker thread: Arrow compute releases the GIL, the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from agents.piper.pipe import Outputs
from agents.transforms.engine import Plan, compile_plan
from agents.transforms.fields import FieldStats
from agents.transforms.parsers import parse_body
from floe.v1 import datasets_pb2

__all__ = ["Processors", "fields_message"]


@dataclass
class _Dataset:
    plan: Plan
    fingerprint: bytes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fields: FieldStats = field(default_factory=FieldStats)
    #: Seen since the last report to the control plane.
    unreported: FieldStats = field(default_factory=FieldStats)


def _fingerprint(ds: datasets_pb2.Dataset) -> bytes:
    raw = b"".join(step.SerializeToString(deterministic=True) for step in ds.transformations)
    return hashlib.sha256(raw).digest()


class Processors:
    """The compiled plan of every dataset this piper handles, rebuilt when its steps change."""

    def __init__(self, hash_salt: str = "") -> None:
        self._salt = hash_salt
        self._datasets: dict[tuple[str, str], _Dataset] = {}

    def configure(self, datasets: list[datasets_pb2.Dataset]) -> None:
        """Adopt a new datasets config (validated by the control plane and the runtime)."""
        current: dict[tuple[str, str], _Dataset] = {}
        for ds in datasets:
            parts = ds.name.split("/")
            key = (parts[1], parts[3])
            fingerprint = _fingerprint(ds)
            old = self._datasets.get(key)
            if old is not None and old.fingerprint == fingerprint:
                current[key] = old
                continue
            # The salt is per dataset: equal values hash differently in two datasets.
            salt = f"{self._salt}:{ds.name}" if self._salt else ds.name
            plan = compile_plan(list(ds.transformations), salt=salt)
            current[key] = _Dataset(plan, fingerprint, fields=old.fields if old else FieldStats())
        self._datasets = current

    def fields(self, tenant: str, dataset: str) -> FieldStats | None:
        ds = self._datasets.get((tenant, dataset))
        return ds.fields if ds else None

    def take_unreported(self) -> list[tuple[str, str, FieldStats]]:
        """The field counts seen since the last call, per dataset with any."""
        out = []
        for (tenant, dataset), ds in self._datasets.items():
            if ds.unreported.rows:
                out.append((tenant, dataset, ds.unreported))
                ds.unreported = FieldStats()
        return out

    def give_back(self, tenant: str, dataset: str, stats: FieldStats) -> None:
        """Counts whose report failed, to be sent with the next one."""
        ds = self._datasets.get((tenant, dataset))
        if ds is not None:
            ds.unreported.merge(stats)

    async def process(self, tenant: str, dataset: str, body: bytes, hint: str, received_at: int) -> Outputs:
        ds = self._datasets.get((tenant, dataset))
        if ds is None:
            raise LookupError(f"tenants/{tenant}/datasets/{dataset} is not in this piper's config")
        async with ds.lock:
            return await asyncio.to_thread(self._run, ds, body, hint, received_at)

    @staticmethod
    def _run(ds: _Dataset, body: bytes, hint: str, received_at: int) -> Outputs:
        parsed = parse_body(body, hint, received_at=received_at)
        result = ds.plan.run(parsed.table)
        ds.fields.observe(result.table, received_at)
        ds.unreported.observe(result.table, received_at)
        routed = {name.split("/")[-1]: table for name, table in result.routed.items()}
        lines = [
            json.dumps({"stage": "parse", "line": r["line"], "raw": r["raw"], "reason": r["reason"]})
            for r in parsed.errors.to_pylist()
        ]
        lines += [json.dumps({"stage": "transform", **r}, default=str) for r in result.errors.to_pylist()]
        errors = ("\n".join(lines) + "\n").encode() if lines else b""
        return Outputs(result.table, routed, errors, error_count=len(lines))


def fields_message(tenant: str, dataset: str, stats: FieldStats) -> datasets_pb2.DatasetFields:
    """``stats`` as the control plane's ``DatasetFields`` report."""
    out = datasets_pb2.DatasetFields(name=f"tenants/{tenant}/datasets/{dataset}/fields", records=stats.rows)
    for name, info in sorted(stats.fields.items()):
        f = out.fields.add(name=name, type=info.type, non_null=info.non_null, records=info.rows)
        f.types.update(info.types)
        if info.first_seen:
            f.first_seen_time.FromNanoseconds(info.first_seen)
        if info.last_seen:
            f.last_seen_time.FromNanoseconds(info.last_seen)
    return out
