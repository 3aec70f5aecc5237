"""The connector's dead-letter queue: items a destination refused for good, kept on disk.

It is the agents' one spool (``agents/runtime/spool.py``) rather than a file per job: that gives
durable appends, a hard size limit with oldest-first eviction (``dlq_max_bytes``), the shared
``/api/v1/dlq/*`` routes and the ``retry_dlq`` command for free. One spool batch holds the refused
items of one request, as NDJSON records ``{"job","source","row","status","error","item"}``
(``item`` is the exact wire text the destination refused), with tenant and dataset in its
metadata and the job name as its ``batch_id``.

A batch moved back to the queue (``retry_dlq``, after fixing a mapping) is sent to its job's
destination again by ``redeliver``; refused again, it returns to the DLQ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from agents.connector.sinks.common import ItemFailure
from agents.connector.spec import JobSpec
from agents.runtime.spool import Batch, BatchMeta, Spool

__all__ = ["DATA_HINT", "DeadLetters", "decode_items"]

DATA_HINT = "export-items"


class DeadLetters:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    async def add(self, spec: JobSpec, source: str, first_row: int, failures: Sequence[ItemFailure]) -> None:
        """Keep ``failures`` (items of the batch starting at ``first_row`` of ``source``)."""
        if not failures:
            return
        lines = [
            json.dumps(
                {
                    "job": spec.name,
                    "source": source,
                    "row": first_row + f.index,
                    "status": f.status,
                    "error": f.error,
                    "item": f.item.decode(errors="replace"),
                },
                separators=(",", ":"),
            ).encode()
            for f in failures
        ]
        meta = BatchMeta(
            tenant=spec.tenant,
            dataset=spec.dataset_id,
            data_hint=DATA_HINT,
            content_encoding="",
            records=len(lines),
            original_bytes=sum(map(len, lines)),
            batch_id=spec.name,
        )
        batch_id = await self.spool.append(meta, b"\n".join(lines) + b"\n")
        reasons = sorted({f.error for f in failures})
        reason = f"{len(failures)} item(s) refused: {reasons[0]}" + (
            f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        )
        # Claimed here, at once, so the redelivery loop never takes a fresh failure for a retry.
        for batch in self.spool.claim(limit=1 << 30):
            if batch.id == batch_id:
                await self.spool.dead_letter(batch, reason[:500])
            else:
                self.spool.release(batch)

    def ready(self) -> list[Batch]:
        """Batches moved back from the DLQ, to send again (claimed)."""
        return self.spool.claim(limit=64)


def decode_items(body: bytes) -> list[tuple[dict[str, object], bytes]]:
    """The records of a DLQ batch with each item's wire bytes."""
    out = []
    for line in body.splitlines():
        if line.strip():
            record = json.loads(line)
            out.append((record, str(record.get("item", "")).encode()))
    return out
