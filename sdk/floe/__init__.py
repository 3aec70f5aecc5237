"""Floe SDK: a typed client for the control plane, the ``floe`` CLI, and the generated API in
``floe.v1`` (never edited by hand)."""

from floe.client import DEFAULT_TARGET, AsyncClient, Client
from floe.errors import FieldViolation, RpcError

__all__ = ["DEFAULT_TARGET", "AsyncClient", "Client", "FieldViolation", "RpcError"]
