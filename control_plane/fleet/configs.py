"""Desired config per agent, computed from the store.

Each config type's version is a content hash of its canonical (deterministic) serialization,
so an agent whose inputs did not change gets the same version and is not sent anything.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable
from dataclasses import dataclass

from control_plane.core.keys import key_ends_ns, key_valid_at
from control_plane.core.resources import from_record
from control_plane.store import Record, Store
from floe.protocol import CONFIG_TYPES
from floe.v1 import agent_pb2, common_pb2, datasets_pb2, exports_pb2, keys_pb2, tenants_pb2

__all__ = [
    "CONFIG_TYPES",
    "AgentIdentity",
    "Snapshot",
    "config_key",
    "desired_configs",
    "load_snapshot",
    "version_of",
]

K = agent_pb2.AgentKind


@dataclass(frozen=True)
class AgentIdentity:
    """What decides an agent's config: its kind, name, labels and credential's tenant."""

    kind: int
    agent_name: str
    labels: tuple[tuple[str, str], ...]
    tenant: str | None


@dataclass(frozen=True)
class Snapshot:
    """The store's tenants, datasets and ingest credentials at one moment, ordered by name."""

    tenants: tuple[tenants_pb2.Tenant, ...]
    datasets: tuple[datasets_pb2.Dataset, ...]
    credentials: tuple[agent_pb2.IngestCredential, ...] = ()
    exports: tuple[exports_pb2.ExportJob, ...] = ()


async def _all(store: Store, collection: str) -> list[Record]:
    out: list[Record] = []
    after = ""
    while True:
        rows = await store.list(collection, parent=None, after=after, limit=1000)
        out.extend(rows)
        if len(rows) < 1000:
            return out
        after = rows[-1].name


async def load_snapshot(store: Store) -> Snapshot:
    tenants = [from_record(r, tenants_pb2.Tenant) for r in await _all(store, "tenants")]
    datasets = [from_record(r, datasets_pb2.Dataset) for r in await _all(store, "datasets")]
    for ds in datasets:
        # Times and etags change on every write; agents only care about the spec.
        ds.ClearField("update_time")
        ds.ClearField("etag")
    for t in tenants:
        t.ClearField("update_time")
        t.ClearField("etag")
    exports = [from_record(r, exports_pb2.ExportJob) for r in await _all(store, "exports")]
    for job in exports:
        job.ClearField("update_time")
        job.ClearField("etag")
    return Snapshot(tuple(tenants), tuple(datasets), tuple(await _ingest_credentials(store)), tuple(exports))


#: Roles whose keys may write to receivers.
_INGEST_ROLES = frozenset({common_pb2.ROLE_AGENT, common_pb2.ROLE_EDITOR, common_pb2.ROLE_ADMIN})


async def _ingest_credentials(store: Store) -> list[agent_pb2.IngestCredential]:
    """Keys that may write to receivers and are not (yet) revoked or expired."""
    now = time.time_ns()
    out = []
    for record, hashed in await store.list_with_credentials("keys"):
        key = keys_pb2.ApiKey.FromString(record.body)
        if key.role not in _INGEST_ROLES:
            continue
        if not key_valid_at(key, now):
            continue
        cred = agent_pb2.IngestCredential(prefix=key.prefix, tenant=key.tenant, argon2_hash=hashed, key=record.name)
        ends = key_ends_ns(key)
        if ends is not None:
            cred.expire_time.FromNanoseconds(ends)
        out.append(cred)
    return out


def version_of(update: agent_pb2.ConfigUpdate) -> str:
    payload = update.WhichOneof("payload")
    raw = getattr(update, payload).SerializeToString(deterministic=True) if payload else b""
    return hashlib.sha256(update.config_type.encode() + b"\0" + raw).hexdigest()[:16]


def _tenant_of(name: str) -> str:
    return name.split("/")[1]


def _assigned(ds: datasets_pb2.Dataset, ident: AgentIdentity) -> bool:
    target = ds.proxy.WhichOneof("target")
    if target == "agent":
        return ds.proxy.agent == ident.agent_name
    if target == "selector":
        labels = dict(ident.labels)
        return all(labels.get(k) == v for k, v in ds.proxy.selector.match_labels.items())
    return False


def config_key(ident: AgentIdentity) -> Hashable:
    """The part of ``ident`` that ``desired_configs`` reads: equal keys, equal configs.

    Only proxies are configured by name and labels (dataset assignment); every other kind gets
    the same configs as any agent of its kind with a credential for the same tenant, so a fleet
    of pipers shares one computation. Keep this in step with ``desired_configs``.
    """
    if ident.kind == K.AGENT_KIND_PROXY:
        return ident
    return (ident.kind, ident.tenant)


def desired_configs(ident: AgentIdentity, snap: Snapshot) -> dict[str, agent_pb2.ConfigUpdate]:
    """Every config type ``ident`` subscribes to, with its version set (nonce left empty).

    Depends only on ``config_key(ident)`` and ``snap``; callers may share the result between
    agents with the same key, so nobody may modify the returned messages.
    """
    visible = {
        _tenant_of(t.name): t for t in snap.tenants if ident.tenant is None or _tenant_of(t.name) == ident.tenant
    }
    active_tenants = {tid for tid, t in visible.items() if t.state != tenants_pb2.Tenant.STATE_SUSPENDED}
    out: dict[str, agent_pb2.ConfigUpdate] = {}
    for config_type in CONFIG_TYPES.get(ident.kind, ()):
        update = agent_pb2.ConfigUpdate(config_type=config_type)
        if config_type == "datasets":
            if ident.kind == K.AGENT_KIND_PROXY:
                chosen = [
                    ds
                    for ds in snap.datasets
                    if ds.active and _tenant_of(ds.name) in active_tenants and _assigned(ds, ident)
                ]
            else:
                chosen = [ds for ds in snap.datasets if _tenant_of(ds.name) in visible]
            update.datasets.datasets.extend(chosen)
        elif config_type == "tenants":
            by_tenant: dict[str, list[datasets_pb2.Dataset]] = {}
            for ds in snap.datasets:
                by_tenant.setdefault(_tenant_of(ds.name), []).append(ds)
            for tid, tenant in visible.items():
                route = update.tenants.tenants.add(tenant=tenant.name, state=tenant.state)
                for ds in by_tenant.get(tid, []):
                    route.datasets.add(dataset=ds.name, active=ds.active, data_hint=ds.data_hint)
            # A tenant-bound receiver only learns its own tenant's keys.
            update.tenants.credentials.extend(
                c for c in snap.credentials if ident.tenant is None or c.tenant == f"tenants/{ident.tenant}"
            )
        elif config_type == "exports":
            # Every job of the agent's active tenants whose dataset exists; a connector runs those
            # assigned to its name and claims unassigned ones through work leases.
            names = {ds.name for ds in snap.datasets}
            update.exports.jobs.extend(
                job for job in snap.exports if _tenant_of(job.name) in active_tenants and job.dataset in names
            )
        update.version = version_of(update)
        out[config_type] = update
    return out
