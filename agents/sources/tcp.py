"""TCP inputs: syslog (RFC 6587 newline or octet-counting framing) and raw lines.

Each connection has its own ``SyslogFramer``; the frames of every connection go into one
``Pipeline`` per listener, which parses them as whole batches off the event loop. TCP pushes
back instead of dropping: when the sink refuses (its spool is full) or too many frames wait,
every connection of the listener stops reading (``pause_reading``), so senders block in their
kernel send buffers until the sink takes records again. Frames that cannot be messages are
counted per reason: ``oversize``, ``malformed_frame`` and ``truncated`` (a frame cut short by
the connection closing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from agents.sources.lines import Encoder, Pipeline, on_lists, raw_ndjson, syslog_ndjson
from agents.sources.plugin import Input, InputContext, Option, SourcePlugin
from agents.sources.syslog import DEFAULT_MAX_MESSAGE_SIZE, SyslogFramer
from floe.v1 import datasets_pb2

__all__ = ["PLUGINS", "TcpInput"]

log = logging.getLogger(__name__)
ST = datasets_pb2.SourceType

_FRAMING = {"auto": None, "newline": "newline", "octet_counting": "octet-counting"}
_REASONS = {"bad_frame": "malformed_frame"}


class _Connection(asyncio.Protocol):
    def __init__(self, owner: TcpInput) -> None:
        self.owner = owner
        self.framer = SyslogFramer(owner.max_message_bytes)
        self.framer.framing = owner.framing
        self.transport: asyncio.Transport | None = None
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).removeprefix("::ffff:") if peer else ""
        self.owner.connected(self)

    def data_received(self, data: bytes) -> None:
        self.owner.received(self.framer.feed(data), self.peer, len(data), self.framer)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.received(self.framer.flush(), self.peer, 0, self.framer)
        self.owner.disconnected(self)


class TcpInput(Input):
    """A TCP listener whose connections' frames are parsed in batches."""

    def __init__(self, ctx: InputContext, encoder: Encoder, *, framing: str | None) -> None:
        self.ctx = ctx
        self.framing = framing
        self.max_message_bytes = int(ctx.options.get("max_message_bytes") or DEFAULT_MAX_MESSAGE_SIZE)
        self.pipeline = Pipeline(ctx, on_lists(encoder), pressure=self._pressure)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._paused = False

    async def start(self) -> None:
        host, port = self.ctx.address
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=256)
        self.pipeline.start()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.close()
        for _ in range(3):  # let connection_lost hand over each connection's last frame
            await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        await self.pipeline.close()

    # -- connections ---------------------------------------------------------------------------

    def connected(self, conn: _Connection) -> None:
        self._connections.add(conn)
        if self._paused and conn.transport is not None:
            conn.transport.pause_reading()

    def disconnected(self, conn: _Connection) -> None:
        self._connections.discard(conn)

    def received(self, frames: list[bytes], peer: str, nbytes: int, framer: SyslogFramer) -> None:
        comp = self.ctx.component
        comp.bytes_in += nbytes
        comp.events_in += len(frames)
        dropped = framer.dropped
        if dropped["oversize"] or dropped["bad_frame"] or dropped["truncated"]:
            for reason, count in dropped.items():
                if count:
                    comp.drop(_REASONS.get(reason, reason), count)
                    dropped[reason] = 0
        self.pipeline.add(frames, peer)

    def _pressure(self, on: bool) -> None:
        self._paused = on
        for conn in self._connections:
            if conn.transport is None or conn.transport.is_closing():
                continue
            if on:
                conn.transport.pause_reading()
            else:
                conn.transport.resume_reading()
        self.ctx.component.message = "paused reading: the forwarding path is not taking records" if on else ""
        log.info(
            "TCP listener paused reading" if on else "TCP listener resumed reading",
            extra={"dataset": self.ctx.dataset.name, "connections": len(self._connections)},
        )


# -- plugins ---------------------------------------------------------------------------------

MAX_MESSAGE = Option(
    "max_message_bytes",
    "bytes",
    DEFAULT_MAX_MESSAGE_SIZE,
    "Longest message; longer frames are dropped and counted as oversize.",
    minimum=1,
    maximum=64 << 20,
)
FRAMING = Option(
    "framing",
    "choice",
    "auto",
    "RFC 6587 framing: auto (octet counting when a stream starts with a length), newline or octet_counting.",
    choices=tuple(_FRAMING),
)


def _syslog(ctx: InputContext) -> Input:
    return TcpInput(ctx, syslog_ndjson, framing=_FRAMING[ctx.options["framing"]])


def _raw(ctx: InputContext) -> Input:
    return TcpInput(ctx, raw_ndjson, framing="newline")


PLUGINS = (
    SourcePlugin(
        ST.SOURCE_TYPE_SYSLOG_TCP,
        "syslog_tcp",
        "Syslog over TCP (RFC 6587 newline or octet-counting framing), RFC 3164 and RFC 5424 auto-detected.",
        (FRAMING, MAX_MESSAGE),
        _syslog,
    ),
    SourcePlugin(
        ST.SOURCE_TYPE_RAW_TCP,
        "raw_tcp",
        'Newline-delimited text over TCP, one record per line: {"message", "source_ip", "received_at"}.',
        (MAX_MESSAGE,),
        _raw,
    ),
)
