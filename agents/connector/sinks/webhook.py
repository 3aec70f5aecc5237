"""Any HTTP endpoint: the batch as NDJSON (``application/x-ndjson``) or as one JSON array
(``application/json``), optionally gzip-compressed, with the job's method and headers (secret
headers read on the connector host).

2xx is success; 429 and 5xx are retried with backoff (``Retry-After`` honoured); 400 and 422
mean the receiver refused the data, so the batch goes to the DLQ; any other answer (401, 403,
404, 405, 413...) stops the pass with the status, since resending cannot fix it.
"""

from __future__ import annotations

import gzip

from agents.connector.sinks.common import DeliveryError, HttpSink, ItemFailure, RejectedBatch, Retryable
from agents.connector.spec import JobSpec, read_secret
from floe.backoff import retry_after
from floe.v1 import exports_pb2

__all__ = ["WebhookSink", "as_json_array"]


def as_json_array(body: bytes) -> bytes:
    """NDJSON items to one JSON array (JSON text never holds a raw newline)."""
    return b"[" + body.rstrip(b"\n").replace(b"\n", b",") + b"]"


class WebhookSink(HttpSink):
    def __init__(self, spec: JobSpec) -> None:
        hook = spec.destination.webhook
        super().__init__(spec, ca_file=hook.ca_file)
        self.url = hook.url
        self.method = (hook.method or "POST").upper()
        self.array = hook.format == exports_pb2.WEBHOOK_FORMAT_JSON_ARRAY
        self.gzip = hook.gzip
        self.headers = dict(hook.headers)
        for name, ref in hook.secret_headers.items():
            self.headers[name] = read_secret(ref, f"destination.webhook.secret_headers[{name}]")
        self.headers["Content-Type"] = "application/json" if self.array else "application/x-ndjson"
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"

    def row_sql(self) -> str:
        return "doc || chr(10)"

    async def send(self, body: bytes, items: int) -> list[ItemFailure]:
        payload = as_json_array(body) if self.array else body
        if self.gzip:
            payload = gzip.compress(payload, compresslevel=5)

        async def attempt() -> None:
            async with self.session.request(self.method, self.url, data=payload, headers=self.headers) as resp:
                text = (await resp.read())[:200].decode(errors="replace")
                if resp.status < 300:
                    return
                if resp.status == 429 or resp.status >= 500:
                    raise Retryable(f"the webhook answered {resp.status}", retry_after(resp.headers.get("Retry-After")))
                if resp.status in (400, 422):
                    raise RejectedBatch(f"the webhook refused the data ({resp.status}): {text}", resp.status)
                raise DeliveryError(f"the webhook answered {resp.status} to {self.method} {self.url}: {text}")

        await self.attempts("Sending to the webhook", attempt)
        return []
