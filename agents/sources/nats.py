"""NATS input: a subscription (optionally in a queue group) whose messages become records.

A JSON object payload is kept as the record; any other payload becomes
``{"message": <text>, "subject": <subject>}``. Messages are gathered per burst and encoded off the
event loop (``Pipeline``). Core NATS has no acknowledgement, so when the sink refuses a batch it
is dropped and counted as ``sink_refused``; messages the client had to discard because the input
fell behind are counted as ``slow_consumer``.

The client reconnects by itself (forever); until the first connection succeeds the input keeps
trying with backoff. Either way the component is DEGRADED, saying why, while not connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agents.sources.lines import Pipeline
from agents.sources.plugin import Input, InputContext, Option, SourcePlugin
from floe.aio import cancel
from floe.backoff import Backoff
from floe.v1 import datasets_pb2, health_pb2

__all__ = ["PLUGINS", "NatsInput", "nats_ndjson", "redact"]

log = logging.getLogger(__name__)
ST = datasets_pb2.SourceType
HS = health_pb2.HealthStatus
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def redact(url: str) -> str:
    """``url`` without its user and password, fit for logs and health messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _as_object(payload: bytes) -> dict[str, Any] | None:
    if payload.lstrip()[:1] != b"{":
        return None
    try:
        value = json.loads(payload, parse_constant=_no_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def nats_ndjson(payloads: list[bytes], subjects: list[str], received_ns: int) -> tuple[bytes, int, dict[str, int]]:
    """Messages as NDJSON: JSON objects as they are (on one line), anything else wrapped."""
    out: list[bytes] = []
    for payload, subject in zip(payloads, subjects, strict=True):
        obj = _as_object(payload)
        if obj is None:
            line = _ENCODE({"message": payload.decode("utf-8", "replace"), "subject": subject}).encode()
        elif b"\n" in payload or b"\r" in payload:
            line = _ENCODE(obj).encode()
        else:
            line = payload.strip()
        out.append(line)
    out.append(b"")
    return b"\n".join(out), len(payloads), {}


class NatsInput(Input):
    """One NATS connection and subscription for one dataset."""

    def __init__(self, ctx: InputContext) -> None:
        self.ctx = ctx
        self.url: str = ctx.options["url"]
        self.subject: str = ctx.options["subject"]
        self.queue: str = ctx.options.get("queue_group") or ""
        self.pipeline = Pipeline(ctx, nats_ndjson, drop_refused=True)
        self._nc: Any = None
        self._task: asyncio.Task[None] | None = None
        self._burst: list[bytes] = []
        self._subjects: list[str] = []
        self._flush_scheduled = False

    async def start(self) -> None:
        self.pipeline.start()
        self._state(False, f"connecting to {redact(self.url)}")
        self._task = asyncio.create_task(self._connect(), name=f"nats-{self.ctx.dataset.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.drain(), 5.0)  # delivers what the client holds, then closes
            except Exception:  # the server may be gone; closing is all that is left to do
                with contextlib.suppress(Exception):
                    await nc.close()
        self._flush()
        await self.pipeline.close()

    async def _connect(self) -> None:
        import nats
        from nats.errors import SlowConsumerError

        backoff = Backoff(0.5, 30.0)
        options: dict[str, Any] = {
            "servers": [self.url],
            "name": f"floe-proxy {self.ctx.dataset.name}",
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "connect_timeout": 3,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
        }
        if self.url.startswith("tls://"):
            options["tls"] = ssl.create_default_context()
        if self.ctx.options.get("credentials_file"):
            options["user_credentials"] = self.ctx.options["credentials_file"]

        last_error = ""

        async def on_error(exc: Exception) -> None:
            nonlocal last_error
            if isinstance(exc, SlowConsumerError):
                self.ctx.component.drop("slow_consumer")
                return
            reason = str(exc) or type(exc).__name__
            if self._nc is None or not self._nc.is_connected:
                # The client retries the first connection by itself too; say why it has none.
                self._state(False, f"cannot reach {redact(self.url)}: {reason}")
            if reason != last_error:  # once per distinct error, not once per attempt
                last_error = reason
                log.warning("NATS client error", extra={"dataset": self.ctx.dataset.name, "error": reason})

        options["error_cb"] = on_error
        while True:
            try:
                nc = await nats.connect(**options)
                await nc.subscribe(self.subject, queue=self.queue, cb=self._on_message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                self._state(False, f"cannot reach {redact(self.url)}: {reason}")
                log.warning(
                    "Cannot subscribe to NATS; retrying",
                    extra={"dataset": self.ctx.dataset.name, "url": redact(self.url), "error": reason},
                )
                await asyncio.sleep(backoff.delay())
                continue
            self._nc = nc
            self._state(True, "")
            log.info(
                "Subscribed to NATS",
                extra={"dataset": self.ctx.dataset.name, "url": redact(self.url), "subject": self.subject},
            )
            return

    def _state(self, connected: bool, message: str) -> None:
        comp = self.ctx.component
        comp.status = HS.HEALTH_STATUS_HEALTHY if connected else HS.HEALTH_STATUS_DEGRADED
        queue = f" (queue group {self.queue})" if self.queue else ""
        comp.message = message or f"subscribed to {self.subject}{queue} on {redact(self.url)}"

    async def _disconnected(self) -> None:
        self._state(False, f"disconnected from {redact(self.url)}; reconnecting")

    async def _reconnected(self) -> None:
        self._state(True, "")

    async def _on_message(self, msg: Any) -> None:
        data: bytes = msg.data
        comp = self.ctx.component
        comp.events_in += 1
        comp.bytes_in += len(data)
        self._burst.append(data)
        self._subjects.append(msg.subject)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        burst, subjects = self._burst, self._subjects
        self._burst, self._subjects = [], []
        self.pipeline.add_many(burst, subjects)


def _check_url(raw: str) -> str | None:
    return None if raw.startswith(("nats://", "tls://")) else f"{raw!r} is not a nats:// or tls:// URL"


PLUGINS = (
    SourcePlugin(
        ST.SOURCE_TYPE_NATS,
        "nats",
        "NATS subscription (wildcards, optional queue group); JSON objects kept, other payloads wrapped.",
        (
            Option("subject", "string", None, "Subject to subscribe to, wildcards allowed (events.>).", required=True),
            Option("url", "string", "nats://127.0.0.1:4222", "NATS server URL (nats:// or tls://).", check=_check_url),
            Option("queue_group", "string", None, "Queue group: proxies in the same group share the messages."),
            Option("credentials_file", "path", None, "NATS credentials (.creds) file for JWT/NKey auth."),
        ),
        NatsInput,
    ),
)
