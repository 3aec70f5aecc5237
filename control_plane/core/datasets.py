"""Dataset rules: defaults, validation of every field (all problems reported at once) and port
conflicts between datasets collected by the same proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from agents.sources.registry import problems as source_option_problems
from agents.transforms.spec import validate_transformations
from control_plane.core.errors import FieldViolation
from control_plane.core.names import check_id
from floe.protocol import DEFAULT_DATA_HINTS
from floe.protocol import transport as protocol_transport
from floe.v1 import datasets_pb2

__all__ = ["DATA_HINTS", "apply_defaults", "port_conflicts", "transport", "validate_dataset"]

ST = datasets_pb2.SourceType
DATA_HINTS = frozenset({"syslog", "ndjson", "text", "csv", "tsv", "cef", "kv", "sflow", "ipfix", "netflow"})
_MAX_RETENTION_S = 100 * 365 * 86400


def transport(source: datasets_pb2.Source) -> str | None:
    """``udp``, ``tcp`` or None (NATS binds no port)."""
    return protocol_transport(source.type)


def apply_defaults(ds: datasets_pb2.Dataset) -> None:
    """Fill what a caller may leave out."""
    if not ds.data_hint and ds.source.type in DEFAULT_DATA_HINTS:
        ds.data_hint = DEFAULT_DATA_HINTS[ds.source.type]
    if not ds.source.bind_host and transport(ds.source):
        ds.source.bind_host = "0.0.0.0"
    if not ds.destination.connection:
        ds.destination.connection = "default"


def validate_dataset(ds: datasets_pb2.Dataset, prefix: str = "dataset") -> list[FieldViolation]:
    """Every problem with ``ds``, each naming its field (``dataset.source.port``)."""
    out: list[FieldViolation] = []
    src = ds.source
    if len(ds.display_name) > 200:
        out.append(FieldViolation(f"{prefix}.display_name", "must be at most 200 characters"))
    if len(ds.description) > 2000:
        out.append(FieldViolation(f"{prefix}.description", "must be at most 2000 characters"))
    if src.type == ST.SOURCE_TYPE_UNSPECIFIED:
        out.append(FieldViolation(f"{prefix}.source.type", "is required"))
    elif src.type not in ST.values():
        out.append(FieldViolation(f"{prefix}.source.type", f"{src.type} is not a known source type"))
    proto = transport(src)
    if proto is not None:
        if not 1 <= src.port <= 65535:
            out.append(FieldViolation(f"{prefix}.source.port", f"{src.port} is not a port: use 1-65535"))
        try:
            ipaddress.ip_address(src.bind_host)
        except ValueError:
            out.append(FieldViolation(f"{prefix}.source.bind_host", f"{src.bind_host!r} is not an IP address"))
    elif src.type == ST.SOURCE_TYPE_NATS and src.port:
        out.append(FieldViolation(f"{prefix}.source.port", "must be unset for NATS; put the URL in options.url"))
    # The input plugin's own schema: the proxy parses the options with the very same one.
    for key, problem in source_option_problems(src):
        out.append(FieldViolation(f"{prefix}.source.options.{key}", problem))
    if ds.data_hint and ds.data_hint not in DATA_HINTS:
        out.append(
            FieldViolation(f"{prefix}.data_hint", f"{ds.data_hint!r} is not one of {', '.join(sorted(DATA_HINTS))}")
        )
    if ds.destination.connection and not ds.destination.connection.replace("-", "").replace("_", "").isalnum():
        out.append(FieldViolation(f"{prefix}.destination.connection", "must be a connection name such as 'default'"))
    target = ds.proxy.WhichOneof("target")
    if target == "agent":
        violation = check_id(ds.proxy.agent, f"{prefix}.proxy.agent")
        if violation:
            out.append(violation)
    elif target == "selector" and not ds.proxy.selector.match_labels:
        out.append(FieldViolation(f"{prefix}.proxy.selector.match_labels", "must name at least one label"))
    if ds.HasField("retention"):
        seconds = ds.retention.seconds
        if seconds < 3600 or seconds > _MAX_RETENTION_S:
            out.append(FieldViolation(f"{prefix}.retention", "must be between 1h and 100 years"))
    out.extend(validate_transformations(ds.transformations, f"{prefix}.transformations"))
    return out


def _assignment_key(ds: datasets_pb2.Dataset) -> str | None:
    target = ds.proxy.WhichOneof("target")
    if target == "agent":
        return f"agent={ds.proxy.agent}"
    if target == "selector":
        return "selector=" + ",".join(f"{k}={v}" for k, v in sorted(ds.proxy.selector.match_labels.items()))
    return None


def _tenant_of(name: str) -> str:
    """``t`` of ``tenants/t/datasets/d``."""
    return name.split("/")[1] if name.startswith("tenants/") else ""


def port_conflicts(
    candidate: datasets_pb2.Dataset, others: Iterable[datasets_pb2.Dataset], prefix: str = "dataset"
) -> list[FieldViolation]:
    """Active datasets with the same proxy assignment may not bind the same transport and port.

    Overlapping label selectors cannot be judged here; the proxy reports those as a FAILED config.
    """
    proto = transport(candidate.source)
    key = _assignment_key(candidate)
    if not candidate.active or proto is None or key is None:
        return []
    out = []
    for other in others:
        if other.name == candidate.name or not other.active:
            continue
        if _assignment_key(other) != key or transport(other.source) != proto:
            continue
        if other.source.port != candidate.source.port:
            continue
        hosts = {candidate.source.bind_host, other.source.bind_host}
        if len(hosts) == 1 or "0.0.0.0" in hosts or "::" in hosts:
            # Proxies are shared between tenants; never reveal another tenant's dataset names.
            owner = other.name if _tenant_of(other.name) == _tenant_of(candidate.name) else "another tenant"
            out.append(
                FieldViolation(
                    f"{prefix}.source.port",
                    f"{proto.upper()} port {candidate.source.port} is already used by {owner} on the same proxy",
                )
            )
    return out
