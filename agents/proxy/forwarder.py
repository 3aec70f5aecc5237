"""The proxy's forwarder: sends spooled batches to the receivers and settles each one in the
spool (completed, retried later or dead-lettered) by what the receiver answered.

``POST {receiver}/{tenant}/{dataset}`` with the compressed body, ``Authorization: Bearer``, and the
batch headers of ``floe.protocol``. A batch is completed only after a 2xx; a retried batch keeps its
id (``X-Floe-Batch-Id``), and the receiver names objects after it, so a POST repeated after a lost
answer overwrites instead of duplicating.

Receivers: round-robin over those that are up. One that cannot be reached (connection error,
timeout) or answers 5xx/429 is down for a while (``floe.backoff.Backoff``, or its Retry-After) and
the batch goes to the next one; this costs the batch no attempt when another receiver takes it.
When no receiver can be reached the batches simply wait in the spool (queue) without losing
attempts, and the forwarder's health is DEGRADED naming the receivers. When the receivers that
answered all answered 5xx/429, the batch is retried with backoff (growing to ``retry_interval``,
or the Retry-After) up to ``retry_attempts`` attempts, then dead-lettered. Any other 4xx (401,
404, 410, 413, 400...) dead-letters it at once with the receiver's error message as the reason.

Bodies are read whole from the spool (``Spool.read``) rather than streamed from the file: they are
at most a few MiB, the read verifies the checksum before anything is sent, the same bytes serve a
failover to the next receiver, and aiohttp sends a ``bytes`` body with one write instead of a
chunked file transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from dataclasses import dataclass
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import quote

import aiohttp
from prometheus_client import Counter

from agents.runtime.health import HealthBoard
from agents.runtime.spool import Batch, CorruptBatchError, Spool, SpoolError
from floe.aio import cancel
from floe.backoff import Backoff, retry_after
from floe.protocol import (
    HEADER_BATCH_ID,
    HEADER_CREATED_AT,
    HEADER_DATA_HINT,
    HEADER_ORIGINAL_BYTES,
    HEADER_RECORD_COUNT,
)
from floe.v1 import health_pb2

__all__ = ["Forwarder"]

log = logging.getLogger(__name__)
HS = health_pb2.HealthStatus

#: The longest the dispatcher sleeps without a wake-up (catches batches appended by others).
IDLE_POLL = 1.0
#: How often spool figures and receiver health are refreshed.
STATS_INTERVAL = 1.0
#: The longest Retry-After honoured, seconds (a broken header must not park a batch for days).
MAX_RETRY_AFTER = 3600.0
#: Bytes of an error answer kept for the DLQ reason.
ERROR_BODY_LIMIT = 64 << 10

REQUESTS = Counter("floe_proxy_forward_requests_total", "POSTs to receivers by outcome.", ["outcome"])
SETTLED = Counter("floe_proxy_batches_settled_total", "Batches settled by the forwarder.", ["result"])


def _user_agent() -> str:
    try:
        return f"floe-proxy/{version('floe')}"
    except PackageNotFoundError:
        return "floe-proxy"


class _Kind(Enum):
    DELIVERED = "delivered"
    UNREACHABLE = "unreachable"  # no answer: the receiver's problem, never the batch's
    TRANSIENT = "transient"  # 5xx, 429, 408: the batch may succeed later
    PERMANENT = "permanent"  # any other non-2xx: retrying cannot help


@dataclass(frozen=True)
class _Outcome:
    kind: _Kind
    error: str = ""
    retry_after: float | None = None


class _Receiver:
    def __init__(self, url: str, backoff: Backoff) -> None:
        self.url = url.rstrip("/")
        self.backoff = backoff
        self.down_until = 0.0
        self.error = ""

    def up(self, now: float) -> bool:
        return now >= self.down_until

    def __str__(self) -> str:
        return self.url


class Forwarder:
    """Delivers the spool's batches. ``start`` on the event loop, ``stop`` when done.

    At most ``workers`` POSTs run at once over one connection pool. ``wake`` tells it new batches
    are ready (the batcher calls it after each append; DLQ retries too).
    """

    def __init__(
        self,
        spool: Spool,
        health: HealthBoard,
        receivers: list[str],
        token: str,
        *,
        workers: int = 4,
        timeout: float = 30.0,
        retry_attempts: int = 5,
        retry_interval: float = 60.0,
        cleanup_interval: float = 300.0,
        ssl_context: ssl.SSLContext | bool = True,
    ) -> None:
        problems = []
        if not receivers:
            problems.append("receivers: at least one receiver URL is needed")
        for name, value in (("workers", workers), ("retry_attempts", retry_attempts)):
            if value < 1:
                problems.append(f"{name}: must be at least 1")
        for name, fvalue in (("timeout", timeout), ("retry_interval", retry_interval)):
            if fvalue <= 0:
                problems.append(f"{name}: must be greater than 0")
        if problems:
            raise ValueError("; ".join(problems))
        self._spool = spool
        self._token = token
        self._workers = workers
        self._timeout = timeout
        self._retry_attempts = retry_attempts
        self._retry_interval = retry_interval
        self._retry_initial = min(1.0, retry_interval)
        self._cleanup_interval = cleanup_interval
        self._receivers = [_Receiver(u, Backoff(min(0.5, retry_interval), retry_interval)) for u in receivers]
        self._next = 0
        self._comp = health.component("forwarder", "proxy.forwarder")
        self._spool_comp = health.component("spool", "spool")
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context
        self._delivered_batches = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        # https:// receivers are verified (the system's CAs or receiver_ca_file), never not at all.
        connector = aiohttp.TCPConnector(limit=self._workers, keepalive_timeout=30.0, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"User-Agent": _user_agent()},
        )
        self._refresh()
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="proxy-forwarder"),
            asyncio.create_task(self._housekeeping(), name="proxy-housekeeping"),
        ]
        log.info("Forwarder started", extra={"receivers": [r.url for r in self._receivers], "workers": self._workers})

    async def stop(self, grace: float = 3.0) -> None:
        """Stop claiming, give in-flight POSTs ``grace`` seconds, then cancel them; every batch
        still claimed goes back to the queue (a POST cut short is sent again after a restart,
        under the same batch id)."""
        await cancel(*self._tasks)
        self._tasks = []
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """New batches may be ready: look at once instead of at the next poll."""
        self._wake.set()

    # -- dispatching -------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(batch), name=f"forward-{batch.id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("Forwarding a batch failed unexpectedly", exc_info=task.exception())

    async def _next_batch(self) -> Batch:
        """Claim the next ready batch once a receiver is up, sleeping until one may be."""
        while True:
            now = time.monotonic()
            if any(r.up(now) for r in self._receivers):
                claimed = self._spool.claim(1)
                if claimed:
                    return claimed[0]
                ready = self._spool.next_ready_at()  # the spool's clock is the wall clock
                wait = IDLE_POLL if ready is None else ready - time.time()
            else:
                wait = min(r.down_until for r in self._receivers) - now
            await self._sleep(min(max(wait, 0.0), IDLE_POLL))

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        else:
            await asyncio.sleep(0)
        self._wake.clear()

    def _pick(self, tried: set[str]) -> _Receiver | None:
        """The next receiver in round-robin order that is up and not yet tried for this batch."""
        now = time.monotonic()
        count = len(self._receivers)
        for i in range(count):
            receiver = self._receivers[(self._next + i) % count]
            if receiver.url not in tried and receiver.up(now):
                self._next = (self._next + i + 1) % count
                return receiver
        return None

    # -- one batch ---------------------------------------------------------------------------

    async def _run(self, batch: Batch) -> None:
        settled = False
        try:
            settled = await self._deliver(batch)
        finally:
            if not settled:
                with contextlib.suppress(SpoolError):
                    self._spool.release(batch)

    async def _deliver(self, batch: Batch) -> bool:
        """Send ``batch`` to receivers until one takes it or none is left; settle it in the spool.

        Returns False when it was left claimed (the caller releases it).
        """
        try:
            body = await self._spool.read(batch)
        except (CorruptBatchError, OSError) as exc:
            await self._dead_letter(batch, f"The spooled batch cannot be read: {exc}")
            return True
        tried: set[str] = set()
        answered: list[_Outcome] = []
        while (receiver := self._pick(tried)) is not None:
            tried.add(receiver.url)
            outcome = await self._post(receiver, batch, body)
            REQUESTS.labels(outcome.kind.value).inc()
            if outcome.kind is _Kind.DELIVERED:
                self._receiver_ok(receiver)
                await self._spool.complete(batch)
                self._delivered(batch)
                return True
            self._comp.errors += 1
            if outcome.kind is _Kind.PERMANENT:
                await self._dead_letter(batch, outcome.error)
                return True
            self._receiver_down(receiver, outcome)
            if outcome.kind is _Kind.TRANSIENT:
                answered.append(outcome)
        if not answered:
            return False  # nobody reachable: the batch waits in the queue, no attempt counted
        last = answered[-1]
        attempt = batch.attempts + 1
        if attempt >= self._retry_attempts:
            await self._dead_letter(batch, f"Delivery failed {attempt} times; the last error: {last.error}")
            return True
        hints = [o.retry_after for o in answered if o.retry_after]
        delay = self._retry_delay(batch.attempts, max(hints) if hints else None)
        await self._spool.retry(batch, last.error, delay)
        SETTLED.labels("retry").inc()
        log.info(
            "Batch will be retried",
            extra={"batch_id": batch.id, "attempt": attempt, "delay_s": round(delay, 3), "error": last.error},
        )
        self.wake()  # the dispatcher may be sleeping on an older ready time
        return True

    async def _post(self, receiver: _Receiver, batch: Batch, body: bytes) -> _Outcome:
        assert self._session is not None
        meta = batch.meta
        url = f"{receiver.url}/{quote(meta.tenant, safe='')}/{quote(meta.dataset, safe='')}"
        headers = {
            "Content-Type": "application/x-ndjson",
            HEADER_BATCH_ID: batch.id,
            HEADER_RECORD_COUNT: str(meta.records),
            HEADER_ORIGINAL_BYTES: str(meta.original_bytes),
            HEADER_CREATED_AT: str(int(meta.created_at * 1e9)),
            HEADER_DATA_HINT: meta.data_hint or "ndjson",
        }
        if meta.content_encoding:
            headers["Content-Encoding"] = meta.content_encoding
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()  # drain the answer so the connection is reused
                    return _Outcome(_Kind.DELIVERED)
                text = await resp.content.read(ERROR_BODY_LIMIT)
                error = f"{receiver} answered {resp.status}: {_error_message(text, resp.reason)}"
                if resp.status >= 500 or resp.status in (408, 429):
                    return _Outcome(_Kind.TRANSIENT, error, retry_after(resp.headers.get("Retry-After")))
                if 300 <= resp.status < 400:
                    error += f" (redirected to {resp.headers.get('Location', '?')}; configure the final URL)"
                return _Outcome(_Kind.PERMANENT, error)
        except TimeoutError:
            return _Outcome(_Kind.UNREACHABLE, f"{receiver} did not answer within {self._timeout:g} s")
        except aiohttp.ClientError as exc:
            return _Outcome(_Kind.UNREACHABLE, f"{receiver} cannot be reached: {exc or type(exc).__name__}")

    def _retry_delay(self, attempts: int, hint: float | None) -> float:
        """The wait before attempt ``attempts + 2``: the Retry-After, else backoff doubling from
        ``retry_initial`` to ``retry_interval`` (the one retry policy, replayed to this attempt)."""
        policy = Backoff(self._retry_initial, self._retry_interval)
        for _ in range(min(attempts, 32)):
            policy.delay()
        return policy.delay(min(hint, MAX_RETRY_AFTER) if hint else None)

    async def _dead_letter(self, batch: Batch, reason: str) -> None:
        await self._spool.dead_letter(batch, reason)
        SETTLED.labels("dead_letter").inc()
        self._comp.drop("dead_lettered", batch.meta.records)
        log.warning(
            "Batch dead-lettered",
            extra={"batch_id": batch.id, "tenant": batch.meta.tenant, "dataset": batch.meta.dataset, "reason": reason},
        )

    def _delivered(self, batch: Batch) -> None:
        SETTLED.labels("delivered").inc()
        self._delivered_batches += 1
        self._comp.events_out += batch.meta.records
        self._comp.bytes_out += batch.size
        self._comp.last_flush = time.time()

    # -- receiver health ---------------------------------------------------------------------

    def _receiver_down(self, receiver: _Receiver, outcome: _Outcome) -> None:
        now = time.monotonic()
        receiver.error = outcome.error
        if not receiver.up(now):
            return  # already down: a burst of failures from one outage backs off once
        wait = receiver.backoff.delay(min(outcome.retry_after, MAX_RETRY_AFTER) if outcome.retry_after else None)
        receiver.down_until = now + wait
        log.warning(
            "Receiver unavailable; sending to the others",
            extra={"receiver": receiver.url, "error": outcome.error, "retry_in_s": round(wait, 3)},
        )
        self._refresh()

    def _receiver_ok(self, receiver: _Receiver) -> None:
        if receiver.error:
            log.info("Receiver is back", extra={"receiver": receiver.url})
            receiver.error = ""
            receiver.backoff.reset()
            self._refresh()

    def _refresh(self) -> None:
        now = time.monotonic()
        down = [r for r in self._receivers if not r.up(now)]
        failing = [r for r in self._receivers if r.error]
        comp = self._comp
        if len(down) == len(self._receivers):
            comp.status = HS.HEALTH_STATUS_DEGRADED
            comp.message = "no receiver takes batches now; they wait in the spool: " + "; ".join(
                r.error for r in self._receivers
            )
        elif failing:
            comp.status = HS.HEALTH_STATUS_DEGRADED
            comp.message = "failing receivers (the others take their batches): " + "; ".join(r.error for r in failing)
        else:
            comp.status = HS.HEALTH_STATUS_HEALTHY
            comp.message = f"{self._delivered_batches} batches delivered to {len(self._receivers)} receiver(s)"
        comp.backlog = len(self._inflight)

    async def _housekeeping(self) -> None:
        """Spool figures every ``STATS_INTERVAL``; max age and the DLQ limit every ``cleanup_interval``."""
        last_sweep = time.monotonic()
        while True:
            self._spool.fill_health(self._spool_comp)
            self._refresh()
            if self._cleanup_interval > 0 and time.monotonic() - last_sweep >= self._cleanup_interval:
                last_sweep = time.monotonic()
                expired = await self._spool.sweep()
                if expired:
                    log.warning("Batches older than the spool's max age moved to the DLQ", extra={"batches": expired})
            await asyncio.sleep(STATS_INTERVAL)


def _error_message(body: bytes, reason: str | None) -> str:
    """The receiver's error message from its JSON answer (``{"error": {"message": ...}}``,
    ``{"error": "..."}`` or ``{"message": ...}``), else the start of its text, else the reason."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            code = err.get("code")
            return f"{err['message']} ({code})" if isinstance(code, str) and code else str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(doc.get("message"), str):
            return str(doc["message"])
    if text:
        return text[:500]
    return reason or "no message"
