"""The proxy's inputs fed by real clients: ``logger`` (util-linux) over UDP and TCP in both RFC
formats and both TCP framings, ``softflowd`` exporting NetFlow v9 and IPFIX from a pcap written
here, ``curl`` posting to the webhook, and a NATS client publishing through a real
``nats-server`` (including a server restart). Listeners run in-process with a recording sink."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from floe.v1 import datasets_pb2
from tests.integration.natsserver import NatsServer, nats_server
from tests.unit.test_inputs_plugins import component, free_port, make_dataset, run, running, until
from tests.unit.test_netflow import write_pcap

__all__ = ["nats_server"]  # the fixture, imported for pytest

ST = datasets_pb2.SourceType


async def sh(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = await asyncio.to_thread(
        subprocess.run, list(argv), input=stdin, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0, (argv, proc.stderr)
    return proc


# -- logger ------------------------------------------------------------------------------------


def test_logger_over_udp_and_tcp_in_both_formats() -> None:
    udp, tcp = free_port(), free_port(socket.SOCK_STREAM)
    sets = [make_dataset("udp", ST.SOURCE_TYPE_SYSLOG_UDP, udp), make_dataset("tcp", ST.SOURCE_TYPE_SYSLOG_TCP, tcp)]

    async def main() -> None:
        async with running(*sets) as (_, sink, health):
            base = ["logger", "-n", "127.0.0.1", "-t", "floetest", "-p", "local3.warning"]
            await sh(*base, "-P", str(udp), "-d", "--rfc3164", "udp 3164")
            await sh(*base, "-P", str(udp), "-d", "--rfc5424", "--msgid", "M1", "udp 5424")
            await sh(*base, "-P", str(tcp), "-T", "--rfc3164", "tcp 3164")
            await sh(*base, "-P", str(tcp), "-T", "--rfc5424", "--octet-count", "tcp 5424 octets")
            await sh(*base, "-P", str(tcp), "-T", "--rfc5424", "tcp 5424 newline")
            await until(lambda: sum(map(len, sink.by_dataset.values())) == 5, what="5 records")
            records = {r["message"]: r for r in sink.records}
            assert set(records) == {"udp 3164", "udp 5424", "tcp 3164", "tcp 5424 octets", "tcp 5424 newline"}
            for message, record in records.items():
                assert (record["facility"], record["severity"]) == (19, 4), record
                assert record["app_name"] == "floetest"
                assert record["source_ip"] == "127.0.0.1"
                assert record["format"] == ("rfc3164" if "3164" in message else "rfc5424")
                assert record["timestamp"].endswith("Z")
            assert records["udp 5424"]["msg_id"] == "M1"
            assert records["udp 5424"]["structured_data"].startswith("[timeQuality ")
            assert component(health, sets[0]).events_in == 2
            assert component(health, sets[1]).events_out == 3

    run(main)


# -- softflowd ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd is not installed (apt-get install softflowd)")
@pytest.mark.parametrize(("source_type", "version"), [(ST.SOURCE_TYPE_NETFLOW, 9), (ST.SOURCE_TYPE_IPFIX, 10)])
def test_softflowd_exports_are_decoded_by_the_listener(tmp_path: Path, source_type: int, version: int) -> None:
    pcap = tmp_path / "flows.pcap"
    write_pcap(pcap)
    port = free_port()
    ds = make_dataset("flows", source_type, port)

    async def main() -> None:
        async with running(ds) as (_, sink, health):
            await sh(
                "softflowd", "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", str(version), "-d",
                "-p", str(tmp_path / "softflowd.pid"),
            )  # fmt: skip
            flows = await until(lambda: [r for r in sink.records if not r.get("_options")] if len(
                [r for r in sink.records if not r.get("_options")]) == 2 else None, what="2 flows")  # fmt: skip
            by_pair = {(r["sourceIPv4Address"], r["destinationIPv4Address"]): r for r in flows}
            tcp = by_pair["10.0.0.1", "10.0.0.2"]
            assert (tcp["destinationTransportPort"], tcp["packetDeltaCount"], tcp["octetDeltaCount"]) == (80, 4, 460)
            assert by_pair["10.0.0.3", "10.0.0.4"]["protocolIdentifier"] == 17
            assert all(r["exporter"] == "127.0.0.1" and r["version"] == version for r in sink.records)
            assert component(health, ds).dropped == {}

    run(main)


# -- curl --------------------------------------------------------------------------------------


def test_curl_posts_to_the_webhook() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("hook", ST.SOURCE_TYPE_HTTP, port, path="/events", max_payload_bytes="2048")
    url = f"http://127.0.0.1:{port}/events"

    async def curl(*args: str) -> tuple[int, Any]:
        proc = await sh("curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args)
        body, _, code = proc.stdout.decode().rpartition("\n")
        return int(code), json.loads(body)

    async def main() -> None:
        async with running(ds) as (_, sink, _health):
            status, body = await curl(
                "-H", "Content-Type: application/x-ndjson", "--data-binary", '{"a":1}\n{"a":2}\n', url
            )
            assert (status, body) == (200, {"accepted": 2})
            status, body = await curl("-d", '[{"b":1},{"b":2},{"b":3}]', url)  # form type: sniffed as JSON
            assert (status, body) == (200, {"accepted": 3})
            status, body = await curl("-H", "Content-Type: text/plain", "--data-binary", "line one\nline two\n", url)
            assert (status, body) == (200, {"accepted": 2})
            status, body = await curl(
                "-H", "Content-Type: application/x-ndjson", "--data-binary", '{"ok":1}\n{bad\n', url
            )
            assert status == 400 and body["line"] == 2
            status, body = await curl("--data-binary", "x" * 4096, url)
            assert status == 413
            assert sink.records == [
                {"a": 1}, {"a": 2}, {"b": 1}, {"b": 2}, {"b": 3}, {"message": "line one"}, {"message": "line two"},
            ]  # fmt: skip

    run(main)


# -- NATS --------------------------------------------------------------------------------------


def test_nats_subscription_with_queue_group_survives_a_server_restart(nats_server: NatsServer) -> None:
    import nats

    ds = make_dataset("bus", ST.SOURCE_TYPE_NATS, subject="events.>", url=nats_server.url, queue_group="proxies")

    async def main() -> None:
        async with running(ds) as (_, sink, health):
            comp = component(health, ds)
            await until(lambda: comp.message.startswith("subscribed to events.> (queue group proxies)"))
            nc = await nats.connect(nats_server.url)
            await nc.publish("events.login", b'{"user": "ada", "ok": true}')
            await nc.publish("events.raw", b"plain text")
            await nc.publish("events.pretty", b'{\n  "multi": "line"\n}')
            await nc.publish("other.subject", b'{"ignored": 1}')
            await nc.flush()
            await until(lambda: len(sink.records) == 3, what="3 records")
            assert sink.records == [
                {"user": "ada", "ok": True},
                {"message": "plain text", "subject": "events.raw"},
                {"multi": "line"},
            ]
            await nc.close()

            await asyncio.to_thread(nats_server.restart)
            nc = await nats.connect(nats_server.url)
            # The input's client reconnects by itself; publish until a message gets through.
            await until(lambda: comp.status == 1 and "subscribed" in comp.message, within=20, what="reconnected")

            async def delivered() -> bool:
                await nc.publish("events.after", b'{"after": "restart"}')
                await nc.flush()
                await asyncio.sleep(0.2)
                return {"after": "restart"} in sink.records

            for _ in range(50):
                if await delivered():
                    break
            else:
                raise AssertionError("no message after the restart")
            await nc.close()
            assert comp.events_in >= 4 and "slow_consumer" not in comp.dropped

    run(main)


def test_nats_unreachable_is_degraded_not_fatal() -> None:
    port = free_port(socket.SOCK_STREAM)
    ds = make_dataset("bus", ST.SOURCE_TYPE_NATS, subject="x", url=f"nats://127.0.0.1:{port}")

    async def main() -> None:
        async with running(ds) as (listeners, _sink, health):
            comp = component(health, ds)
            await until(lambda: comp.message.startswith("cannot reach"), what="degraded")
            assert comp.status == 2  # HEALTH_STATUS_DEGRADED
            await listeners.apply([])  # stops without waiting for a server

    run(main)
