"""The connector's standard output, as NDJSON (one object per line): for trying a job's query,
or for piping into another tool. Logs go to stderr, so the two never mix."""

from __future__ import annotations

import asyncio
import sys
import threading

from agents.connector.sinks.common import ItemFailure

__all__ = ["StdoutSink"]


class StdoutSink:
    lines_per_item = 1

    def row_sql(self) -> str:
        return "doc || chr(10)"

    async def send(self, body: bytes, items: int) -> list[ItemFailure]:
        # A slow reader of the pipe must not stall the event loop.
        await asyncio.to_thread(_write, body)
        return []

    async def close(self) -> None:
        return None


_lock = threading.Lock()


def _write(body: bytes) -> None:
    with _lock:  # concurrent batches must not interleave their lines
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
