"""Pieces shared by the message-oriented inputs (UDP, TCP, NATS): batch encoders from received
messages to NDJSON, and ``Pipeline``, which gathers messages as they arrive on the event loop,
encodes them off the loop one batch at a time and submits the results to the sink in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from agents.sources.ndjson import encode_table
from agents.sources.plugin import InputContext
from agents.sources.syslog import as_text, parse_syslog
from floe.aio import cancel
from floe.backoff import Backoff

__all__ = ["Encoder", "ListEncoder", "Pipeline", "on_lists", "raw_ndjson", "syslog_ndjson"]

log = logging.getLogger(__name__)

#: (messages, per-message origin, received at in Unix ns) -> (NDJSON, records, drops per reason)
Encoder = Callable[[pa.Array, pa.Array, int], tuple[bytes, int, dict[str, int]]]
#: The same on Python lists, as a ``Pipeline`` gathers them.
ListEncoder = Callable[[list[bytes], list[str], int], tuple[bytes, int, dict[str, int]]]
_TIMESTAMP: Final = pa.timestamp("us", tz="UTC")


def syslog_ndjson(lines: pa.Array, source_ips: pa.Array, received_ns: int) -> tuple[bytes, int, dict[str, int]]:
    """Syslog messages (RFC 3164 / 5424, one per line) parsed and encoded; none is dropped."""
    table = parse_syslog(lines, source_ips, received_ns)
    return encode_table(table), table.num_rows, {}


def raw_ndjson(lines: pa.Array, source_ips: pa.Array, received_ns: int) -> tuple[bytes, int, dict[str, int]]:
    """Messages kept as they are: ``{"message", "source_ip", "received_at"}`` (a trailing newline
    removed, invalid UTF-8 replaced)."""
    text = pc.replace_substring_regex(as_text(lines), pattern=r"(?:\r\n|\n|\r)\z", replacement="", max_replacements=1)
    received = pa.scalar(received_ns // 1000, _TIMESTAMP)
    table = pa.table({"message": text, "source_ip": source_ips, "received_at": pa.repeat(received, len(text))})
    return encode_table(table), table.num_rows, {}


def on_lists(encoder: Encoder) -> ListEncoder:
    """``encoder`` fed from lists (one Arrow conversion per batch)."""

    def encode(messages: list[bytes], origins: list[str], received_ns: int) -> tuple[bytes, int, dict[str, int]]:
        return encoder(pa.array(messages, pa.binary()), pa.array(origins, pa.string()), received_ns)

    return encode


class Pipeline:
    """Messages of one input on their way to the sink.

    ``add`` (on the event loop) queues messages; a task encodes what is queued in a worker thread
    (so the loop keeps reading) and submits each batch in order. When the sink refuses a batch,
    ``drop_refused`` inputs (no acknowledgement to their sender) count it as ``sink_refused``;
    the others keep it, call ``pressure(True)`` so the input stops reading, and retry with backoff.
    ``pressure`` is also called while more than ``high_water`` messages wait, and with False once
    the backlog is below a quarter of that and the sink accepts again.
    """

    def __init__(
        self,
        ctx: InputContext,
        encoder: ListEncoder,
        *,
        pressure: Callable[[bool], None] | None = None,
        drop_refused: bool = False,
        max_batch: int = 16384,
        high_water: int = 65536,
    ) -> None:
        self.ctx = ctx
        self.encoder = encoder
        self.pressure = pressure
        self.drop_refused = drop_refused
        self.max_batch = max_batch
        self.high_water = high_water
        self._messages: list[bytes] = []
        self._origins: list[str] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pressed = False
        self._inflight = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def backlog(self) -> int:
        return len(self._messages)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pipeline-{self.ctx.dataset.name}")

    def add(self, messages: list[bytes], origin: str) -> None:
        """Queue ``messages``, all from ``origin`` (a sender address)."""
        if messages:
            self.add_many(messages, [origin] * len(messages))

    def add_many(self, messages: list[bytes], origins: list[str]) -> None:
        """Queue ``messages``, each with its own origin."""
        if not messages:
            return
        self._messages.extend(messages)
        self._origins.extend(origins)
        self._idle.clear()
        self._wake.set()
        if len(self._messages) > self.high_water:
            self._press(True)

    async def close(self, grace: float = 5.0) -> None:
        """Encode and submit what is queued (for up to ``grace`` seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await cancel(self._task)
        self._task = None
        lost = self._inflight + len(self._messages)
        if lost:
            self.ctx.component.drop("sink_refused", lost)
            self._messages, self._origins, self._inflight = [], [], 0

    def _press(self, on: bool) -> None:
        if on != self._pressed:
            self._pressed = on
            if self.pressure is not None:
                self.pressure(on)

    async def _run(self) -> None:
        comp = self.ctx.component
        backoff = Backoff(0.05, 2.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._messages:
                n = min(len(self._messages), self.max_batch)
                messages, origins = self._messages[:n], self._origins[:n]
                del self._messages[:n], self._origins[:n]
                self._inflight = n
                if len(self._messages) < self.high_water // 4:
                    self._press(False)
                try:
                    ndjson, count, drops = await asyncio.to_thread(self._encode, messages, origins)
                except Exception:
                    log.exception("Encoding a batch failed", extra={"dataset": self.ctx.dataset.name})
                    comp.drop("decode_error", len(messages))
                    self._inflight = 0
                    continue
                for reason, dropped in drops.items():
                    comp.drop(reason, dropped)
                if not count:
                    self._inflight = 0
                    continue
                backoff.reset()
                while not self.ctx.sink.submit(self.ctx.dataset, ndjson, count):
                    if self.drop_refused:
                        comp.drop("sink_refused", count)
                        break
                    self._press(True)
                    await asyncio.sleep(backoff.delay())
                else:
                    comp.events_out += count
                self._inflight = 0
                if len(self._messages) < self.high_water // 4:
                    self._press(False)
            self._idle.set()

    def _encode(self, messages: list[bytes], origins: list[str]) -> tuple[bytes, int, dict[str, int]]:
        return self.encoder(messages, origins, time.time_ns())
