"""The dead-letter queue's API, shared by every agent that spools (proxy, receiver, connector): HTTP
routes on the agent's API port and the ``list_dlq`` and ``retry_dlq`` commands of the control
stream (so the dashboard and ``floe agents dlq`` reach it through the control plane), over one
``Spool``.

- ``GET /api/v1/dlq/stats``: batch counts and bytes per state (queue, retry, dlq), in total and per
  tenant and dataset, plus lifetime counters (appended, evicted, expired).
- ``GET /api/v1/dlq/files?tenant=&dataset=&limit=``: dead-lettered batches, oldest first.
- ``POST /api/v1/dlq/retry``: ``{"ids": [...]}`` moves those batches back to the queue; an empty
  body (or no ``ids``) moves all of them. Answers ``{"moved": N}``.

Errors answer ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx status.

Commands answer ``CommandResult``: ``list_dlq`` fills ``dlq_items`` (oldest first, at most
``MAX_COMMAND_LIMIT``, so a result stays a small message) and ``dlq_totals``; ``retry_dlq`` says in
``details["moved"]`` how many went back. Roles route every action in ``DLQ_ACTIONS`` here; agents
without a DLQ answer with ``no_dlq()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from google.protobuf import timestamp_pb2

from agents.runtime.spool import Batch, BatchState, Spool, StateStats
from floe.v1 import agent_pb2

__all__ = ["DEFAULT_LIST_LIMIT", "DLQ_ACTIONS", "MAX_COMMAND_LIMIT", "MAX_LIST_LIMIT", "DlqApi", "no_dlq"]

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10_000
#: Most items one ``list_dlq`` answer carries (it travels in one control-stream message).
MAX_COMMAND_LIMIT = 1000
#: The control-stream commands ``DlqApi.command`` answers.
DLQ_ACTIONS = frozenset({"list_dlq", "retry_dlq"})

_ID = r"[a-z][a-z0-9-]{0,61}[a-z0-9]"
_TENANT_RE = re.compile(rf"(?:tenants/)?({_ID})")
_DATASET_RE = re.compile(rf"(?:tenants/({_ID})/datasets/)?({_ID})")


def no_dlq() -> agent_pb2.CommandResult:
    """The answer of an agent without a dead-letter queue to a command in ``DLQ_ACTIONS``."""
    return agent_pb2.CommandResult(
        ok=False, message="This agent has no dead-letter queue (only proxies, receivers and connectors keep one)."
    )


class DlqApi:
    """``spool`` returns the agent's spool, or None while it is not open (answers 503).

    ``on_moved`` is called after batches went back to the queue (e.g. to wake a sender).
    """

    def __init__(self, spool: Callable[[], Spool | None], on_moved: Callable[[], None] | None = None) -> None:
        self._spool = spool
        self._on_moved = on_moved

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/dlq/stats", self._stats)
        app.router.add_get("/api/v1/dlq/files", self._files)
        app.router.add_post("/api/v1/dlq/retry", self._retry)

    # -- operations (also usable without HTTP) -----------------------------------------------

    @staticmethod
    def stats(spool: Spool) -> dict[str, Any]:
        s = spool.stats()
        tenants: dict[str, dict[str, Any]] = {}
        for (tenant, dataset), per in sorted(s.by_dataset.items()):
            entry = tenants.setdefault(tenant, {state.value: _figures(StateStats()) for state in BatchState})
            entry.setdefault("datasets", {})[dataset] = {state.value: _figures(per[state]) for state in BatchState}
            for state in BatchState:
                entry[state.value]["files"] += per[state].count
                entry[state.value]["bytes"] += per[state].bytes
        return {
            **{state.value: _figures(s.states[state]) for state in BatchState},
            "claimed": s.claimed,
            "appended": {"files": s.appended, "bytes": s.appended_bytes},
            "evicted": {"files": s.evicted, "bytes": s.evicted_bytes},
            "expired": s.expired,
            "tenants": tenants,
        }

    async def retry(self, spool: Spool, ids: list[str] | None) -> int:
        """Move ``ids`` (all when None) from the DLQ back to the queue; how many moved."""
        moved = await spool.dlq_retry(ids)
        if moved and self._on_moved is not None:
            self._on_moved()
        return moved

    async def command(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        """The commands of ``DLQ_ACTIONS``: ``list_dlq`` (filters by tenant and dataset) and
        ``retry_dlq`` (its ``items`` are batch ids; none means every batch)."""
        spool = self._spool()
        if spool is None:
            return agent_pb2.CommandResult(ok=False, message="The spool is not open yet; try again shortly.")
        action = command.WhichOneof("action")
        if action == "list_dlq":
            return self.list_command(spool, command.list_dlq)
        if action != "retry_dlq":
            return agent_pb2.CommandResult(ok=False, message=f"{action} is not a dead-letter queue command.")
        items = list(command.retry_dlq.items)
        bad = [i for i in items if not i.isdigit()]
        if bad:
            return agent_pb2.CommandResult(
                ok=False, message=f"retry_dlq.items: {', '.join(map(repr, bad[:5]))} are not batch ids (digits)."
            )
        moved = await self.retry(spool, items or None)
        scope = "every batch" if not items else f"{len(items)} requested batch(es)"
        return agent_pb2.CommandResult(
            ok=True,
            message=f"Moved {moved} batch(es) from the DLQ back to the queue ({scope}).",
            details={"moved": str(moved)},
        )

    @staticmethod
    def list_command(spool: Spool, request: agent_pb2.ListDlq) -> agent_pb2.CommandResult:
        """The ``list_dlq`` command: the oldest matching batches and the totals of all that match."""
        limit = request.limit or DEFAULT_LIST_LIMIT
        problems = []
        if not 1 <= limit <= MAX_COMMAND_LIMIT:
            problems.append(f"list_dlq.limit: must be from 1 to {MAX_COMMAND_LIMIT} (0 means {DEFAULT_LIST_LIMIT}).")
        tenant: str | None = None
        if request.tenant:
            m = _TENANT_RE.fullmatch(request.tenant)
            if m is None:
                problems.append(f"list_dlq.tenant: {request.tenant!r} is not a tenant id or tenants/{{tenant}}.")
            else:
                tenant = m[1]
        dataset: str | None = None
        if request.dataset:
            m = _DATASET_RE.fullmatch(request.dataset)
            if m is None:
                problems.append(
                    f"list_dlq.dataset: {request.dataset!r} is not a dataset id or tenants/{{tenant}}/datasets/{{id}}."
                )
            else:
                dataset = m[2]
                if m[1] is not None and tenant is not None and m[1] != tenant:
                    problems.append(f"list_dlq.dataset: {request.dataset!r} is not of tenant {tenant!r}.")
                tenant = tenant or m[1]
        if problems:
            return agent_pb2.CommandResult(ok=False, message=" ".join(problems))
        count = size = 0
        for (t, d), per in spool.stats().by_dataset.items():
            if (tenant is None or t == tenant) and (dataset is None or d == dataset):
                count += per[BatchState.DLQ].count
                size += per[BatchState.DLQ].bytes
        batches = spool.dlq_list(tenant=tenant, dataset=dataset, limit=limit)
        scope = " of " + "/".join(x for x in (tenant, dataset) if x) if tenant or dataset else ""
        listed = f"; the oldest {len(batches)} are listed" if len(batches) < count else ""
        return agent_pb2.CommandResult(
            ok=True,
            message=f"{count} dead-lettered batch(es){scope}, {size} bytes{listed}.",
            details={"count": str(count), "listed": str(len(batches))},
            dlq_items=[_item(b) for b in batches],
            dlq_totals=agent_pb2.DlqTotals(count=count, size_bytes=size),
        )

    # -- HTTP handlers -----------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        spool = self._spool()
        if spool is None:
            return _not_open()
        return web.json_response(self.stats(spool))

    async def _files(self, request: web.Request) -> web.Response:
        spool = self._spool()
        if spool is None:
            return _not_open()
        q = request.query
        raw_limit = q.get("limit", str(DEFAULT_LIST_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
            return _invalid(f"limit: must be a whole number from 1 to {MAX_LIST_LIMIT}.")
        limit = int(raw_limit)
        tenant = q.get("tenant", "").removeprefix("tenants/") or None
        dataset = q.get("dataset") or None
        batches = spool.dlq_list(tenant=tenant, dataset=dataset, limit=limit + 1)
        files = [_file(b) for b in batches[:limit]]
        return web.json_response({"files": files, "count": len(files), "truncated": len(batches) > limit})

    async def _retry(self, request: web.Request) -> web.Response:
        spool = self._spool()
        if spool is None:
            return _not_open()
        raw = await request.read()
        ids: list[str] | None = None
        if raw.strip():
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                return _invalid(f"The body is not JSON: {exc}.")
            if not isinstance(doc, dict):
                return _invalid('The body must be a JSON object such as {"ids": ["..."]}.')
            value = doc.get("ids")
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(i, str) and i.isdigit() for i in value):
                    return _invalid("ids: must be a list of batch ids (strings of digits).")
                ids = value
        moved = await self.retry(spool, ids)
        return web.json_response({"moved": moved})


def _problem(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _invalid(message: str) -> web.Response:
    return _problem(400, "INVALID_ARGUMENT", message)


def _not_open() -> web.Response:
    return _problem(503, "UNAVAILABLE", "The spool is not open yet; try again shortly.")


def _figures(stats: StateStats) -> dict[str, int]:
    return {"files": stats.count, "bytes": stats.bytes}


def _time(seconds: float) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _file(batch: Batch) -> dict[str, Any]:
    meta = batch.meta
    return {
        "id": batch.id,
        "tenant": meta.tenant,
        "dataset": meta.dataset,
        "size": batch.size,
        "records": meta.records,
        "original_bytes": meta.original_bytes,
        "content_encoding": meta.content_encoding,
        "data_hint": meta.data_hint,
        "attempts": batch.attempts,
        "reason": batch.dlq_reason,
        "last_error": batch.last_error,
        "created_at": _time(meta.created_at),
        "dead_lettered_at": _time(batch.dlq_at),
    }


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _item(batch: Batch) -> agent_pb2.DlqItem:
    meta = batch.meta
    return agent_pb2.DlqItem(
        id=batch.id,
        tenant=f"tenants/{meta.tenant}",
        dataset=f"tenants/{meta.tenant}/datasets/{meta.dataset}",
        size_bytes=batch.size,
        records=meta.records,
        original_bytes=meta.original_bytes,
        attempts=batch.attempts,
        reason=batch.dlq_reason,
        last_error=batch.last_error,
        create_time=_timestamp(meta.created_at),
        dead_letter_time=_timestamp(batch.dlq_at),
        data_hint=meta.data_hint,
        content_encoding=meta.content_encoding,
    )
