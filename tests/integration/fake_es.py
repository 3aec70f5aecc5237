"""A protocol fake of Elasticsearch's ``_bulk`` API, because Elasticsearch itself cannot run here
(no JVM, no network to fetch it). It implements the wire protocol the connector relies on, as
documented for Elasticsearch 8:

- ``POST /_bulk`` and ``POST /{index}/_bulk`` with an NDJSON body of action/metadata lines
  (``index``, ``create``, ``update`` with ``doc``, ``delete``) each followed by its source line;
  ``Content-Type`` must be ``application/x-ndjson`` or ``application/json`` (406 otherwise); the
  body must end with a newline (400 otherwise); malformed lines answer 400
  ``x_content_parse_exception``.
- Authentication: ``Authorization: ApiKey <base64 id:key>`` or ``Basic``; 401
  ``security_exception`` with ``WWW-Authenticate`` when wrong or missing (when configured).
- Dynamic mapping: the first value of a field fixes its type (long, double, boolean, text/keyword
  as "string", object); a later document with an incompatible value fails *that item* with 400
  ``mapper_parsing_exception`` while the rest of the request is indexed — a partial failure,
  reported with ``"errors": true`` and a per-item ``status`` and ``error``.
- ``index`` with an existing ``_id`` replaces the document (``result: updated``, ``_version``
  + 1, status 200); ``create`` with an existing id fails the item with 409
  ``version_conflict_engine_exception``.
- Faults scripted by tests through ``POST /_fake/faults``: whole requests answered 429 (with
  ``Retry-After``) or 503, and the next N items answered 429 ``es_rejected_execution_exception``.

Run as a separate process (``python -m tests.integration.fake_es --port 9200``) or in-process
with ``FakeElasticsearch().start()``. ``--discard`` keeps only counts (for benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

# orjson: the fake must parse bulk bodies faster than the connector under test writes them.
_loads: Any = orjson.loads
_dumps: Any = orjson.dumps


__all__ = ["FakeElasticsearch"]


def _error(status: int, type_: str, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "error": {"root_cause": [{"type": type_, "reason": reason}], "type": type_, "reason": reason},
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


_TYPES = {bool: "boolean", int: "long", float: "double", str: "string", dict: "object", list: "array"}


def _type_of(value: Any) -> str:
    return _TYPES.get(type(value), "null")


#: (mapped, seen) pairs Elasticsearch coerces: numbers into double or keyword fields.
_COMPATIBLE = {("long", "double"), ("double", "long"), ("string", "long"), ("string", "double"), ("string", "boolean")}


def _numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class Faults:
    #: Answer the next N bulk requests with this status (429 or 503).
    reject_requests: int = 0
    reject_status: int = 429
    retry_after: str = ""
    #: Answer the next N items with 429 (the rest of those requests is indexed).
    throttle_items: int = 0


@dataclass
class Index:
    docs: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)
    count: int = 0


class FakeElasticsearch:
    def __init__(self, *, api_key: str = "", username: str = "", password: str = "", discard: bool = False) -> None:
        self.api_key = api_key
        self.basic = base64.b64encode(f"{username}:{password}".encode()).decode() if username else ""
        self.discard = discard
        self.indices: dict[str, Index] = {}
        self.faults = Faults()
        self.requests = 0
        self.items = 0
        self.rejected_requests = 0
        self.started = 0.0
        self.last = 0.0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=512 << 20)
        app.router.add_post("/_bulk", self._bulk)
        app.router.add_post("/{index}/_bulk", self._bulk)
        app.router.add_get("/", self._root)
        app.router.add_post("/_fake/faults", self._set_faults)
        app.router.add_get("/_fake/stats", self._stats)
        app.router.add_get("/_fake/docs/{index}", self._docs)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- handlers ----------------------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if not self.api_key and not self.basic:
            return None
        header = request.headers.get("Authorization", "")
        if self.api_key and header == f"ApiKey {self.api_key}":
            return None
        if self.basic and header == f"Basic {self.basic}":
            return None
        reason = (
            "missing authentication credentials for REST request [/_bulk]" if not header else "unable to authenticate"
        )
        return _error(401, "security_exception", reason, {"WWW-Authenticate": 'ApiKey, Basic realm="security"'})

    async def _root(self, request: web.Request) -> web.Response:
        if (denied := self._auth_error(request)) is not None:
            return denied
        return web.json_response({"name": "fake", "version": {"number": "8.15.0"}, "tagline": "You Know, for Search"})

    async def _bulk(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not self.started:
            self.started = time.monotonic()
        if (denied := self._auth_error(request)) is not None:
            return denied
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in ("application/x-ndjson", "application/json"):
            return _error(406, "media_type_header_exception", f"Content-Type header [{ctype}] is not supported")
        if self.faults.reject_requests > 0:
            self.faults.reject_requests -= 1
            self.rejected_requests += 1
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after else None
            if self.faults.reject_status == 429:
                return _error(429, "es_rejected_execution_exception", "rejected execution of bulk", headers)
            return _error(
                self.faults.reject_status, "unavailable_shards_exception", "primary shard is not active", headers
            )
        body = await request.read()
        if not body.endswith(b"\n"):
            return _error(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
        default_index = request.match_info.get("index")
        lines = body.split(b"\n")
        lines.pop()
        items: list[dict[str, Any]] = []
        errors = False
        i = 0
        started = time.monotonic()
        while i < len(lines):
            try:
                action = _loads(lines[i])
                ((op, meta),) = action.items()
            except (ValueError, TypeError):
                return _error(400, "x_content_parse_exception", f"[1:1] Malformed action/metadata line [{i + 1}]")
            if op not in ("index", "create", "update", "delete"):
                return _error(
                    400, "illegal_argument_exception", f"Malformed action/metadata line [{i + 1}], unknown op [{op}]"
                )
            index = meta.get("_index") or default_index
            if not index:
                return _error(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
            source = None
            if op != "delete":
                if i + 1 >= len(lines):
                    return _error(
                        400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
                    )
                try:
                    source = _loads(lines[i + 1])
                except ValueError:
                    return _error(400, "x_content_parse_exception", f"[1:1] Unexpected character in line [{i + 2}]")
                i += 2
            else:
                i += 1
            result = self._apply(op, index, meta.get("_id"), source)
            errors = errors or result["status"] >= 300
            items.append({op: result})
        self.items += len(items)
        self.last = time.monotonic()
        took = int((time.monotonic() - started) * 1000)
        # Same key order as Elasticsearch: took, errors, items.
        return web.Response(
            body=_dumps({"took": took, "errors": errors, "items": items}),
            content_type="application/json",
        )

    def _apply(self, op: str, index_name: str, doc_id: str | None, source: Any) -> dict[str, Any]:
        index = self.indices.setdefault(index_name, Index())
        base: dict[str, Any] = {"_index": index_name}
        if self.faults.throttle_items > 0:
            self.faults.throttle_items -= 1
            reason = "rejected execution of coordinating operation"
            return {
                **base,
                "_id": doc_id,
                "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": reason},
            }
        if doc_id is None:
            doc_id = base64.urlsafe_b64encode(time.time_ns().to_bytes(8, "big")).decode().rstrip("=")
        base["_id"] = doc_id
        if op == "delete":
            existed = index.docs.pop(doc_id, None) is not None
            return {**base, "result": "deleted" if existed else "not_found", "status": 200 if existed else 404}
        if op == "update":
            if doc_id not in index.docs:
                reason = f"[{doc_id}]: document missing"
                return {**base, "status": 404, "error": {"type": "document_missing_exception", "reason": reason}}
            source = {**index.docs[doc_id], **(source or {}).get("doc", {})} if not self.discard else source
        if not isinstance(source, dict):
            return {**base, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}}
        problem = self._map(index, source, "")
        if problem is not None:
            field_name, mapped, value = problem
            reason = f"failed to parse field [{field_name}] of type [{mapped}] in document with id '{doc_id}'"
            cause = {"type": "illegal_argument_exception", "reason": f'For input string: "{value}"'}
            error = {"type": "mapper_parsing_exception", "reason": reason, "caused_by": cause}
            return {**base, "status": 400, "error": error}
        exists = doc_id in index.versions
        if op == "create" and exists:
            reason = f"[{doc_id}]: version conflict, document already exists"
            return {**base, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": reason}}
        version = index.versions.get(doc_id, 0) + 1
        index.versions[doc_id] = version
        if not self.discard:
            index.docs[doc_id] = source
        if not exists:
            index.count += 1
        return {
            **base,
            "_version": version,
            "result": "updated" if exists else "created",
            "status": 200 if exists else 201,
        }

    def _map(self, index: Index, doc: dict[str, Any], prefix: str) -> tuple[str, str, Any] | None:
        mapping = index.mapping
        for key, value in doc.items():
            seen = _TYPES.get(type(value), "null")
            path = prefix + key if prefix else key
            mapped = mapping.get(path)
            if seen in (mapped, "null"):
                pass
            elif mapped is None:
                mapping[path] = seen
            # A numeric string still fits a number field ("12" into long); anything else fails.
            elif (mapped, seen) not in _COMPATIBLE and not (
                mapped in ("long", "double") and seen == "string" and _numeric(value)
            ):
                return path, mapped, value
            if seen == "object":
                found = self._map(index, value, path + ".")
                if found is not None:
                    return found
        return None

    async def _set_faults(self, request: web.Request) -> web.Response:
        doc = await request.json()
        for key, value in doc.items():
            setattr(self.faults, key, value)
        return web.json_response({"ok": True})

    def stats(self) -> dict[str, Any]:
        elapsed = self.last - self.started if self.started else 0.0
        return {
            "requests": self.requests,
            "items": self.items,
            "rejected_requests": self.rejected_requests,
            "docs": {name: idx.count for name, idx in self.indices.items()},
            "elapsed": elapsed,
        }

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _docs(self, request: web.Request) -> web.Response:
        index = self.indices.get(request.match_info["index"], Index())
        return web.json_response({"count": index.count, "docs": index.docs, "versions": index.versions})


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeElasticsearch(api_key=args.api_key, discard=args.discard)
    url = await fake.start(port=args.port)
    print(json.dumps({"url": url}), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--discard", action="store_true", help="keep counts only, not documents")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_serve(args))
    except ImportError:  # pragma: no cover
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
