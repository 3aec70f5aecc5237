"""The webhook: ``POST /{tenant}/{dataset}`` (also ``/webhook/{tenant}/{dataset}``) into the spool.

Checks run in this order, each answering JSON ``{"error": {"code", "message", "status"}}``:

1. no ``tenants`` config yet -> 503 ``not_ready`` (retry later; nothing can be checked);
2. a peer over its budget of authentication failures -> 429 ``too_many_auth_failures``;
3. the bearer key -> 401 (``missing_credentials``, ``invalid_key``, ``expired_key``,
   ``wrong_tenant``). Authentication comes first so that only a key holder learns which
   tenants and datasets exist; a key limited to one tenant gets 401 for any other tenant;
4. the tenant -> 410 ``unknown_tenant`` or ``tenant_suspended``;
5. the dataset -> 404 ``unknown_dataset`` or ``dataset_inactive``;
6. ``Content-Encoding`` -> 415 ``unsupported_encoding``; batch headers -> 400 ``invalid_header``;
7. ``Content-Length`` over ``max_body_bytes`` -> 413 ``body_too_large`` (before reading; a body
   without a length is counted as it streams);
8. the body: empty -> 400 ``empty_body``; not framed as its encoding -> 400 ``bad_encoding``;
9. the spool: full -> 503 ``spool_full`` with ``Retry-After``; closed or failing -> 503.

Steps 1-7 also run as the ``Expect: 100-continue`` handler, so a client that asks first is
refused before it sends a large body.

Acknowledgement: ``ack: disk`` (default) answers 200 ``{"batch_id"}`` only once the body is
durable in the spool (group commit). ``ack: memory`` answers 202 as soon as the body is read and
writes it behind the response: a crash or power loss in the next few milliseconds loses batches
the sender was told were accepted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from prometheus_client import Counter

from agents.receiver.auth import AuthError, IngestAuth
from agents.receiver.framing import FramingError, check_framing, encoding_of
from agents.receiver.naming import DATA_HINT_RE, seconds_from_ns
from agents.receiver.tenants import TenantTable
from agents.runtime.health import Component
from agents.runtime.spool import BatchMeta, Spool, SpoolClosedError, SpoolError, SpoolFull
from floe.protocol import (
    HEADER_BATCH_ID,
    HEADER_CREATED_AT,
    HEADER_DATA_HINT,
    HEADER_ORIGINAL_BYTES,
    HEADER_RECORD_COUNT,
)
from floe.ratelimit import FailureLimiter

__all__ = ["Ingest"]

log = logging.getLogger(__name__)

REQUESTS = Counter("floe_receiver_requests", "Ingest requests by answer.", ["status", "code"])
BODY_BYTES = Counter("floe_receiver_accepted_bytes", "Bytes of accepted request bodies (as sent).")

_BATCH_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")
# X-Floe-Created-At must be Unix nanoseconds: this catches seconds and milliseconds by mistake.
_CREATED_MIN_NS, _CREATED_MAX_NS = 10**18, 4 * 10**18
_RETRY_AFTER_FULL = 5
_ADMITTED = "floe.admitted"


@dataclass(frozen=True, slots=True)
class _Admitted:
    meta: BatchMeta


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    resp = web.json_response(
        {"error": {"code": code, "message": message, "status": status}}, status=status, headers=headers
    )
    return resp


class _BadHeader(ValueError):
    pass


def _int_header(request: web.Request, name: str) -> int:
    value = request.headers.get(name, "").strip()
    if not value:
        return 0
    if not value.isdigit() or len(value) > 19:
        raise _BadHeader(f"{name} must be a non-negative integer, got {value[:40]!r}.")
    return int(value)


class Ingest:
    """The webhook application. ``table`` is None until the first ``tenants`` config applies."""

    def __init__(
        self,
        spool: Spool,
        auth: IngestAuth,
        component: Component,
        *,
        receiver: str,
        max_body_bytes: int,
        ack: str,
        on_append: Callable[[], None],
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.spool = spool
        self.auth = auth
        self.component = component
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes
        self.ack = ack
        self.on_append = on_append
        self.limiter = limiter or FailureLimiter()
        self.table: TenantTable | None = None
        self.full_at = 0.0  # time.monotonic() of the last SpoolFull
        self._background: set[asyncio.Task[str]] = set()
        self._runner: web.AppRunner | None = None
        self.address = ""

    # -- serving -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        # aiohttp's own body limit is disabled: _read_body enforces max_body_bytes as a JSON 413.
        app = web.Application(client_max_size=self.max_body_bytes + 1)
        for path in ("/{tenant}/{dataset}", "/webhook/{tenant}/{dataset}"):
            app.router.add_route("POST", path, self.handle, expect_handler=self.expect)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on ``host:port`` (0: any free port), over TLS with ``ssl_context``; return the
        bound ``host:port``."""
        # auto_decompress off: bodies are spooled exactly as sent, never inflated here.
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, backlog=1024, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {host}:{port} for the webhook (webhook_listen): {exc.strerror}") from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        self.address = f"{host}:{bound}"
        return self.address

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish, and wait for memory-acked writes."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- requests ----------------------------------------------------------------------------

    def _refuse(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        self.component.drop(code)
        if status >= 500:
            self.component.errors += 1
        REQUESTS.labels(str(status), code).inc()
        return _error(status, code, message, headers)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        admitted = await self._admit(request)
        request[_ADMITTED] = admitted
        if isinstance(admitted, web.StreamResponse):
            admitted.force_close()  # the client holds its body back; nothing to drain
            return admitted
        if request.version == HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
            return None
        return self._refuse(417, "expectation_failed", "Only 'Expect: 100-continue' is supported.")

    async def _admit(self, request: web.Request) -> _Admitted | web.Response:
        tenant, dataset = request.match_info["tenant"], request.match_info["dataset"]
        table = self.table
        if table is None:
            return self._refuse(
                503, "not_ready", "The receiver has no tenants config yet; retry shortly.", {"Retry-After": "5"}
            )
        peer = request.remote or ""
        wait = self.limiter.retry_after(peer)
        if wait:
            return self._refuse(
                429,
                "too_many_auth_failures",
                "Too many requests with invalid credentials from this address; retry later with a valid key.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        try:
            await self.auth.check(request.headers.get(hdrs.AUTHORIZATION, ""), tenant)
        except AuthError as exc:
            self.limiter.record_failure(peer)
            return self._refuse(401, exc.code, exc.message, {"WWW-Authenticate": 'Bearer realm="floe"'})
        state = table.tenants.get(tenant)
        if state is None:
            return self._refuse(410, "unknown_tenant", f"Tenant {tenant!r} does not exist.")
        if state.suspended:
            return self._refuse(410, "tenant_suspended", f"Tenant {tenant!r} is suspended and accepts no data.")
        route = state.datasets.get(dataset)
        if route is None:
            return self._refuse(404, "unknown_dataset", f"Tenant {tenant!r} has no dataset {dataset!r}.")
        if not route.active:
            return self._refuse(
                404, "dataset_inactive", f"Dataset {dataset!r} of tenant {tenant!r} is inactive and accepts no data."
            )
        encoding = encoding_of(request.headers.get(hdrs.CONTENT_ENCODING, ""))
        if encoding is None:
            return self._refuse(
                415,
                "unsupported_encoding",
                f"Content-Encoding {request.headers[hdrs.CONTENT_ENCODING]!r} is not supported; "
                "send gzip, zstd or identity.",
            )
        try:
            meta = self._meta(request, tenant, dataset, encoding, route.data_hint)
        except _BadHeader as exc:
            return self._refuse(400, "invalid_header", str(exc))
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return self._refuse(
                413,
                "body_too_large",
                f"The body has {length} bytes; this receiver takes at most {self.max_body_bytes}.",
            )
        return _Admitted(meta)

    def _meta(self, request: web.Request, tenant: str, dataset: str, encoding: str, route_hint: str) -> BatchMeta:
        headers = request.headers
        batch_id = headers.get(HEADER_BATCH_ID, "").strip()
        if batch_id and not _BATCH_ID_RE.fullmatch(batch_id):
            raise _BadHeader(f"{HEADER_BATCH_ID} must be 1-128 printable ASCII characters without spaces.")
        created_ns = _int_header(request, HEADER_CREATED_AT)
        if created_ns and not _CREATED_MIN_NS <= created_ns < _CREATED_MAX_NS:
            raise _BadHeader(f"{HEADER_CREATED_AT} must be Unix time in nanoseconds, got {created_ns}.")
        hint = headers.get(HEADER_DATA_HINT, "").strip() or route_hint or _hint_of(headers.get(hdrs.CONTENT_TYPE, ""))
        if not DATA_HINT_RE.fullmatch(hint):
            raise _BadHeader(f"{HEADER_DATA_HINT} must be 1-32 lowercase letters, digits or '_', got {hint[:40]!r}.")
        return BatchMeta(
            tenant=tenant,
            dataset=dataset,
            data_hint=hint,
            content_encoding=encoding,
            records=_int_header(request, HEADER_RECORD_COUNT),
            original_bytes=_int_header(request, HEADER_ORIGINAL_BYTES),
            created_at=seconds_from_ns(created_ns or time.time_ns()),
            # Without the sender's id, one picked here once: the batch's object name derives from it.
            batch_id=batch_id or f"{self.receiver}-{secrets.token_hex(8)}",
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        admitted = request.get(_ADMITTED)
        if admitted is None:
            admitted = await self._admit(request)
        if isinstance(admitted, web.StreamResponse):
            if not request.content.at_eof():
                admitted.force_close()  # don't read a body we refused; close instead
            return admitted
        assert isinstance(admitted, _Admitted)
        body = await self._read_body(request)
        if isinstance(body, web.StreamResponse):
            return body
        meta = admitted.meta
        try:
            check_framing(meta.content_encoding, body)
        except FramingError as exc:
            return self._refuse(400, "bad_encoding", str(exc))
        if self.ack == "memory":
            return await self._append_behind(meta, body)
        try:
            await self.spool.append(meta, body)
        except SpoolError as exc:
            return self._spool_refusal(exc)
        self.on_append()
        return self._accepted(200, meta, len(body))

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        if request.content_length == 0:
            return self._refuse(400, "empty_body", "The body is empty; send at least one record.")
        limit = self.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                resp = self._refuse(
                    413, "body_too_large", f"The body is over the {limit} bytes this receiver takes at most."
                )
                resp.force_close()
                return resp
            chunks.append(chunk)
        if not size:
            return self._refuse(400, "empty_body", "The body is empty; send at least one record.")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _spool_refusal(self, exc: SpoolError) -> web.Response:
        if isinstance(exc, SpoolFull):
            self.full_at = time.monotonic()
            log.warning("Spool full; refusing batches until uploads catch up", extra={"error": str(exc)})
            return self._refuse(
                503,
                "spool_full",
                "The receiver's spool is full while uploads catch up; retry later.",
                {"Retry-After": str(_RETRY_AFTER_FULL)},
            )
        if isinstance(exc, SpoolClosedError):
            return self._refuse(503, "shutting_down", "The receiver is shutting down; retry.", {"Retry-After": "1"})
        log.error("Spool write failed", extra={"error": str(exc)})
        return self._refuse(503, "spool_error", "The receiver cannot write to its spool; retry.", {"Retry-After": "5"})

    def _accepted(self, status: int, meta: BatchMeta, size: int) -> web.Response:
        comp = self.component
        comp.events_in += 1
        comp.bytes_in += size
        BODY_BYTES.inc(size)
        REQUESTS.labels(str(status), "accepted").inc()
        return web.json_response({"batch_id": meta.batch_id}, status=status)

    async def _append_behind(self, meta: BatchMeta, body: bytes) -> web.Response:
        task = asyncio.create_task(self.spool.append(meta, body))
        # One turn of the loop runs the append up to its wait for the disk, so a full spool is
        # still refused before anything is acknowledged.
        await asyncio.sleep(0)
        if task.done() and not task.cancelled():
            exc = task.exception()
            if isinstance(exc, SpoolError):
                return self._spool_refusal(exc)
        self._background.add(task)
        task.add_done_callback(self._written_behind)
        return self._accepted(202, meta, len(body))

    def _written_behind(self, task: asyncio.Task[str]) -> None:
        self._background.discard(task)
        error = "cancelled" if task.cancelled() else task.exception()
        if error is not None:
            self.component.drop("lost_after_ack")
            log.error("A batch acknowledged from memory could not be spooled and is lost", extra={"error": str(error)})
            return
        self.on_append()


def _hint_of(content_type: str) -> str:
    """A data hint from ``Content-Type`` when neither the sender nor the dataset names one."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct in ("text/plain", "text/csv"):
        return "text" if ct == "text/plain" else "csv"
    return "ndjson"
