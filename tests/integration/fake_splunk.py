"""A protocol fake of Splunk's HTTP Event Collector, because Splunk cannot run here. It follows
the documented HEC wire protocol the connector relies on:

- ``POST /services/collector/event`` (and ``/services/collector``) with ``Authorization: Splunk
  <token>``: missing header 401 code 2, bad scheme 401 code 3, unknown token 403 code 4.
- The body is a run of concatenated JSON event objects (whitespace/newlines between them
  allowed), each needing an ``event`` field (code 12 when missing, 13 when blank); an object that
  does not parse answers 400 code 6 ``Invalid data format`` with ``invalid-event-number`` (the
  0-based index of the bad event): like Splunk, the events before it are indexed.
- ``index`` must be one the token may write (400 code 7 ``Incorrect index``).
- Acknowledgement: with a token that has acks enabled, requests need
  ``X-Splunk-Request-Channel`` (400 code 10 when missing) and answers carry ``ackId``, sequential
  per channel; ``POST /services/collector/ack`` with ``{"acks": [ids]}`` answers
  ``{"acks": {"id": bool}}``. Acks turn true ``ack_delay`` seconds after indexing.
- Faults scripted through ``POST /_fake/faults``: the next N requests answered 503 code 9
  ``Server is busy`` (with ``Retry-After`` if set).

In-process: ``FakeSplunk(tokens={"T": ...}).start()``; ``events`` holds what was indexed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeSplunk"]


def _answer(status: int, code: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"text": text, "code": code, **extra}, status=status)


@dataclass
class Token:
    indexes: tuple[str, ...] = ("main",)
    acks: bool = False


@dataclass
class Channel:
    next_id: int = 0
    indexed_at: dict[int, float] = field(default_factory=dict)


class FakeSplunk:
    def __init__(self, tokens: dict[str, Token], *, ack_delay: float = 0.2) -> None:
        self.tokens = tokens
        self.ack_delay = ack_delay
        self.events: list[dict[str, Any]] = []
        self.channels: dict[str, Channel] = {}
        self.busy = 0
        self.retry_after = ""
        self.requests = 0
        self.ack_queries = 0
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_post("/services/collector/event", self._event)
        app.router.add_post("/services/collector", self._event)
        app.router.add_post("/services/collector/ack", self._ack)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _token(self, request: web.Request) -> tuple[Token | None, web.Response | None]:
        header = request.headers.get("Authorization")
        if not header:
            return None, _answer(401, 2, "Token is required")
        scheme, _, value = header.partition(" ")
        if scheme != "Splunk" or not value:
            return None, _answer(401, 3, "Invalid authorization")
        token = self.tokens.get(value)
        if token is None:
            return None, _answer(403, 4, "Invalid token")
        return token, None

    async def _event(self, request: web.Request) -> web.Response:
        self.requests += 1
        token, denied = self._token(request)
        if denied is not None:
            return denied
        assert token is not None
        if self.busy > 0:
            self.busy -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response({"text": "Server is busy", "code": 9}, status=503, headers=headers)
        channel_id = request.headers.get("X-Splunk-Request-Channel")
        if token.acks and not channel_id:
            return _answer(400, 10, "Data channel is missing")
        raw = (await request.read()).decode(errors="replace")
        decoder = json.JSONDecoder()
        pos, n = 0, 0
        while True:
            while pos < len(raw) and raw[pos].isspace():
                pos += 1
            if pos >= len(raw):
                break
            try:
                event, pos = decoder.raw_decode(raw, pos)
            except ValueError:
                return _answer(400, 6, "Invalid data format", **{"invalid-event-number": n})
            if not isinstance(event, dict):
                return _answer(400, 6, "Invalid data format", **{"invalid-event-number": n})
            if "event" not in event:
                return _answer(400, 12, "Event field is required", **{"invalid-event-number": n})
            if event["event"] in ("", None):
                return _answer(400, 13, "Event field cannot be blank", **{"invalid-event-number": n})
            index = event.get("index", "main")
            if index not in token.indexes:
                return _answer(400, 7, "Incorrect index", **{"invalid-event-number": n})
            self.events.append(event)
            n += 1
        if n == 0:
            return _answer(400, 5, "No data")
        if token.acks:
            assert channel_id is not None
            channel = self.channels.setdefault(channel_id, Channel())
            ack_id = channel.next_id
            channel.next_id += 1
            channel.indexed_at[ack_id] = time.monotonic() + self.ack_delay
            return _answer(200, 0, "Success", ackId=ack_id)
        return _answer(200, 0, "Success")

    async def _ack(self, request: web.Request) -> web.Response:
        self.ack_queries += 1
        token, denied = self._token(request)
        if denied is not None:
            return denied
        assert token is not None
        if not token.acks:
            return _answer(400, 14, "ACK is disabled")
        channel = self.channels.get(request.headers.get("X-Splunk-Request-Channel", ""))
        if channel is None:
            return _answer(400, 11, "Invalid data channel")
        doc = await request.json()
        now = time.monotonic()
        acks = {str(i): i in channel.indexed_at and channel.indexed_at[i] <= now for i in doc.get("acks", [])}
        return web.json_response({"acks": acks})
