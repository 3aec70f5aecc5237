"""What every export destination shares: the ``Sink`` contract, the errors that tell the runner
what to do with a batch, and HTTP delivery with the one retry policy (``floe.backoff.Backoff``).

A batch body is a run of *items*, each the bytes one row became under the sink's ``row_sql``
(for Elasticsearch an action line and a document line; otherwise one line). The runner builds
bodies in DuckDB; sinks only frame, send and interpret the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import aiohttp

from agents.connector.spec import JobSpec
from floe.backoff import Backoff
from floe.tls import client_context

__all__ = [
    "DeliveryError",
    "HttpSink",
    "ItemFailure",
    "RejectedBatch",
    "Retryable",
    "Sink",
    "join_items",
    "split_items",
]

T = TypeVar("T")


class DeliveryError(Exception):
    """Raised when a batch could not be delivered: retries ran out, or the destination refused the
    request for a reason only an operator can fix (credentials, URL, index). The job's pass stops
    and its cursor stays put, so the same rows are sent again on the next pass."""


class RejectedBatch(Exception):
    """Raised when the destination refused the batch's data itself (e.g. HEC "invalid data
    format"): resending cannot help, so the batch's items go to the dead-letter queue."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Retryable(Exception):
    """Raised by one attempt that may succeed later (429, 5xx, connection errors)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


@dataclass(frozen=True)
class ItemFailure:
    """One item the destination refused for good, for the DLQ."""

    index: int
    status: int
    error: str
    item: bytes


class Sink(Protocol):
    """One job's destination. Several ``send`` calls may run at once (requests in flight)."""

    #: Lines per item in a body.
    lines_per_item: int

    def row_sql(self) -> str:
        """DuckDB expression giving one row's item bytes, separator included (names: ``SqlParts``;
        ``$source`` is replaced by the file key as a string literal)."""
        ...

    async def send(self, body: bytes, items: int) -> list[ItemFailure]:
        """Deliver ``body`` (``items`` items); return the items refused for good. Raises
        ``DeliveryError`` or ``RejectedBatch``."""
        ...

    async def close(self) -> None: ...


def split_items(body: bytes, lines_per_item: int) -> list[bytes]:
    """The items of a body, each with its trailing newline(s)."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    step = lines_per_item
    return [b"\n".join(lines[i : i + step]) + b"\n" for i in range(0, len(lines), step)]


def join_items(items: list[bytes]) -> bytes:
    return b"".join(items)


class HttpSink:
    """Base of the HTTP sinks: a session with the job's TLS settings and ``attempts``."""

    lines_per_item = 1

    def __init__(self, spec: JobSpec, *, ca_file: str = "", timeout: float = 60.0) -> None:
        self.spec = spec
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_context(ca_file), limit=8),
            timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=True,
        )

    async def attempts(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it returns, retrying ``Retryable`` with backoff (a server's
        Retry-After wins) up to the job's ``max_attempts``; then ``DeliveryError``."""
        backoff = Backoff(self.spec.initial_backoff, self.spec.max_backoff)
        for n in range(1, self.spec.max_attempts + 1):
            try:
                return await attempt()
            except Retryable as exc:
                if n == self.spec.max_attempts:
                    raise DeliveryError(f"{what} failed after {n} attempts: {exc}") from exc
                await asyncio.sleep(backoff.delay(exc.delay))
            except (aiohttp.ClientError, TimeoutError) as exc:
                if n == self.spec.max_attempts:
                    raise DeliveryError(f"{what} failed after {n} attempts: {_describe(exc)}") from exc
                await asyncio.sleep(backoff.delay())
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self.session.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the request timed out"
    return f"{type(exc).__name__}: {exc}"
