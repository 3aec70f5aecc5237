"""Fuzzing a RUNNING listener set: random and mutated packets of every protocol (syslog, raw,
sFlow, IPFIX and NetFlow over UDP; syslog over TCP; webhook bodies) reach real sockets of
in-process listeners; afterwards every listener still turns a good packet into a record, the
decoders' safety net (``decode_error``) was never needed, and every record was valid JSON."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.proxy.listeners import ListenerSet
from agents.runtime.health import HealthBoard
from floe.aio import run as run_loop
from floe.v1 import datasets_pb2
from tests.unit.test_flow_fuzz import IPFIX, SFLOW, V9
from tests.unit.test_inputs_plugins import RecordingSink, free_port, make_dataset

ST = datasets_pb2.SourceType
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
UDP_TYPES: dict[int, list[bytes]] = {
    ST.SOURCE_TYPE_SYSLOG_UDP: [b"<13>May  1 12:00:00 h app: good"],
    ST.SOURCE_TYPE_RAW_UDP: [b"good"],
    ST.SOURCE_TYPE_SFLOW: SFLOW,
    ST.SOURCE_TYPE_IPFIX: IPFIX,
    ST.SOURCE_TYPE_NETFLOW: V9,
}


@dataclass
class Running:
    sink: RecordingSink
    health: HealthBoard
    udp: dict[int, tuple[datasets_pb2.Dataset, int]]
    tcp: tuple[datasets_pb2.Dataset, int]
    http: tuple[datasets_pb2.Dataset, int]
    thread: threading.Thread


@pytest.fixture(scope="module")
def listeners() -> Iterator[Running]:
    udp: dict[int, tuple[datasets_pb2.Dataset, int]] = {
        t: (make_dataset(f"udp-{t}", t, p := free_port()), p) for t in UDP_TYPES
    }
    tcp_port, http_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    tcp = (make_dataset("tcp", ST.SOURCE_TYPE_SYSLOG_TCP, tcp_port, max_message_bytes="512"), tcp_port)
    http = (make_dataset("http", ST.SOURCE_TYPE_HTTP, http_port, max_payload_bytes="4096"), http_port)
    sink, health = RecordingSink(), HealthBoard()
    started, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        ls = ListenerSet(health, sink)
        await ls.apply([d for d, _ in udp.values()] + [tcp[0], http[0]])
        started.set()
        await asyncio.to_thread(stop.wait)
        await ls.close()

    def thread_main() -> None:
        try:
            run_loop(main())
        except BaseException as exc:  # reported by the fixture
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=thread_main, name="listeners", daemon=True)
    thread.start()
    assert started.wait(30) and not failure, failure
    try:
        yield Running(sink, health, udp, tcp, http, thread)
    finally:
        stop.set()
        thread.join(30)
        assert not failure, failure


def _mutate(packet: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(packet[: max(0, len(packet) - cut)] if cut else packet)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    return bytes(data)


packets = st.one_of(
    st.binary(max_size=1500),
    st.builds(
        _mutate,
        st.sampled_from([p for corpus in UDP_TYPES.values() for p in corpus]),
        st.integers(0, 200),
        st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
    ),
)


def _post(port: int, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with _opener.open(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packet=packets, content_type=st.sampled_from(["", "application/json", "application/x-ndjson", "text/plain"]))
def test_random_and_mutated_packets_never_stop_a_listener(listeners: Running, packet: bytes, content_type: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, port in listeners.udp.values():
            sock.sendto(packet, ("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", listeners.tcp[1])) as conn:
        conn.sendall(packet)
    assert _post(listeners.http[1], packet, content_type) in (200, 400, 413)


def _eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, check
        time.sleep(0.05)


def test_every_listener_still_works_after_the_fuzzing(listeners: Running) -> None:
    # Named so it runs after the fuzz test (pytest keeps file order).
    sink = listeners.sink
    before = {name: len(records) for name, records in sink.by_dataset.items()}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for source_type, (_, port) in listeners.udp.items():
            for packet in UDP_TYPES[source_type]:
                sock.sendto(packet, ("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", listeners.tcp[1])) as conn:
        conn.sendall(b"\n<13>May  1 12:00:00 h app: good tcp\n")
    assert _post(listeners.http[1], b'{"good": true}', "application/json") == 200
    for ds, _ in [*listeners.udp.values(), listeners.tcp, listeners.http]:
        _eventually(lambda ds=ds: len(sink.by_dataset.get(ds.name, [])) > before.get(ds.name, 0))
    assert listeners.thread.is_alive()
    components = {c.name: c for c in listeners.health.components()}
    assert len(components) == 7
    for comp in components.values():
        assert comp.events_in > 0, comp
        assert "decode_error" not in comp.dropped, comp
    with contextlib.suppress(KeyError):
        assert sum(components[f"source/{listeners.udp[ST.SOURCE_TYPE_IPFIX][0].name}"].dropped.values()) > 0
