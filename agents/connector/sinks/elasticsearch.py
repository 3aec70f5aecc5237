"""Elasticsearch (and OpenSearch) through the ``_bulk`` API.

Each row is an ``index`` action with ``_id`` = md5(file key + "#" + row number) followed by the
document, so re-sending a file after a crash overwrites the same documents instead of adding
copies. The answer is read item by item when ``errors`` is true: items refused with 429 or 5xx
are sent again (only those), other refusals (mapping errors, 400) are returned for the DLQ with
Elasticsearch's error type and reason. A whole-request 429/5xx is retried with backoff, honouring
``Retry-After``; 401/403/404/413 stop the pass with an error saying what to fix.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from agents.connector.sinks.common import (
    DeliveryError,
    HttpSink,
    ItemFailure,
    Retryable,
    join_items,
    split_items,
)
from agents.connector.spec import JobSpec, read_secret
from floe.backoff import retry_after

__all__ = ["ElasticsearchSink"]

_ROW_SQL = """'{"index":{"_id":"' || md5($source || '#' || CAST(rn AS VARCHAR)) || '"}}' || chr(10) || doc || chr(10)"""


class ElasticsearchSink(HttpSink):
    lines_per_item = 2

    def __init__(self, spec: JobSpec) -> None:
        es = spec.destination.elasticsearch
        super().__init__(spec, ca_file=es.ca_file)
        self.url = f"{es.url.rstrip('/')}/{es.index}/_bulk"
        self.headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
        auth = es.WhichOneof("auth")
        field = "destination.elasticsearch"
        if auth == "api_key":
            self.headers["Authorization"] = "ApiKey " + read_secret(es.api_key, f"{field}.api_key")
        elif auth == "basic":
            password = read_secret(es.basic.password, f"{field}.basic.password")
            token = base64.b64encode(f"{es.basic.username}:{password}".encode()).decode()
            self.headers["Authorization"] = "Basic " + token

    def row_sql(self) -> str:
        return _ROW_SQL

    async def send(self, body: bytes, items: int) -> list[ItemFailure]:
        failures: list[ItemFailure] = []
        # Original positions of the items in the current request (all of them at first).
        positions = list(range(items))
        pending: list[bytes] | None = None

        async def attempt() -> list[int]:
            nonlocal body, positions, pending
            async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                raw = await resp.read()
                if resp.status == 429 or resp.status >= 500:
                    raise Retryable(
                        f"Elasticsearch answered {resp.status}", retry_after(resp.headers.get("Retry-After"))
                    )
                if resp.status in (401, 403):
                    raise DeliveryError(f"Elasticsearch refused the credentials ({resp.status}): {_reason(raw)}")
                if resp.status == 413:
                    raise DeliveryError("Elasticsearch refused a request as too large (413): lower batch_size")
                if resp.status >= 300:
                    raise DeliveryError(f"Elasticsearch answered {resp.status} to {self.url}: {_reason(raw)}")
            # Fast path: a clean bulk answer says so at the start; no need to parse every item.
            if b'"errors":false' in raw[:200].replace(b" ", b""):
                return []
            doc = json.loads(raw)
            if not doc.get("errors"):
                return []
            answered = doc.get("items", [])
            if len(answered) != len(positions):
                raise DeliveryError(f"Elasticsearch answered {len(answered)} items for {len(positions)} sent")
            pending = pending if pending is not None else split_items(body, 2)
            again: list[int] = []
            for i, entry in enumerate(answered):
                result: dict[str, Any] = next(iter(entry.values()), {})
                status = int(result.get("status", 0))
                if status < 300:
                    continue
                if status == 429 or status >= 500:
                    again.append(i)
                else:
                    failures.append(ItemFailure(positions[i], status, _item_error(result), pending[i]))
            if again:
                # Only the throttled items go again; what was indexed or refused for good is done.
                pending = [pending[i] for i in again]
                positions = [positions[i] for i in again]
                body = join_items(pending)
                raise Retryable(f"Elasticsearch throttled {len(again)} of the items (429/5xx)")
            return []

        await self.attempts("Sending to Elasticsearch", attempt)
        return failures


def _item_error(result: dict[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            text += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
        return text
    return str(error or f"status {result.get('status')}")


def _reason(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return str(error or doc)[:200]
