"""Splunk HTTP Event Collector: ``POST /services/collector/event`` with ``Authorization: Splunk
<token>``, the batch's events concatenated, each ``{"time","host","source","sourcetype","index",
"event"}`` (time from the job's time column in epoch seconds, host from the row's ``host``).

HEC answers with a code as well as a status: 503 (code 9, server busy) and other 5xx/429 are
retried with backoff; 400 code 6 (invalid data format) names the first bad event with
``invalid-event-number`` — the events before it were indexed, that one goes to the DLQ and the
rest are sent again; 401/403 (codes 2, 3, 4, token problems), code 7 (incorrect index) and
code 14 (acks disabled) stop the pass with a sentence saying what to fix.

With ``use_acks`` every request carries ``X-Splunk-Request-Channel`` (one random channel per job
run) and the ``ackId`` it returns is polled on ``/services/collector/ack`` until the indexers
confirm it; an ack that does not come within ``ack_timeout`` sends the batch again (at-least-once).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
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
from floe.backoff import Backoff, retry_after

__all__ = ["SplunkHecSink"]

#: HEC codes that mean the request (not the data) is wrong: an operator must act.
_CONFIG_CODES = {
    1: "the token is disabled",
    2: "the token is missing",
    3: "the Authorization header is invalid",
    4: "the token is invalid",
    7: "the index is not allowed for this token or does not exist",
    10: "a data channel is required (enable use_acks)",
    11: "the data channel is invalid",
    14: "acknowledgements are disabled for this token (disable use_acks)",
}


class SplunkHecSink(HttpSink):
    def __init__(self, spec: JobSpec) -> None:
        hec = spec.destination.splunk_hec
        super().__init__(spec, ca_file=hec.ca_file)
        base = hec.url.rstrip("/")
        self.url = f"{base}/services/collector/event"
        self.ack_url = f"{base}/services/collector/ack"
        token = read_secret(hec.token, "destination.splunk_hec.token")
        self.headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        self.use_acks = hec.use_acks
        if self.use_acks:
            self.headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())
        self.ack_timeout = hec.ack_timeout.ToNanoseconds() / 1e9 if hec.ack_timeout.ByteSize() else 60.0
        self.time_field = hec.time_field or "timestamp"
        meta: dict[str, str] = {}
        for key in ("source", "sourcetype", "index"):
            if value := getattr(hec, key):
                meta[key] = value
        # The fixed part of every event, as SQL text: '"source":"x","sourcetype":"y",'.
        fixed = "".join(f"{json.dumps(k)}:{json.dumps(v)}," for k, v in meta.items())
        self._fixed_sql = "'" + fixed.replace("'", "''") + "'"

    def row_sql(self) -> str:
        return (
            "'{' || "
            "coalesce('\"time\":' || CAST(t // 1000 AS VARCHAR) || '.' || lpad(CAST(t % 1000 AS VARCHAR), 3, '0') "
            "|| ',', '') || "
            "coalesce('\"host\":' || to_json(h) || ',', '') || "
            f"{self._fixed_sql} || '\"event\":' || doc || '}}' || chr(10)"
        )

    async def send(self, body: bytes, items: int) -> list[ItemFailure]:
        failures: list[ItemFailure] = []
        offset = 0  # original index of the current body's first item
        pending: list[bytes] | None = None

        async def attempt() -> None:
            nonlocal body, offset, pending
            async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                raw = await resp.read()
                doc = _json(raw)
                code = int(doc.get("code", -1)) if isinstance(doc.get("code"), int) else -1
                text = str(doc.get("text", raw[:200].decode(errors="replace")))
                if resp.status == 429 or resp.status >= 500:
                    raise Retryable(
                        f"Splunk HEC answered {resp.status} (code {code}: {text})",
                        retry_after(resp.headers.get("Retry-After")),
                    )
                if resp.status == 200 and code in (0, -1):
                    if self.use_acks:
                        ack_id = doc.get("ackId")
                        if not isinstance(ack_id, int):
                            raise DeliveryError("Splunk HEC sent no ackId although use_acks is set")
                        await self._wait_ack(ack_id)
                    return
            if code in _CONFIG_CODES or resp.status in (401, 403):
                what = _CONFIG_CODES.get(code, text)
                raise DeliveryError(f"Splunk HEC refused the request ({resp.status}, code {code}): {what}")
            if resp.status == 400 and code in (6, 12, 13):
                pending = pending if pending is not None else split_items(body, 1)
                bad = doc.get("invalid-event-number")
                if not isinstance(bad, int) or not 0 <= bad < len(pending):
                    # Which event is unknown: the whole request goes to the DLQ.
                    failures.extend(
                        ItemFailure(offset + i, resp.status, f"code {code}: {text}", item)
                        for i, item in enumerate(pending)
                    )
                    return
                # Events before ``bad`` were indexed; ``bad`` is refused; send the rest again.
                failures.append(ItemFailure(offset + bad, resp.status, f"code {code}: {text}", pending[bad]))
                pending = pending[bad + 1 :]
                offset += bad + 1
                if not pending:
                    return
                body = join_items(pending)
                raise Retryable("sending the events after an invalid one", 0.0)
            if code == 5:  # no data: nothing to index
                return
            raise DeliveryError(f"Splunk HEC answered {resp.status} (code {code}): {text}")

        await self.attempts("Sending to Splunk HEC", attempt)
        return failures

    async def _wait_ack(self, ack_id: int) -> None:
        deadline = time.monotonic() + self.ack_timeout
        backoff = Backoff(0.05, 1.0)
        payload = json.dumps({"acks": [ack_id]}).encode()
        while time.monotonic() < deadline:
            async with self.session.post(self.ack_url, data=payload, headers=self.headers) as resp:
                raw = await resp.read()
                if resp.status == 200:
                    acks = _json(raw).get("acks", {})
                    if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                        return
                elif resp.status == 429 or resp.status >= 500:
                    pass
                else:
                    doc = _json(raw)
                    raise DeliveryError(f"Splunk HEC refused the ack query ({resp.status}): {doc.get('text', '')}")
            await asyncio.sleep(backoff.delay())
        raise Retryable(f"Splunk HEC did not acknowledge ackId {ack_id} within {self.ack_timeout:g}s")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
