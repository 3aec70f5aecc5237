"""UDP inputs: syslog, raw lines, sFlow v5, IPFIX and NetFlow v9, sharing one batched receiver.

Per listener, a receiver thread drains the socket with non-blocking ``recvfrom_into`` straight
into one large buffer (no object per datagram but its sender's address) and hands whole batches
(up to 4,096 datagrams or 2 MiB, or what arrived within 10 ms) to a decoder thread, which turns
a batch into one NDJSON buffer; the event loop only counts it and passes it to the sink. The
receiver never waits for decoding, Arrow kernels release the GIL, and a large ``SO_RCVBUF``
absorbs bursts, so the asyncio loop never handles a datagram (the default asyncio datagram
endpoint loses packets above ~30k/s on a 2-core machine). When decoding falls behind, the batch
queue fills, the receiver waits, and the kernel drops what no longer fits its buffer: those drops
are read from ``/proc/net/udp`` and reported as ``kernel_buffer_full``.

UDP is at-most-once: a batch the sink refuses (its spool is full) is dropped and counted as
``sink_refused``. One datagram is one message (RFC 5426): a trailing newline is removed, inner
newlines stay part of the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import select
import socket
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from agents.sources.flow_common import Drops
from agents.sources.lines import Encoder, raw_ndjson, syslog_ndjson
from agents.sources.ndjson import encode_records
from agents.sources.netflow import FlowDecoder
from agents.sources.plugin import Input, InputContext, Option, SourcePlugin
from agents.sources.sflow import SFlowDecoder
from floe.aio import cancel
from floe.v1 import datasets_pb2

__all__ = ["PLUGINS", "DatagramBatch", "UdpInput", "kernel_drops"]

log = logging.getLogger(__name__)
ST = datasets_pb2.SourceType

MAX_DATAGRAM: Final = 65535
BATCH_DATAGRAMS: Final = 4096
BATCH_BYTES: Final = 2 << 20
LINGER_S: Final = 0.01
QUEUED_BATCHES: Final = 16
_SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
_RMEM_MAX = Path("/proc/sys/net/core/rmem_max")


@dataclass
class DatagramBatch:
    """Datagrams received back to back: their bytes one after another in ``data``, where datagram
    ``i`` spans ``offsets[i]:offsets[i + 1]``, and each sender's address."""

    data: bytearray
    offsets: array[int]
    addrs: list[str]
    received_ns: int
    truncated: int = 0
    """Datagrams longer than the receive buffer (kept cut short)."""

    def __len__(self) -> int:
        return len(self.addrs)

    @property
    def nbytes(self) -> int:
        return self.offsets[-1]

    def lines(self) -> pa.Array:
        """The datagrams as an Arrow binary array over ``data`` (no copy)."""
        n = len(self.addrs)
        return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(self.offsets), pa.py_buffer(self.data)])

    def source_ips(self) -> pa.Array:
        ips = pa.array(self.addrs, pa.string())
        if any(a.startswith("::ffff:") for a in self.addrs[:1]):
            ips = pc.replace_substring_regex(ips, pattern=r"^::ffff:(\d+\.\d+\.\d+\.\d+)$", replacement=r"\1")
        return ips

    def packets(self) -> Iterator[tuple[bytes, str]]:
        view, offsets = memoryview(self.data), self.offsets
        for i, addr in enumerate(self.addrs):
            yield bytes(view[offsets[i] : offsets[i + 1]]), addr.removeprefix("::ffff:")


@dataclass
class Decoded:
    """What a batch became: NDJSON records and what was dropped on the way, per reason."""

    ndjson: bytes = b""
    count: int = 0
    drops: dict[str, int] = field(default_factory=dict)


class BatchDecoder(Protocol):
    """Turns datagram batches into records. Called from one decoder thread only."""

    def decode(self, batch: DatagramBatch) -> Decoded: ...

    def tick(self) -> dict[str, int]:
        """Called about once a second: drops found by periodic housekeeping."""
        ...


def _non_empty(batch: DatagramBatch, drops: dict[str, int]) -> tuple[pa.Array, pa.Array]:
    lines, ips = batch.lines(), batch.source_ips()
    if batch.truncated:
        drops["truncated"] = batch.truncated
    keep = pc.greater(pc.binary_length(lines), 0)
    empty = len(lines) - pc.sum(keep).as_py() if len(lines) else 0
    if empty:
        drops["empty"] = empty
        lines, ips = pc.filter(lines, keep), pc.filter(ips, keep)
    return lines, ips


