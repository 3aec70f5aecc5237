"""The HTTP webhook input in-process: body formats by Content-Type and by sniffing, JSON answers
for every outcome (400 naming the line, 401, 413, 503 with Retry-After), the configured path."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from agents.sources.webhook import BadBody, parse_body
from floe.v1 import datasets_pb2
from tests.unit.test_inputs_plugins import component, free_port, make_dataset, run, running

ST = datasets_pb2.SourceType


@pytest.mark.parametrize(
    ("body", "content_type", "records"),
    [
        (b'{"a":1}\n{"b":2}\r\n\n', "application/x-ndjson", [b'{"a":1}', b'{"b":2}']),
        (b'[{"a":1},{"b":[2]}]', "application/json; charset=utf-8", [b'{"a":1}', b'{"b":[2]}']),
        (b'{\n  "a": 1\n}', "application/json", [b'{"a":1}']),
        (b"one\r\ntwo\n", "text/plain", [b'{"message":"one"}', b'{"message":"two"}']),
        # Sniffed: curl -d sends application/x-www-form-urlencoded.
        (b'[{"a":1}]', "application/x-www-form-urlencoded", [b'{"a":1}']),
        (b'{"a":1}\n{"b":2}', "", [b'{"a":1}', b'{"b":2}']),
        (b'{"a": 1}', "application/octet-stream", [b'{"a":1}']),
        (b"plain words", "", [b'{"message":"plain words"}']),
    ],
)
def test_body_formats(body: bytes, content_type: str, records: list[bytes]) -> None:
    ndjson, count = parse_body(body, content_type)
    assert count == len(records)
    assert ndjson == b"".join(r + b"\n" for r in records)


@pytest.mark.parametrize(
    ("body", "content_type", "line", "text"),
    [
        (b'{"a":1}\n{"b":\n', "application/x-ndjson", 2, "line 2: is not JSON"),
        (b'{"a":1}\n[1]\n', "application/x-ndjson", 2, "line 2: is a JSON array, not an object"),
        (b"[1, 2]", "application/json", 0, "element 0 of the array is a JSON number"),
        (b'"text"', "application/json", 0, "the body is a JSON string"),
        (b'{"a": NaN}', "application/json", 0, "NaN is not valid JSON"),
        (b'{"a":1}\n{oops}', "", 2, "line 2: is not JSON"),
    ],
)
def test_bad_bodies_name_the_line(body: bytes, content_type: str, line: int, text: str) -> None:
    with pytest.raises(BadBody) as info:
        parse_body(body, content_type)
    assert info.value.line == line
    assert text in str(info.value)


def test_webhook_answers() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("hook", ST.SOURCE_TYPE_HTTP, port, path="/in", bearer_token="s3cret", max_payload_bytes="1000")
    url = f"http://127.0.0.1:{port}/in"
    auth = {"Authorization": "Bearer s3cret"}

    async def main() -> None:
        async with running(ds) as (_, sink, health), aiohttp.ClientSession() as http:

            async def post(body: bytes, headers: dict[str, str], target: str = url) -> tuple[int, Any, Any]:
                async with http.post(target, data=body, headers=headers) as resp:
                    return resp.status, await resp.json(), resp.headers

            status, body, _ = await post(b'{"a":1}\n{"a":2}', {**auth, "Content-Type": "application/x-ndjson"})
            assert (status, body) == (200, {"accepted": 2})
            assert sink.records == [{"a": 1}, {"a": 2}]

            status, body, headers = await post(b'{"a":1}', {"Content-Type": "application/json"})
            assert status == 401 and "bearer token" in body["error"]
            assert headers["WWW-Authenticate"].startswith("Bearer")
            status, body, _ = await post(b'{"a":1}', {"Authorization": "Bearer wrong"})
            assert status == 401

            status, body, _ = await post(b"x" * 1001, auth)
            assert status == 413 and body["limit"] == 1000

            status, body, _ = await post(b'{"a":1}\nnope', {**auth, "Content-Type": "application/x-ndjson"})
            assert status == 400 and body["line"] == 2 and "line 2" in body["error"]

            status, body, _ = await post(b"{}", auth, target=f"http://127.0.0.1:{port}/other")
            assert status == 404 and "/in" in body["error"]
            async with http.get(url, headers=auth) as resp:
                assert resp.status == 405 and resp.headers["Allow"] == "POST"

            sink.refuse = True
            status, body, headers = await post(b"a\nb", {**auth, "Content-Type": "text/plain"})
            assert status == 503 and headers["Retry-After"] == "5" and "spool is full" in body["error"]

            comp = component(health, ds)
            assert comp.dropped == {"unauthorized": 2, "oversize": 1, "malformed_json": 1, "sink_refused": 2}
            assert comp.events_out == 2

    run(main)
