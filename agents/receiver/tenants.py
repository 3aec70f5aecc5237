"""Where a receiver may write: the tenant/dataset table of the ``tenants`` config, indexed by id."""

from __future__ import annotations

from dataclasses import dataclass, field

from floe.v1 import agent_pb2, tenants_pb2

__all__ = ["DatasetRoute", "TenantState", "TenantTable"]


@dataclass(frozen=True, slots=True)
class DatasetRoute:
    active: bool
    data_hint: str


@dataclass(frozen=True, slots=True)
class TenantState:
    suspended: bool
    datasets: dict[str, DatasetRoute] = field(default_factory=dict)


def _last(name: str) -> str:
    return name.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class TenantTable:
    """Tenants by id (``acme``), each with its datasets by id (``syslog``)."""

    tenants: dict[str, TenantState] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: agent_pb2.TenantsConfig) -> TenantTable:
        tenants: dict[str, TenantState] = {}
        for route in config.tenants:
            datasets = {_last(d.dataset): DatasetRoute(d.active, d.data_hint) for d in route.datasets}
            tenants[_last(route.tenant)] = TenantState(route.state == tenants_pb2.Tenant.STATE_SUSPENDED, datasets)
        return cls(tenants)

    @staticmethod
    def problems(config: agent_pb2.TenantsConfig) -> list[str]:
        """Every malformed entry of ``config`` (names must be ``tenants/T`` and ``tenants/T/datasets/D``)."""
        out = []
        for i, route in enumerate(config.tenants):
            parts = route.tenant.split("/")
            if len(parts) != 2 or parts[0] != "tenants" or not parts[1]:
                out.append(f"tenants[{i}].tenant: {route.tenant!r} is not a tenant name (tenants/ID)")
                continue
            for j, ds in enumerate(route.datasets):
                if not ds.dataset.startswith(f"{route.tenant}/datasets/") or ds.dataset.count("/") != 3:
                    out.append(f"tenants[{i}].datasets[{j}].dataset: {ds.dataset!r} is not a dataset of {route.tenant}")
        for i, cred in enumerate(config.credentials):
            if not cred.prefix or not cred.argon2_hash:
                out.append(f"credentials[{i}]: prefix and argon2_hash are required ({cred.key or 'unnamed key'})")
        return out