class LineBatches:
    """Datagrams as messages (syslog or raw lines), encoded as one Arrow batch."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def decode(self, batch: DatagramBatch) -> Decoded:
        out = Decoded()
        lines, ips = _non_empty(batch, out.drops)
        out.ndjson, out.count, drops = self.encoder(lines, ips, batch.received_ns)
        out.drops.update(drops)
        return out

    def tick(self) -> dict[str, int]:
        return {}


class FlowBatches:
    """Flow export datagrams through a stateful decoder (templates per exporter)."""

    def __init__(self, decoder: FlowDecoder | SFlowDecoder) -> None:
        self.decoder = decoder
        self._seen: dict[str, int] = {}

    def _new_drops(self) -> dict[str, int]:
        counts = self.decoder.drops.counts
        new = {k: v - self._seen.get(k, 0) for k, v in counts.items() if v != self._seen.get(k, 0)}
        self._seen = dict(counts)
        return new

    def decode(self, batch: DatagramBatch) -> Decoded:
        records: list[dict[str, Any]] = []
        decode = self.decoder.decode
        for packet, exporter in batch.packets():
            records.extend(decode(packet, exporter))
        drops = self._new_drops()
        if batch.truncated:
            drops["truncated"] = drops.get("truncated", 0) + batch.truncated
        return Decoded(encode_records(records), len(records), drops)

    def tick(self) -> dict[str, int]:
        if isinstance(self.decoder, FlowDecoder):
            self.decoder.expire()
        return self._new_drops()


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for ``sock`` (its receive buffer was full), from /proc."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    table = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
    try:
        with open(table, encoding="ascii") as fh:
            next(fh, None)
            for line in fh:
                cols = line.split()
                if len(cols) > 12 and cols[9] == inode:
                    return int(cols[-1])
    except OSError:
        return None
    return None


def _set_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for ``wanted`` bytes of receive buffer (beyond net.core.rmem_max when privileged);
    the size granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, wanted)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports it doubled


class UdpInput(Input):
    """A bound UDP socket, its receiver and decoder threads. See the module docstring."""

    def __init__(self, ctx: InputContext, decoder: BatchDecoder) -> None:
        self.ctx = ctx
        self.decoder = decoder
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batches: queue.Queue[DatagramBatch | None] = queue.Queue(QUEUED_BATCHES)
        self._running = False
        self._threads: list[threading.Thread] = []
        self._kernel_task: asyncio.Task[None] | None = None
        self._kernel_seen = 0

    async def start(self) -> None:
        host, port = self.ctx.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            wanted = int(self.ctx.options["recv_buffer_bytes"])
            granted = _set_receive_buffer(sock, wanted)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._kernel_seen = kernel_drops(sock) or 0
        name = self.ctx.dataset.name.rsplit("/", 1)[-1]
        self._threads = [
            threading.Thread(target=self._receive, name=f"udp-recv-{name}", daemon=True),
            threading.Thread(target=self._decode, name=f"udp-decode-{name}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._kernel_task = asyncio.create_task(self._watch_kernel(), name=f"udp-drops-{name}")
        if granted < wanted:
            note = f"receive buffer is {granted} bytes, not {wanted}{_rmem_note()}"
            comp = self.ctx.component
            comp.message = f"{comp.message}; {note}" if comp.message else note
            log.warning(
                "UDP receive buffer is smaller than configured",
                extra={"dataset": self.ctx.dataset.name, "granted": granted, "wanted": wanted},
            )

    async def stop(self) -> None:
        self._running = False
        sock = self._sock
        if sock is not None:
            # Wakes the receiver's poll at once (ENOTCONN on an unconnected socket, but it wakes).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._threads = []
        await cancel(self._kernel_task)
        if sock is not None:
            self._count_kernel_drops(kernel_drops(sock))
            sock.close()
            self._sock = None

    # -- threads -----------------------------------------------------------------------------

    def _receive(self) -> None:
        """Fill batches from the socket until stopped; the decoder thread gets each one."""
        sock = self._sock
        assert sock is not None
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        recv = sock.recvfrom_into
        put = self._batches.put
        monotonic = time.monotonic
        trunc = socket.MSG_TRUNC
        try:
            while self._running:
                data = bytearray(BATCH_BYTES + MAX_DATAGRAM)
                view = memoryview(data)
                offsets = array("i", [0])
                addrs: list[str] = []
                append_offset, append_addr = offsets.append, addrs.append
                end = 0
                truncated = 0
                deadline = 0.0
                received_ns = 0
                while end < BATCH_BYTES and len(addrs) < BATCH_DATAGRAMS:
                    try:
                        n, addr = recv(view[end:], MAX_DATAGRAM, trunc)
                    except BlockingIOError:
                        if not addrs:
                            poller.poll(100)
                            if not self._running:
                                break
                            continue
                        left = deadline - monotonic()
                        if left <= 0 or not self._running:
                            break
                        poller.poll(max(1, int(left * 1000)))
                        continue
                    except OSError as exc:
                        if exc.errno in (errno.EINTR, errno.ECONNREFUSED):
                            continue
                        raise
                    if addr is None:  # woken by shutdown()
                        if not self._running:
                            break
                        continue
                    if not addrs:
                        deadline = monotonic() + LINGER_S
                        received_ns = time.time_ns()
                    if n > MAX_DATAGRAM:
                        n = MAX_DATAGRAM
                        truncated += 1
                    end += n
                    append_offset(end)
                    append_addr(addr[0])
                if addrs:
                    put(DatagramBatch(data, offsets, addrs, received_ns, truncated))
        except Exception:
            log.exception("UDP receiver failed", extra={"dataset": self.ctx.dataset.name})
        finally:
            put(None)

    def _decode(self) -> None:
        """Decode batches in arrival order and hand the results to the event loop."""
        last_tick = time.monotonic()
        while True:
            try:
                batch = self._batches.get(timeout=1.0)
            except queue.Empty:
                self._tick()
                last_tick = time.monotonic()
                continue
            if batch is None:
                self._tick()
                return
            try:
                decoded = self.decoder.decode(batch)
            except Exception:
                log.exception("Decoding a UDP batch failed", extra={"dataset": self.ctx.dataset.name})
                decoded = Decoded(drops={"decode_error": len(batch)})
            self._call(self._deliver, len(batch), batch.nbytes, decoded)
            if time.monotonic() - last_tick >= 1.0:
                self._tick()
                last_tick = time.monotonic()

    def _tick(self) -> None:
        try:
            drops = self.decoder.tick()
        except Exception:
            log.exception("UDP decoder housekeeping failed", extra={"dataset": self.ctx.dataset.name})
            return
        if drops:
            self._call(self._deliver, 0, 0, Decoded(drops=drops))

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closing: the agent is stopping
            self._loop.call_soon_threadsafe(fn, *args)

    # -- event loop ----------------------------------------------------------------------------

    def _deliver(self, datagrams: int, nbytes: int, decoded: Decoded) -> None:
        comp = self.ctx.component
        comp.events_in += datagrams
        comp.bytes_in += nbytes
        for reason, count in decoded.drops.items():
            comp.drop(reason, count)
        if decoded.count:
            if self.ctx.sink.submit(self.ctx.dataset, decoded.ndjson, decoded.count):
                comp.events_out += decoded.count
            else:
                comp.drop("sink_refused", decoded.count)

    async def _watch_kernel(self) -> None:
        while self._sock is not None:
            await asyncio.sleep(1.0)
            sock = self._sock
            if sock is not None:
                self._count_kernel_drops(await asyncio.to_thread(kernel_drops, sock))

    def _count_kernel_drops(self, total: int | None) -> None:
        if total is not None and total > self._kernel_seen:
            self.ctx.component.drop("kernel_buffer_full", total - self._kernel_seen)
            self._kernel_seen = total


# -- plugins ---------------------------------------------------------------------------------


def _rmem_note() -> str:
    try:
        return f": raise net.core.rmem_max (now {int(_RMEM_MAX.read_text())}) or grant CAP_NET_ADMIN"
    except (OSError, ValueError):
        return ""


RECV_BUFFER = Option(
    "recv_buffer_bytes",
    "bytes",
    8 << 20,
    "Kernel receive buffer of the socket (SO_RCVBUF); absorbs bursts while a batch is decoded.",
    minimum=4096,
    maximum=1 << 31,
)
TEMPLATE_TIMEOUT = Option(
    "template_timeout",
    "duration",
    1800.0,
    "Forget an exporter's template not refreshed for this long.",
    minimum=1.0,
)


def _syslog(ctx: InputContext) -> Input:
    return UdpInput(ctx, LineBatches(syslog_ndjson))


def _raw(ctx: InputContext) -> Input:
    return UdpInput(ctx, LineBatches(raw_ndjson))


def _sflow(ctx: InputContext) -> Input:
    return UdpInput(ctx, FlowBatches(SFlowDecoder(Drops())))


def _flows(ctx: InputContext) -> Input:
    return UdpInput(ctx, FlowBatches(FlowDecoder(template_timeout=ctx.options["template_timeout"], drops=Drops())))


PLUGINS = (
    SourcePlugin(
        ST.SOURCE_TYPE_SYSLOG_UDP,
        "syslog_udp",
        "Syslog over UDP (RFC 5426), RFC 3164 and RFC 5424 auto-detected; one datagram is one message.",
        (RECV_BUFFER,),
        _syslog,
    ),
    SourcePlugin(
        ST.SOURCE_TYPE_RAW_UDP,
        "raw_udp",
        'Any datagrams, one record each: {"message", "source_ip", "received_at"}.',
        (RECV_BUFFER,),
        _raw,
    ),
    SourcePlugin(
        ST.SOURCE_TYPE_SFLOW,
        "sflow",
        "sFlow v5: one record per flow sample (sampled header decoded to L2-L4) or counter sample.",
        (RECV_BUFFER,),
        _sflow,
    ),
    SourcePlugin(
        ST.SOURCE_TYPE_IPFIX,
        "ipfix",
        "IPFIX (and NetFlow v9) export packets: one record per flow, IANA field names, exporter address.",
        (RECV_BUFFER, TEMPLATE_TIMEOUT),
        _flows,
    ),
    SourcePlugin(
        ST.SOURCE_TYPE_NETFLOW,
        "netflow",
        "NetFlow v9 (and IPFIX) export packets: one record per flow, IANA field names, exporter address.",
        (RECV_BUFFER, TEMPLATE_TIMEOUT),
        _flows,
    ),
)
