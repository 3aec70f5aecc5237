"""A scripted stand-in for the receiver's ingest endpoint, for the proxy's failure-injection tests.

It speaks the receiver's wire contract (``POST /{tenant}/{dataset}``, 2xx with
``{"batch_id": ...}``, errors as a status with ``{"error": {"code", "message"}}`` and, for 429/503,
``Retry-After``) and answers from a script, so tests can inject sequences of 503, 429, 401, 404,
slow answers and outages that a real receiver produces only by accident. The real receiver has
its own tests; this double exists only so the proxy's reaction to each answer can be pinned down.

It runs an aiohttp server on 127.0.0.1 in a thread of its own, so it serves both in-process
asyncio tests and real proxy processes; ``stop``/``start`` on the same port simulate an outage.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from floe.protocol import (
    HEADER_BATCH_ID,
    HEADER_CREATED_AT,
    HEADER_DATA_HINT,
    HEADER_ORIGINAL_BYTES,
    HEADER_RECORD_COUNT,
)
from tests.integration.agentkit import free_port

__all__ = ["Answer", "Received", "ScriptedReceiver", "batch_headers_ok", "decompress"]


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status with a JSON error body, optional headers and a delay."""

    status: int = 200
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def body(self, batch_id: str) -> dict[str, object]:
        if 200 <= self.status < 300:
            return {"batch_id": batch_id}
        code = {401: "UNAUTHENTICATED", 404: "NOT_FOUND", 410: "GONE", 413: "TOO_LARGE", 429: "RESOURCE_EXHAUSTED"}
        return {"error": {"code": code.get(self.status, "UNAVAILABLE"), "message": self.message or "scripted"}}


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def batch_id(self) -> str:
        return self.headers.get(HEADER_BATCH_ID, "")

    def records(self) -> bytes:
        return decompress(self.body, self.headers.get("Content-Encoding", ""))


def decompress(body: bytes, encoding: str) -> bytes:
    """``body`` decoded by the standard command-line tools (``zstd -d``, ``gzip -d``), so the test
    proves the proxy writes frames any other tool reads."""
    if encoding in ("zstd", "gzip"):
        return subprocess.run([encoding, "-dc"], input=body, capture_output=True, check=True, timeout=30).stdout
    assert not encoding, f"unexpected Content-Encoding {encoding!r}"
    return body


class ScriptedReceiver:
    """``answers`` is consumed in order, one per POST; when empty, ``default`` answers."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port(socket.SOCK_STREAM)
        self.answers: list[Answer] = []
        self.default = Answer(200)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *answers: Answer, default: Answer | None = None) -> ScriptedReceiver:
        with self._lock:
            self.answers = list(answers)
            if default is not None:
                self.default = default
        return self

    # -- what arrived ------------------------------------------------------------------------

    def posts(self, status: int | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if status is None or r.status == status]

    def delivered(self) -> list[Received]:
        """The POSTs answered 2xx."""
        return [r for r in self.posts() if 200 <= r.status < 300]

    def delivered_ids(self) -> Counter[str]:
        return Counter(r.batch_id for r in self.delivered())

    def delivered_records(self) -> list[bytes]:
        """Every NDJSON line of every delivered batch (decompressed), in arrival order."""
        return [line for r in self.delivered() for line in r.records().splitlines(keepends=True)]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ScriptedReceiver:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"scripted-receiver-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> ScriptedReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_post("/{tenant}/{dataset}", self._handle)
        # Like the real receiver: bodies are kept exactly as sent, never inflated by aiohttp.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, auto_decompress=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still sleeping on a scripted delay end with the server, not after it.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            answer = self.answers.pop(0) if self.answers else self.default
        status = answer.status
        if answer.delay:
            await asyncio.sleep(answer.delay)
            if request.transport is None or request.transport.is_closing():
                status = 499  # the client gave up waiting: it never learns of this answer
        record = Received(request.path, dict(request.headers), body, status, time.monotonic())
        with self._lock:
            self.received.append(record)
        return web.Response(
            status=answer.status,
            text=json.dumps(answer.body(record.batch_id)),
            content_type="application/json",
            headers=answer.headers,
        )


def batch_headers_ok(post: Received) -> bool:
    """Every batch header is present and well-formed."""
    h = post.headers
    return (
        h.get(HEADER_BATCH_ID, "").isdigit()
        and h.get(HEADER_RECORD_COUNT, "").isdigit()
        and h.get(HEADER_ORIGINAL_BYTES, "").isdigit()
        and h.get(HEADER_CREATED_AT, "").isdigit()
        and h.get(HEADER_DATA_HINT) == "ndjson"
        and h.get("Content-Type") == "application/x-ndjson"
    )
