"""HTTP webhook input: records POSTed as NDJSON, a JSON array or object, or plain text.

The body's format comes from its Content-Type (``application/x-ndjson`` and friends,
``application/json``, ``text/plain``), or is sniffed when the type says nothing useful (curl's
default form type, octet-stream): ``[`` is a JSON array, ``{`` a JSON object or NDJSON, anything
else text. Plain text is one record per line, ``{"message": line}``. A request is answered only
once its records are in the proxy's disk spool (``Sink.submit_durable``), so a 200 means they will
be forwarded; a full spool answers 503 with ``Retry-After``. Every answer has a JSON body.

Rejected requests are counted per reason in the health component: ``oversize`` (413),
``unauthorized`` (401), ``malformed_json`` (400) and ``sink_refused`` (503, counted in records).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Final

from aiohttp import web

from agents.proxy.sink import SinkRefused
from agents.sources.plugin import Input, InputContext, Option, SourcePlugin
from floe.v1 import datasets_pb2

__all__ = ["PLUGINS", "BadBody", "WebhookInput", "parse_body"]

log = logging.getLogger(__name__)
ST = datasets_pb2.SourceType

RETRY_AFTER_S: Final = 5
_NDJSON_TYPES: Final = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "application/json-lines",
        "application/json-seq",
    }
)
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class BadBody(ValueError):
    """Raised when a request body is not what its format says; ``line`` is 1-based, 0 when the
    whole body is at fault."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.line = line


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(data: bytes | str) -> Any:
    return json.loads(data, parse_constant=_reject_constant)


def _ndjson(body: bytes) -> tuple[bytes, int]:
    out: list[bytes] = []
    for number, raw in enumerate(body.split(b"\n"), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            value = _loads(line)
        except ValueError as exc:
            raise BadBody(number, f"is not JSON ({_reason(exc)})") from None
        if not isinstance(value, dict):
            raise BadBody(number, f"is a JSON {_json_type(value)}, not an object")
        out.append(line)
    out.append(b"")
    return b"\n".join(out), len(out) - 1


def _json(body: bytes) -> tuple[bytes, int]:
    try:
        value = _loads(body)
    except ValueError as exc:
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else 0
        raise BadBody(line, f"the body is not JSON ({_reason(exc)})") from None
    if isinstance(value, dict):
        return _ENCODE(value).encode() + b"\n", 1
    if not isinstance(value, list):
        raise BadBody(0, f"the body is a JSON {_json_type(value)}; send an object or an array of objects")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadBody(0, f"element {i} of the array is a JSON {_json_type(item)}, not an object")
    return "".join(_ENCODE(item) + "\n" for item in value).encode(), len(value)


def _text(body: bytes) -> tuple[bytes, int]:
    lines = [line.rstrip("\r") for line in body.decode("utf-8", "replace").split("\n")]
    records = [_ENCODE({"message": line}) + "\n" for line in lines if line]
    return "".join(records).encode(), len(records)


def parse_body(body: bytes, content_type: str) -> tuple[bytes, int]:
    """The records of a request body as NDJSON, and how many; BadBody says what is wrong."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in _NDJSON_TYPES:
        return _ndjson(body)
    if kind == "application/json" or kind.endswith("+json"):
        return _json(body)
    if kind.startswith("text/"):
        return _text(body)
    head = body.lstrip()[:1]
    if head == b"[":
        return _json(body)
    if head == b"{":
        try:
            return _json(body)
        except BadBody:
            return _ndjson(body)  # several objects, one per line
    return _text(body)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class WebhookInput(Input):
    """An aiohttp server on the dataset's address taking POSTs on one path."""

    def __init__(self, ctx: InputContext) -> None:
        self.ctx = ctx
        self.path: str = ctx.options["path"]
        self.max_payload: int = ctx.options["max_payload_bytes"]
        token: str | None = ctx.options.get("bearer_token")
        self._token = f"Bearer {token}".encode() if token else None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self.max_payload)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.ctx.address
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        comp = self.ctx.component
        if request.path != self.path:
            return _error(404, f"Nothing here: POST records to {self.path}.")
        if request.method != "POST":
            return web.json_response(
                {"error": f"{request.method} is not supported: POST records to {self.path}."},
                status=405,
                headers={"Allow": "POST"},
            )
        if self._token is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._token):
                comp.drop("unauthorized")
                return web.json_response(
                    {"error": "A valid bearer token is required (Authorization: Bearer <token>)."},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="floe"'},
                )
        too_big = f"The body is larger than this webhook's limit of {self.max_payload} bytes."
        if request.content_length is not None and request.content_length > self.max_payload:
            comp.drop("oversize")
            return _error(413, too_big, limit=self.max_payload)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_payload:
                comp.drop("oversize")
                return _error(413, too_big, limit=self.max_payload)
            chunks.append(chunk)
        body = b"".join(chunks)
        comp.bytes_in += len(body)
        try:
            records, count = parse_body(body, request.headers.get("Content-Type", ""))
        except BadBody as exc:
            comp.drop("malformed_json")
            return _error(400, f"The body cannot be read: {exc}.", line=exc.line)
        comp.events_in += count
        if count:
            try:
                await self.ctx.sink.submit_durable(self.ctx.dataset, records, count)
            except SinkRefused as exc:
                comp.drop("sink_refused", count)
                return web.json_response(
                    {"error": f"Not accepted now: {exc}. Retry later."},
                    status=503,
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            comp.events_out += count
        return web.json_response({"accepted": count})


def _check_path(raw: str) -> str | None:
    return None if raw.startswith("/") and " " not in raw else "must be a URL path starting with '/'"


PLUGINS = (
    SourcePlugin(
        ST.SOURCE_TYPE_HTTP,
        "http",
        "HTTP webhook: POST NDJSON, a JSON array or object, or plain text (one record per line); "
        "answered once the records are in the disk spool.",
        (
            Option("path", "string", "/", "URL path that takes the POSTs.", check=_check_path),
            Option(
                "max_payload_bytes",
                "bytes",
                10 << 20,
                "Largest request body (after decompression); larger ones get 413.",
                minimum=1,
                maximum=1 << 30,
            ),
            Option(
                "bearer_token",
                "secret",
                None,
                "When set, requests must carry 'Authorization: Bearer <token>' (else 401).",
            ),
        ),
        WebhookInput,
    ),
)
