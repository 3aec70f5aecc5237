"""TCP inputs in-process: RFC 6587 framing (auto, forced), oversize and truncated frames counted,
raw lines, and backpressure: while the sink refuses, reading pauses and nothing is lost."""

from __future__ import annotations

import asyncio
import socket

from floe.v1 import datasets_pb2
from tests.unit.test_inputs_plugins import component, free_port, make_dataset, run, running, until

ST = datasets_pb2.SourceType


async def send(port: int, data: bytes, *, close: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.close()
        await writer.wait_closed()
    return reader, writer


def octet(*messages: bytes) -> bytes:
    return b"".join(str(len(m)).encode() + b" " + m for m in messages)


def test_newline_and_octet_counted_streams_are_parsed() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("tcp", ST.SOURCE_TYPE_SYSLOG_TCP, port, max_message_bytes="100")

    async def main() -> None:
        async with running(ds) as (_, sink, health):
            await send(port, b"<13>May  1 12:00:00 a app: one\n<13>May  1 12:00:00 a app: two\r\n\n")
            await send(
                port, octet(b"<14>1 2024-05-01T00:00:00Z b app - - - multi\nline", b"<14>x" * 30) + b"12 <14>cut"
            )
            await until(lambda: len(sink.records) == 3, what="3 records")
            assert sorted(r["message"] for r in sink.records) == ["multi\nline", "one", "two"]
            comp = await until(lambda: (c := component(health, ds)).dropped.get("truncated") and c)
            assert comp.dropped == {"oversize": 1, "truncated": 1}
            assert comp.events_in == comp.events_out == 3
            assert {r["source_ip"] for r in sink.records} == {"127.0.0.1"}

    run(main)


def test_forced_newline_framing_reads_digits_as_a_message() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("tcp", ST.SOURCE_TYPE_SYSLOG_TCP, port, framing="newline")

    async def main() -> None:
        async with running(ds) as (_, sink, _health):
            await send(port, b"12 <13>hello\n")
            await until(lambda: sink.records)
            assert sink.records[0]["message"] == "12 <13>hello" and sink.records[0]["format"] == "raw"

    run(main)


def test_raw_tcp_lines() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("lines", ST.SOURCE_TYPE_RAW_TCP, port)

    async def main() -> None:
        async with running(ds) as (_, sink, _health):
            await send(port, b"first\r\nsecond\nlast without newline")
            await until(lambda: len(sink.records) == 3)
            assert [r["message"] for r in sink.records] == ["first", "second", "last without newline"]

    run(main)


def test_a_refusing_sink_pauses_reading_and_nothing_is_lost() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("tcp", ST.SOURCE_TYPE_SYSLOG_TCP, port)
    total = 200_000  # 20 MB: more than loopback socket buffers hold

    async def main() -> None:
        async with running(ds) as (_, sink, health):
            sink.refuse = True
            body = b"".join(b"<13>May  1 12:00:00 h app: message %d %s\n" % (i, b"x" * 60) for i in range(total))
            writer_task = asyncio.create_task(send(port, body))
            comp = component(health, ds)
            await until(lambda: comp.message.startswith("paused reading"), what="paused")
            await asyncio.sleep(0.3)
            assert not sink.records and not writer_task.done()  # the sender is held back, not dropped
            sink.refuse = False
            await until(lambda: len(sink.records) == total, within=30, what=f"{total} records")
            await writer_task
            assert [r["message"].split()[:2] for r in sink.records[:2]] == [["message", "0"], ["message", "1"]]
            assert len({r["message"] for r in sink.records}) == total
            assert "sink_refused" not in comp.dropped
            await until(lambda: comp.message == "")

    run(main)


def test_stopping_hands_over_what_was_received() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("tcp", ST.SOURCE_TYPE_SYSLOG_TCP, port)

    async def main() -> None:
        async with running(ds) as (listeners, sink, _health):
            _, writer = await send(port, b"<13>kept\n<13>also kept", close=False)
            await until(lambda: sink.records)
            await listeners.apply([])
            await until(lambda: len(sink.records) == 2)
            writer.close()

    run(main)
