"""Facts of the Floe protocol that the control plane and the agents must agree on, kept in one
place: which config types each agent kind subscribes to, and which transport each source type
listens on."""

from __future__ import annotations

from floe.v1 import agent_pb2, datasets_pb2

__all__ = ["CONFIG_TYPES", "transport"]

_K = agent_pb2.AgentKind
_ST = datasets_pb2.SourceType

#: The config types each agent kind subscribes to over the control stream.
CONFIG_TYPES: dict[int, tuple[str, ...]] = {
    _K.AGENT_KIND_PROXY: ("datasets",),
    _K.AGENT_KIND_RECEIVER: ("tenants",),
    _K.AGENT_KIND_PIPER: ("datasets",),
    _K.AGENT_KIND_PACKER: ("datasets",),
    _K.AGENT_KIND_QUERY: ("datasets",),
    _K.AGENT_KIND_CONNECTOR: ("datasets",),
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


def transport(source_type: int) -> str | None:
    """``udp`` or ``tcp`` for a source type that binds a port; None for NATS and unknown types."""
    if source_type in _UDP:
        return "udp"
    if source_type in _TCP:
        return "tcp"
    return None
