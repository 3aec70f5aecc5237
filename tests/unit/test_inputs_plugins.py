"""Input plugins: the option schemas (shared with the control plane's dataset validation) and the
ListenerSet running them in-process with a recording sink.

``RecordingSink`` and ``running`` are shared with the other ``test_inputs_*`` modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from agents.proxy.listeners import ListenerSet
from agents.proxy.sink import SinkRefused
from agents.runtime.health import Component, HealthBoard
from agents.sources import registry
from agents.sources.ndjson import encode_records, encode_table
from agents.sources.plugin import Option, OptionsError
from control_plane.core.datasets import apply_defaults, validate_dataset
from floe.aio import run as run_loop
from floe.v1 import datasets_pb2

ST = datasets_pb2.SourceType


class RecordingSink:
    """A Sink that keeps every record it is given (decoded, so tests see what receivers would),
    or refuses while ``refuse`` is set."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.by_dataset: dict[str, list[dict[str, Any]]] = {}
        self.refuse = False
        self.refused = 0
        self.calls = 0

    def submit(self, dataset: datasets_pb2.Dataset, records: bytes, count: int) -> bool:
        self.calls += 1
        if self.refuse:
            self.refused += count
            return False
        assert records.endswith(b"\n"), records[-100:]
        lines = records.decode().split("\n")[:-1]
        assert len(lines) == count, (len(lines), count)
        decoded = [json.loads(line) for line in lines]
        assert all(isinstance(r, dict) for r in decoded)
        self.records.extend(decoded)
        self.by_dataset.setdefault(dataset.name, []).extend(decoded)
        return True

    async def submit_durable(self, dataset: datasets_pb2.Dataset, records: bytes, count: int) -> None:
        if not self.submit(dataset, records, count):
            raise SinkRefused("the spool is full (test)")


def run(fn: Callable[[], Awaitable[None]], timeout: float = 60) -> None:
    """Run ``fn`` on uvloop, as the agent does."""

    async def main() -> None:
        await asyncio.wait_for(fn(), timeout)

    run_loop(main())


async def until(check: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` on the running loop until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {what or check}")
        await asyncio.sleep(0.02)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_dataset(name: str, source_type: int, port: int = 0, **options: str) -> datasets_pb2.Dataset:
    ds = datasets_pb2.Dataset(
        name=f"tenants/t/datasets/{name}",
        source=datasets_pb2.Source(type=source_type, port=port, bind_host="127.0.0.1" if port else "", options=options),  # type: ignore[arg-type]
        active=True,
    )
    return ds


@contextlib.asynccontextmanager
async def running(*datasets: datasets_pb2.Dataset) -> AsyncIterator[tuple[ListenerSet, RecordingSink, HealthBoard]]:
    """A ListenerSet running ``datasets`` with a recording sink; closed afterwards."""
    health = HealthBoard()
    sink = RecordingSink()
    listeners = ListenerSet(health, sink)
    assert listeners.check(list(datasets)) == []
    await listeners.apply(list(datasets))
    try:
        yield listeners, sink, health
    finally:
        await listeners.close()


def component(health: HealthBoard, ds: datasets_pb2.Dataset) -> Component:
    found = [c for c in health.components() if c.name == f"source/{ds.name}"]
    assert found, [c.name for c in health.components()]
    return found[0]


# -- schemas -----------------------------------------------------------------------------------


def test_every_source_type_has_a_plugin_with_described_options() -> None:
    described = registry.describe()
    assert {d["type"] for d in described} == {
        "syslog_udp", "syslog_tcp", "http", "sflow", "ipfix", "netflow", "nats", "raw_udp", "raw_tcp",
    }  # fmt: skip
    for plugin in described:
        assert plugin["summary"]
        for option in plugin["options"]:
            assert option["help"].endswith((".", ")")), option
    text = registry.reference()
    assert "| `recv_buffer_bytes` | bytes | `8388608` |" in text
    assert "| `subject` | string | required |" in text


def test_parse_fills_defaults_and_types_values() -> None:
    udp = registry.plugin(ST.SOURCE_TYPE_IPFIX)
    assert udp is not None
    assert udp.parse({}) == {"recv_buffer_bytes": 8 << 20, "template_timeout": 1800.0}
    assert udp.parse({"template_timeout": "5m", "recv_buffer_bytes": "65536"}) == {
        "recv_buffer_bytes": 65536,
        "template_timeout": 300.0,
    }


def test_parse_reports_every_problem() -> None:
    tcp = registry.plugin(ST.SOURCE_TYPE_SYSLOG_TCP)
    assert tcp is not None
    with pytest.raises(OptionsError) as info:
        tcp.parse({"framing": "crlf", "max_message_bytes": "0", "bogus": "1"})
    problems = dict(info.value.problems)
    assert set(problems) == {"framing", "max_message_bytes", "bogus"}
    assert problems["framing"] == "must be auto, newline or octet_counting, not 'crlf'"
    assert problems["max_message_bytes"] == "must be at least 1"
    assert "framing, max_message_bytes" in problems["bogus"]


def test_secret_options_never_show_their_value() -> None:
    http = registry.plugin(ST.SOURCE_TYPE_HTTP)
    assert http is not None
    token = http.option("bearer_token")
    assert token is not None and token.describe()["default"] is None
    assert Option("t", "secret", "hunter2", "A token.").describe()["default"] is None


def test_the_control_plane_validates_with_the_plugin_schema() -> None:
    ds = datasets_pb2.Dataset(source=datasets_pb2.Source(type=ST.SOURCE_TYPE_NETFLOW, port=2055))
    ds.source.options.update({"template_timeout": "soon", "recv_buffer_bytes": "12"})
    apply_defaults(ds)
    violations = {v.field: v.description for v in validate_dataset(ds)}
    assert violations == {
        "dataset.source.options.template_timeout": "'soon' is not a duration such as 30s, 15m or 2h",
        "dataset.source.options.recv_buffer_bytes": "must be at least 4096",
    }


def test_the_proxy_rejects_what_the_control_plane_rejects() -> None:
    """Local datasets never pass the control plane: the listener check applies the same schema."""
    ds = make_dataset("bad", ST.SOURCE_TYPE_SYSLOG_TCP, free_port(socket.SOCK_STREAM), framing="crlf")
    errors = ListenerSet(HealthBoard(), RecordingSink()).check([ds])
    assert errors == [f"{ds.name}: options.framing: must be auto, newline or octet_counting, not 'crlf'"]


# -- NDJSON encoding ---------------------------------------------------------------------------


def test_table_encoding_escapes_and_formats_like_json() -> None:
    import pyarrow as pa

    table = pa.table(
        {
            "ts": pa.array([1714564800123456, None], pa.timestamp("us", tz="UTC")),
            "s": ['quote " back \\ nl \n tab \t bell \x07 é', None],
            "i": pa.array([7, None], pa.int8()),
            "f": [1.5, float("nan")],
            "b": [True, None],
        }
    )
    lines = encode_table(table).decode().split("\n")
    assert lines[-1] == ""
    first, second = (json.loads(line) for line in lines[:-1])
    assert first == {
        "ts": "2024-05-01T12:00:00.123456Z",
        "s": table.column("s")[0].as_py(),
        "i": 7,
        "f": 1.5,
        "b": True,
    }
    assert second == {"ts": None, "s": None, "i": None, "f": None, "b": None}


def test_record_encoding_writes_non_finite_floats_as_null() -> None:
    body = encode_records([{"a": 1, "p": float("inf")}, {"n": [float("nan")]}])
    assert [json.loads(line) for line in body.decode().splitlines()] == [{"a": 1, "p": None}, {"n": [None]}]
