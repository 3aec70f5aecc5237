"""A real ``floe agent connector`` exporting to Splunk HEC (``fake_splunk``, a protocol fake:
tokens, busy 503s, invalid events, the ack channel) and to a plain aiohttp webhook receiver
(NDJSON and gzip-compressed JSON arrays, custom and secret headers)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from tests.helpers import eventually
from tests.integration.agentkit import AgentProcess, http_get
from tests.integration.fake_splunk import FakeSplunk, Token
from tests.integration.test_connector_es import put_parquet, ts

T = TypeVar("T")


class LoopThread:
    """An event loop on a thread, hosting the in-process fakes while the test blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def connector(tmp_path: Path, jobs: list[dict[str, Any]], env: dict[str, str]) -> AgentProcess:
    config = tmp_path / "connector.json"
    config.write_text(json.dumps({"exports": jobs}))
    return AgentProcess(
        "connector", "conn-hec", tmp_path / "data", "--config", str(config), config_mode="local-only", env=env
    )


def status(agent: AgentProcess, job: str) -> dict[str, Any]:
    code, body = http_get(agent.api, "/api/v1/exports")
    assert code == 200
    return next(j for j in body["jobs"] if j["name"] == job)


def test_splunk_hec_with_acks_busy_server_and_an_invalid_event(tmp_path: Path, loop: LoopThread) -> None:
    fake = FakeSplunk({"hec-token": Token(indexes=("main", "net"), acks=True)})
    url = loop.run(fake.start())
    fake.busy = 2  # the first two requests answer 503 code 9
    data = tmp_path / "data"
    put_parquet(
        data,
        ("acme", "fw", "2026030110", "a"),
        {"timestamp": [ts(1), ts(2), ts(3)], "host": ["fw1", "fw2", "fw1"], "msg": ["a", "b", "c"]},
    )
    job = {
        "name": "tenants/acme/exports/to-hec",
        "dataset": "tenants/acme/datasets/fw",
        "mode": "EXPORT_MODE_WATCH",
        "interval": "1s",
        "retry": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "0.5s"},
        "destination": {
            "splunkHec": {
                "url": url,
                "token": {"env": "TEST_HEC_TOKEN"},
                "index": "net",
                "sourcetype": "floe:syslog",
                "source": "floe",
                "useAcks": True,
            }
        },
    }
    agent = connector(tmp_path, [job], {"TEST_HEC_TOKEN": "hec-token"}).start()
    try:
        eventually(lambda: len(fake.events) == 3, timeout=30)
        eventually(lambda: status(agent, "tenants/acme/exports/to-hec")["events_out"] == 3, timeout=10)
        first = fake.events[0]
        assert first == {
            "time": 1772359201.0,
            "host": "fw1",
            "source": "floe",
            "sourcetype": "floe:syslog",
            "index": "net",
            "event": {"timestamp": "2026-03-01T10:00:01.000000Z", "host": "fw1", "msg": "a"},
        }
        assert fake.ack_queries >= 1 and fake.requests >= 3
        # A token without the index the job names: the pass stops, saying why.
        fake.tokens["hec-token"] = Token(indexes=("main",), acks=True)
        put_parquet(data, ("acme", "fw", "2026030111", "b"), {"msg": ["d"]})
        eventually(lambda: "index" in status(agent, "tenants/acme/exports/to-hec")["last_error"], timeout=30)
        assert len(fake.events) == 3
    finally:
        agent.stop()
        loop.run(fake.close())


def test_hec_batch_job_with_a_token_file(tmp_path: Path, loop: LoopThread) -> None:
    fake = FakeSplunk({"tok": Token()})
    url = loop.run(fake.start())
    data = tmp_path / "data"
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"msg": ["one", None, "three"]})
    job = {
        "name": "tenants/acme/exports/blank",
        "dataset": "tenants/acme/datasets/fw",
        "mode": "EXPORT_MODE_BATCH",
        "query": "SELECT msg FROM fw",
        "destination": {"splunkHec": {"url": url, "token": {"file": str(tmp_path / "tok")}}},
    }
    (tmp_path / "tok").write_text("tok\n")
    agent = connector(tmp_path, [job], {}).start()
    try:
        eventually(lambda: status(agent, "tenants/acme/exports/blank")["state"] == "completed", timeout=30)
        assert [e["event"] for e in fake.events] == [{"msg": "one"}, {"msg": None}, {"msg": "three"}]
    finally:
        agent.stop()
        loop.run(fake.close())


class Hook:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_next = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp decodes Content-Encoding: gzip itself
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        self.requests.append((request.method, dict(request.headers), body))
        return web.Response(status=204)

    async def start(self) -> tuple[str, Callable[[], Awaitable[None]]]:
        app = web.Application()
        app.router.add_route("*", "/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", runner.cleanup


def test_webhook_ndjson_and_gzip_json_array(tmp_path: Path, loop: LoopThread) -> None:
    hook = Hook()
    hook.fail_next = 1
    url, stop = loop.run(hook.start())
    data = tmp_path / "data"
    put_parquet(data, ("acme", "fw", "2026030110", "a"), {"n": [1, 2, 3]})
    base = {"dataset": "tenants/acme/datasets/fw", "mode": "EXPORT_MODE_BATCH", "batchSize": 2}
    jobs = [
        {
            **base,
            "name": "tenants/acme/exports/nd",
            "retry": {"initialBackoff": "0.1s", "maxBackoff": "0.2s"},
            "destination": {"webhook": {"url": url, "headers": {"X-Team": "net"}}},
        },
        {
            **base,
            "name": "tenants/acme/exports/arr",
            "query": "n > 1",
            "destination": {
                "webhook": {
                    "url": url,
                    "method": "PUT",
                    "format": "WEBHOOK_FORMAT_JSON_ARRAY",
                    "gzip": True,
                    "secretHeaders": {"Authorization": {"env": "HOOK_AUTH"}},
                }
            },
        },
    ]
    agent = connector(tmp_path, jobs, {"HOOK_AUTH": "Bearer s3cret"}).start()
    try:
        for name in ("tenants/acme/exports/nd", "tenants/acme/exports/arr"):

            def completed(name: str = name) -> bool:
                return bool(status(agent, name)["state"] == "completed")

            eventually(completed, timeout=30)
        posts = [r for r in hook.requests if r[0] == "POST"]
        puts = [r for r in hook.requests if r[0] == "PUT"]
        assert all(h["Content-Type"] == "application/x-ndjson" and h["X-Team"] == "net" for _, h, _ in posts)
        # Two requests are in flight at once (and one was retried): order across batches may vary.
        assert sorted(b"".join(b for _, _, b in posts).splitlines()) == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
        assert [json.loads(b) for _, _, b in puts] == [[{"n": 2}, {"n": 3}]]
        assert puts[0][1]["Authorization"] == "Bearer s3cret" and puts[0][1]["Content-Type"] == "application/json"
        assert puts[0][1]["Content-Encoding"] == "gzip"
        assert "s3cret" not in agent.log()
    finally:
        agent.stop()
        loop.run(stop())
