"""gRPC-web on the control plane's HTTP port: a generic bridge that forwards each gRPC-web call
to the control plane's own gRPC server, so browsers reach exactly the servicers, interceptors,
authentication and business rules the SDK uses, with no per-method code.

A call is ``POST /{package.Service}/{Method}`` with ``Content-Type: application/grpc-web+proto``
(or ``application/grpc-web``) and a body of length-prefixed frames. The bridge looks the method
up in the protobuf descriptor pool (unary or server-streaming; client streaming is not possible
over gRPC-web), calls it over an in-process channel with the request's ``authorization`` and
``x-*`` headers as metadata, and streams back data frames followed by one trailer frame
(``grpc-status``, ``grpc-message``, ``grpc-status-details-bin``). The base64 ``grpc-web-text``
variant is refused with 415: every gRPC-web client that matters here (Connect's transport)
speaks binary.

The bridge reaches the gRPC server on a second, loopback-only, plaintext port that only it uses;
with mutual TLS configured it is off (a plaintext port would bypass client certificates).
"""

from __future__ import annotations

import base64
import logging
import struct
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import descriptor_pool

from control_plane.auth.ratelimit import BRIDGE_HEADER, BRIDGE_TOKEN

__all__ = ["GrpcWebBridge"]

log = logging.getLogger(__name__)

_CONTENT_TYPES = ("application/grpc-web+proto", "application/grpc-web")
_FORWARDED = ("authorization", "x-user-agent", "x-grpc-web", "grpc-timeout")
_MAX_MESSAGE = 16 << 20


def _frame(flag: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def _trailers(code: grpc.StatusCode, message: str, details: bytes | None = None) -> bytes:
    lines = [f"grpc-status: {code.value[0]}", f"grpc-message: {_percent(message)}"]
    if details:
        lines.append("grpc-status-details-bin: " + base64.b64encode(details).decode().rstrip("="))
    return _frame(0x80, ("\r\n".join(lines) + "\r\n").encode())


def _percent(text: str) -> str:
    """grpc-message is percent-encoded (the gRPC HTTP/2 spec)."""
    out = []
    for byte in text.encode():
        out.append(chr(byte) if 0x20 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}")
    return "".join(out)


def _unframe(body: bytes) -> bytes:
    """The one request message of a gRPC-web body (unary and server-streaming calls send one)."""
    if len(body) < 5:
        raise ValueError("the body is not a gRPC-web frame (shorter than its 5-byte prefix)")
    flag, length = struct.unpack(">BI", body[:5])
    if flag & 0x01:
        raise ValueError("compressed gRPC-web frames are not supported")
    if len(body) != 5 + length:
        raise ValueError("the body must hold exactly one gRPC-web message frame")
    return body[5:]


class GrpcWebBridge:
    """``add_routes(app)`` mounts the bridge; ``start(target)`` opens the channel to the gRPC port."""

    def __init__(self) -> None:
        self._channel: grpc.aio.Channel | None = None

    async def start(self, target: str) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", _MAX_MESSAGE)])

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(r"/{service:floe\.v1\.[A-Za-z]+}/{method:[A-Za-z]+}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in _CONTENT_TYPES:
            return web.json_response(
                {"error": {"code": "unsupported_media_type", "message": f"use {_CONTENT_TYPES[0]}, not {ctype!r}"}},
                status=415,
            )
        service, method = request.match_info["service"], request.match_info["method"]
        try:
            desc = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
        except KeyError:
            desc = None
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/grpc-web+proto"})
        if desc is None or self._channel is None or desc.client_streaming:
            await response.prepare(request)
            why = "gRPC-web is off (mutual TLS is configured)" if self._channel is None else "unknown method"
            code = grpc.StatusCode.UNAVAILABLE if self._channel is None else grpc.StatusCode.UNIMPLEMENTED
            await response.write(_trailers(code, f"{service}/{method}: {why}"))
            await response.write_eof()
            return response
        try:
            message = _unframe(await request.read())
        except ValueError as exc:
            await response.prepare(request)
            await response.write(_trailers(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
            await response.write_eof()
            return response
        metadata = tuple((k.lower(), v) for k, v in request.headers.items() if k.lower() in _FORWARDED)
        metadata += (("x-forwarded-for", request.remote or ""), (BRIDGE_HEADER, BRIDGE_TOKEN))
        path = f"/{service}/{method}"
        await response.prepare(request)
        call: Any = None
        try:
            if desc.server_streaming:
                call = self._channel.unary_stream(path)(message, metadata=metadata)
                async for item in call:
                    await response.write(_frame(0x00, item))
            else:
                call = self._channel.unary_unary(path)(message, metadata=metadata)
                await response.write(_frame(0x00, await call))
            await response.write(_trailers(grpc.StatusCode.OK, ""))
        except grpc.aio.AioRpcError as exc:
            details = next((v for k, v in exc.trailing_metadata() or () if k == "grpc-status-details-bin"), None)
            await response.write(_trailers(exc.code(), exc.details() or "", details))
        except (ConnectionResetError, OSError):  # the browser went away: end the upstream call
            if call is not None:
                call.cancel()
            # Routine (a page closed or reloaded while a stream was open): not an error to log.
            log.debug("gRPC-web client went away", extra={"method": path})
            return response
        await response.write_eof()
        return response
