"""UDP inputs in-process (a ListenerSet with a recording sink, real sockets on 127.0.0.1):
syslog and raw datagrams become records, flows are decoded with their exporter, refusals and
drops are counted, and listeners follow dataset changes."""

from __future__ import annotations

import socket

from agents.runtime.health import HealthBoard
from agents.sources.udp import kernel_drops
from floe.v1 import datasets_pb2
from tests.unit import test_netflow as nf
from tests.unit import test_sflow as sf
from tests.unit.test_inputs_plugins import RecordingSink, component, free_port, make_dataset, run, running, until

ST = datasets_pb2.SourceType


def send(port: int, *payloads: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in payloads:
            sock.sendto(payload, ("127.0.0.1", port))


def test_syslog_datagrams_become_parsed_records() -> None:
    port = free_port()
    ds = make_dataset("fw", ST.SOURCE_TYPE_SYSLOG_UDP, port)

    async def main() -> None:
        async with running(ds) as (_, sink, health):
            send(
                port,
                b'<34>1 2024-05-01T12:00:00.5+02:00 web01 nginx 42 REQ [id k="v"] GET / 200\n',
                b"<13>May  1 12:00:00 fw01 sshd[99]: Accepted key",
                b"not syslog at all",
                b"<14>1 2024-05-01T10:00:00Z h app - - - first line\nsecond line\n",
                b"",
            )
            await until(lambda: len(sink.records) == 4, what="4 records")
            comp = await until(lambda: (c := component(health, ds)).dropped.get("empty") and c)
            assert comp.events_in == 5 and comp.events_out == 4
            assert comp.message == f"listening on UDP 127.0.0.1:{port}"
            by_host = {r["hostname"]: r for r in sink.records}
            web = by_host["web01"]
            assert web["timestamp"] == "2024-05-01T10:00:00.500000Z"
            assert (web["facility"], web["severity"], web["app_name"], web["proc_id"], web["msg_id"]) == (
                4, 2, "nginx", "42", "REQ",
            )  # fmt: skip
            assert web["structured_data"] == '[id k="v"]' and web["message"] == "GET / 200"
            assert web["source_ip"] == "127.0.0.1" and web["format"] == "rfc5424"
            bsd = by_host["fw01"]
            assert (bsd["app_name"], bsd["proc_id"], bsd["message"], bsd["format"]) == (
                "sshd", "99", "Accepted key", "rfc3164",
            )  # fmt: skip
            raw = next(r for r in sink.records if r["format"] == "raw")
            assert raw["message"] == raw["raw"] == "not syslog at all" and raw["timestamp"].endswith("Z")
            multi = by_host["h"]
            assert multi["message"] == "first line\nsecond line"  # one datagram, one message

    run(main)


def test_raw_datagrams_keep_message_sender_and_time() -> None:
    port = free_port()
    ds = make_dataset("raw", ST.SOURCE_TYPE_RAW_UDP, port)

    async def main() -> None:
        async with running(ds) as (_, sink, _health):
            send(port, b"hello\n", b"caf\xc3\xa9 \xff")
            await until(lambda: len(sink.records) == 2)
            assert [r["message"] for r in sink.records] == ["hello", "café \ufffd"]
            assert {r["source_ip"] for r in sink.records} == {"127.0.0.1"}
            assert all(r["received_at"].endswith("Z") for r in sink.records)
            assert set(sink.records[0]) == {"message", "source_ip", "received_at"}

    run(main)


def test_ipfix_netflow_and_sflow_are_decoded_with_their_exporter() -> None:
    ports = {t: free_port() for t in (ST.SOURCE_TYPE_IPFIX, ST.SOURCE_TYPE_NETFLOW, ST.SOURCE_TYPE_SFLOW)}
    sets = [make_dataset(ST.Name(t).lower().replace("_", "-"), t, p) for t, p in ports.items()]
    ipfix = nf.ipfix(nf.flow_set(2, nf.template(256, nf.FIVE_TUPLE)), nf.flow_set(256, nf.five_tuple_record(1)))
    v9 = nf.v9(nf.flow_set(0, nf.template(256, nf.FIVE_TUPLE)), nf.flow_set(256, nf.five_tuple_record(2) * 2))
    sflow = sf.datagram(sf.flow_sample(sf.raw_header(sf.ether(0x0800, sf.ipv4(6, sf.tcp())), 1500)))

    async def main() -> None:
        async with running(*sets) as (_, sink, health):
            send(ports[ST.SOURCE_TYPE_IPFIX], ipfix, b"\x00\x0a\x00")
            send(ports[ST.SOURCE_TYPE_NETFLOW], v9)
            send(ports[ST.SOURCE_TYPE_SFLOW], sflow, b"junkjunk")
            await until(lambda: sum(len(v) for v in sink.by_dataset.values()) == 4)
            ipfix_records = sink.by_dataset[sets[0].name]
            assert ipfix_records[0]["exporter"] == "127.0.0.1" and ipfix_records[0]["version"] == 10
            assert {k: ipfix_records[0][k] for k in nf.five_tuple_fields(1)} == nf.five_tuple_fields(1)
            assert [r["version"] for r in sink.by_dataset[sets[1].name]] == [9, 9]
            (sample,) = sink.by_dataset[sets[2].name]
            assert sample["sample_type"] == "flow" and sample["exporter"] == "127.0.0.1"
            assert sample["protocolIdentifier"] == 6
            await until(lambda: component(health, sets[0]).dropped == {"short_header": 1})
            await until(lambda: component(health, sets[2]).dropped == {"bad_version": 1})
            assert component(health, sets[0]).events_in == 2

    run(main)


def test_records_the_sink_refuses_are_counted_not_kept() -> None:
    port = free_port()
    ds = make_dataset("fw", ST.SOURCE_TYPE_SYSLOG_UDP, port)

    async def main() -> None:
        async with running(ds) as (_, sink, health):
            sink.refuse = True
            send(port, b"<13>one", b"<13>two")
            await until(lambda: component(health, ds).dropped.get("sink_refused") == 2)
            sink.refuse = False
            send(port, b"<13>three")
            await until(lambda: [r["message"] for r in sink.records] == ["three"])

    run(main)


def test_listeners_follow_dataset_changes() -> None:
    first, second = free_port(), free_port()
    ds = make_dataset("fw", ST.SOURCE_TYPE_SYSLOG_UDP, first)

    async def main() -> None:
        async with running(ds) as (listeners, sink, health):
            send(first, b"<13>a")
            await until(lambda: len(sink.records) == 1)
            # Same source, new description: the listener keeps running with the new dataset.
            renamed = make_dataset("fw", ST.SOURCE_TYPE_SYSLOG_UDP, first)
            renamed.description = "now documented"
            before = component(health, ds)
            await listeners.apply([renamed])
            assert component(health, ds) is before
            # New options: restarted on the same port; new port: the old one is let go.
            tuned = make_dataset("fw", ST.SOURCE_TYPE_SYSLOG_UDP, first, recv_buffer_bytes="1048576")
            await listeners.apply([tuned])
            send(first, b"<13>b")
            await until(lambda: len(sink.records) == 2)
            moved = make_dataset("fw", ST.SOURCE_TYPE_RAW_UDP, second)
            await listeners.apply([moved])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", first))
            send(second, b"c")
            await until(lambda: sink.records[-1].get("message") == "c" and "format" not in sink.records[-1])
            await listeners.apply([])
            assert [c.name for c in health.components()] == []
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", second))

    run(main)


def test_a_port_in_use_fails_the_check_and_a_failed_apply_rolls_back() -> None:
    good_port = free_port()
    good = make_dataset("good", ST.SOURCE_TYPE_SYSLOG_UDP, good_port)

    async def main() -> None:
        async with running(good) as (listeners, sink, health):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
                blocker.bind(("127.0.0.1", 0))
                taken = blocker.getsockname()[1]
                bad = make_dataset("bad", ST.SOURCE_TYPE_SYSLOG_UDP, taken)
                assert listeners.check([good, bad]) == [
                    f"{bad.name}: UDP 127.0.0.1:{taken} is already in use on this host"
                ]
                try:
                    await listeners.apply([good, bad])
                except OSError as exc:
                    assert bad.name in str(exc)
                else:
                    raise AssertionError("apply should fail")
            send(good_port, b"<13>still here")
            await until(lambda: [r["message"] for r in sink.records] == ["still here"])
            assert [c.name for c in health.components()] == [f"source/{good.name}"]

    run(main)


def test_kernel_drops_are_read_for_a_bound_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert kernel_drops(sock) == 0


def test_ipv6_any_address_takes_ipv4_senders() -> None:
    port = free_port()
    ds = make_dataset("v6", ST.SOURCE_TYPE_SYSLOG_UDP, port)
    ds.source.bind_host = "::"

    async def main() -> None:
        health = HealthBoard()
        sink = RecordingSink()
        from agents.proxy.listeners import ListenerSet

        listeners = ListenerSet(health, sink)
        await listeners.apply([ds])
        try:
            send(port, b"<13>over v4")
            await until(lambda: sink.records)
            assert sink.records[0]["source_ip"] == "127.0.0.1"
        finally:
            await listeners.close()

    run(main)
