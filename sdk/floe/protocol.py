"""Facts of the Floe protocol that the control plane and the agents must agree on, kept in one
place: which config types each agent kind subscribes to, which transport each source type
listens on, and the HTTP batch headers proxies send to receivers."""

from __future__ import annotations

from floe.v1 import agent_pb2, datasets_pb2

__all__ = [
    "CONFIG_TYPES",
    "DEFAULT_DATA_HINTS",
    "HEADER_BATCH_ID",
    "HEADER_CREATED_AT",
    "HEADER_DATA_HINT",
    "HEADER_ORIGINAL_BYTES",
    "HEADER_RECORD_COUNT",
    "transport",
]

# Batch headers of ``POST {receiver}/{tenant}/{dataset}`` (proxy -> receiver). A receiver records
# them with the object and derives absent ones (any HTTP client may post without them).
#: Unique id of the batch at its sender; a retried batch keeps its id, so the receiver stores it
#: under the same object name (a retry overwrites, never duplicates).
HEADER_BATCH_ID = "X-Floe-Batch-Id"
#: Records in the (uncompressed) body.
HEADER_RECORD_COUNT = "X-Floe-Record-Count"
#: Size of the body before compression, in bytes.
HEADER_ORIGINAL_BYTES = "X-Floe-Original-Bytes"
#: When the batch was created at its sender, Unix nanoseconds.
HEADER_CREATED_AT = "X-Floe-Created-At"
#: The body's format: ``ndjson`` (what proxies send), ``text``, ``syslog``, ``csv``... It picks
#: piper's parser and ends the raw object's name.
HEADER_DATA_HINT = "X-Floe-Data-Hint"

_K = agent_pb2.AgentKind
_ST = datasets_pb2.SourceType

#: The config types each agent kind subscribes to over the control stream.
CONFIG_TYPES: dict[int, tuple[str, ...]] = {
    _K.AGENT_KIND_PROXY: ("datasets",),
    _K.AGENT_KIND_RECEIVER: ("tenants",),
    _K.AGENT_KIND_PIPER: ("datasets",),
    _K.AGENT_KIND_PACKER: ("datasets",),
    _K.AGENT_KIND_QUERY: ("datasets",),
    _K.AGENT_KIND_CONNECTOR: ("datasets", "exports"),
}

_UDP = frozenset(
    {
        _ST.SOURCE_TYPE_SYSLOG_UDP,
        _ST.SOURCE_TYPE_SFLOW,
        _ST.SOURCE_TYPE_IPFIX,
        _ST.SOURCE_TYPE_NETFLOW,
        _ST.SOURCE_TYPE_RAW_UDP,
    }
)
_TCP = frozenset({_ST.SOURCE_TYPE_SYSLOG_TCP, _ST.SOURCE_TYPE_HTTP, _ST.SOURCE_TYPE_RAW_TCP})


#: The data hint of a dataset that does not set one, by source type.
DEFAULT_DATA_HINTS: dict[int, str] = {
    _ST.SOURCE_TYPE_SYSLOG_UDP: "syslog",
    _ST.SOURCE_TYPE_SYSLOG_TCP: "syslog",
    _ST.SOURCE_TYPE_HTTP: "ndjson",
    _ST.SOURCE_TYPE_SFLOW: "sflow",
    _ST.SOURCE_TYPE_IPFIX: "ipfix",
    _ST.SOURCE_TYPE_NETFLOW: "netflow",
    _ST.SOURCE_TYPE_NATS: "ndjson",
    _ST.SOURCE_TYPE_RAW_UDP: "text",
    _ST.SOURCE_TYPE_RAW_TCP: "text",
}


def transport(source_type: int) -> str | None:
    """``udp`` or ``tcp`` for a source type that binds a port; None for NATS and unknown types."""
    if source_type in _UDP:
        return "udp"
    if source_type in _TCP:
        return "tcp"
    return None
