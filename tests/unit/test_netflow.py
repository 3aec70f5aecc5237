"""NetFlow v9 and IPFIX decoding: packets built byte for byte from RFC 3954 / RFC 7011, and the
packets of a real exporter (softflowd reading a pcap written here)."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from agents.sources.flow_common import Drops, element_name
from agents.sources.netflow import FlowDecoder

EXPORTER = "192.0.2.1"


# -- packet builders (shared with the fuzz test and the benchmark) -----------------------------


def flow_set(set_id: int, body: bytes, pad: int = 0) -> bytes:
    body += b"\x00" * pad
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def template(tid: int, fields: Sequence[tuple[int, ...]]) -> bytes:
    """A template record; a field is (element id, length) or (element id, length, enterprise number)."""
    out = struct.pack(">HH", tid, len(fields))
    for f in fields:
        if len(f) == 3:
            out += struct.pack(">HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack(">HH", f[0], f[1])
    return out


def ipfix(*sets: bytes, seq: int = 1, domain: int = 7, export_time: int = 1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, seq, domain) + body


def v9(*sets: bytes, seq: int = 1, source_id: int = 3, uptime: int = 5000, secs: int = 1_700_000_000) -> bytes:
    return struct.pack(">HHIIII", 9, len(sets), uptime, secs, seq, source_id) + b"".join(sets)


FIVE_TUPLE = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 8), (2, 8), (152, 8), (153, 8)]


def five_tuple_record(i: int) -> bytes:
    return struct.pack(
        ">4s4sHHBBQQQQ",
        socket.inet_aton(f"10.0.0.{i}"),
        socket.inet_aton("198.51.100.9"),
        40000 + i,
        443,
        6,
        0x12,
        1500 * i,
        i,
        1_700_000_000_000 + i,
        1_700_000_001_000 + i,
    )


def five_tuple_fields(i: int) -> dict[str, object]:
    return {
        "sourceIPv4Address": f"10.0.0.{i}",
        "destinationIPv4Address": "198.51.100.9",
        "sourceTransportPort": 40000 + i,
        "destinationTransportPort": 443,
        "protocolIdentifier": 6,
        "tcpControlBits": 0x12,
        "octetDeltaCount": 1500 * i,
        "packetDeltaCount": i,
        "flowStartMilliseconds": 1_700_000_000_000 + i,
        "flowEndMilliseconds": 1_700_000_001_000 + i,
    }


def ipfix_meta(seq: int = 1, tid: int = 256, domain: int = 7) -> dict[str, object]:
    return {
        "exporter": EXPORTER,
        "version": 10,
        "observation_domain": domain,
        "export_time": 1_700_000_000,
        "sequence": seq,
        "template_id": tid,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- IPFIX -------------------------------------------------------------------------------------


def test_ipfix_template_and_data_in_one_message_decode_every_field() -> None:
    dec = FlowDecoder()
    msg = ipfix(
        flow_set(2, template(256, FIVE_TUPLE)),
        flow_set(256, five_tuple_record(1) + five_tuple_record(2), pad=3),
    )
    records = dec.decode(msg, EXPORTER)
    assert records == [{**ipfix_meta(), **five_tuple_fields(1)}, {**ipfix_meta(), **five_tuple_fields(2)}]
    assert dec.drops.counts == {}
    json.dumps(records)  # leaves the proxy as NDJSON


def test_ipfix_value_types_and_reduced_size_encoding() -> None:
    fields = [
        (27, 16),  # sourceIPv6Address
        (28, 16),  # destinationIPv6Address
        (56, 6),  # sourceMacAddress
        (80, 6),  # destinationMacAddress
        (1, 4),  # octetDeltaCount, reduced to 4 octets
        (2, 3),  # packetDeltaCount, reduced to 3 octets
        (150, 4),  # flowStartSeconds
        (154, 8),  # flowStartMicroseconds (NTP format)
        (156, 8),  # flowStartNanoseconds (NTP format)
        (157, 4),  # flowEndNanoseconds in a length the RFC does not define: raw hex
        (82, 8),  # interfaceName, fixed length, NUL padded
        (90, 8),  # mplsVpnRouteDistinguisher (octetArray)
        (311, 8),  # samplingProbability (float64)
        (999, 2),  # not in the table
        (999, 5),  # second occurrence, odd length
    ]
    ntp_secs = 1_700_000_000 + 2_208_988_800
    half = 1 << 31  # .5 s as an NTP fraction
    data = (
        socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        + socket.inet_pton(socket.AF_INET6, "2001:db8::2")
        + bytes.fromhex("00163e112233")
        + bytes.fromhex("ffeeddccbbaa")
        + struct.pack(">I", 123456)
        + (70000).to_bytes(3, "big")
        + struct.pack(">I", 1_700_000_000)
        + struct.pack(">II", ntp_secs, half)
        + struct.pack(">II", ntp_secs, half)
        + bytes.fromhex("0a0b0c0d")
        + b"eth0\x00\x00\x00\x00"
        + bytes.fromhex("0001020304050607")
        + struct.pack(">d", 0.25)
        + struct.pack(">H", 77)
        + bytes.fromhex("0102030405")
    )
    [rec] = FlowDecoder().decode(ipfix(flow_set(2, template(300, fields)), flow_set(300, data)), EXPORTER)
    assert rec == {
        **ipfix_meta(tid=300),
        "sourceIPv6Address": "2001:db8::1",
        "destinationIPv6Address": "2001:db8::2",
        "sourceMacAddress": "00:16:3e:11:22:33",
        "destinationMacAddress": "ff:ee:dd:cc:bb:aa",
        "octetDeltaCount": 123456,
        "packetDeltaCount": 70000,
        "flowStartSeconds": 1_700_000_000,
        "flowStartMicroseconds": 1_700_000_000_500_000,
        "flowStartNanoseconds": 1_700_000_000_500_000_000,
        "flowEndNanoseconds": "0a0b0c0d",
        "interfaceName": "eth0",
        "mplsVpnRouteDistinguisher": "0001020304050607",
        "samplingProbability": 0.25,
        "ie_999": 77,
        "ie_999_2": "0102030405",
    }


def test_ipfix_variable_length_and_enterprise_fields() -> None:
    fields = [
        (8, 4),
        (82, 65535),  # interfaceName, variable length
        (95, 65535),  # applicationId, variable length
        (100, 4, 9),  # enterprise 9 element 100
        (200, 65535, 9),  # enterprise, variable length
        (7, 2),
    ]
    long_name = "x" * 300
    rec1 = (
        socket.inet_aton("10.1.1.1")
        + b"\x04eth1"
        + b"\x03\x01\x02\x03"
        + struct.pack(">I", 4242)
        + b"\x00"
        + struct.pack(">H", 53)
    )
    rec2 = (
        socket.inet_aton("10.1.1.2")
        + b"\xff"
        + struct.pack(">H", 300)
        + long_name.encode()
        + b"\x00"
        + struct.pack(">I", 1)
        + b"\x02\xab\xcd"
        + struct.pack(">H", 54)
    )
    msg = ipfix(flow_set(2, template(400, fields)), flow_set(400, rec1 + rec2, pad=2))
    dec = FlowDecoder()
    r1, r2 = dec.decode(msg, EXPORTER)
    assert r1 == {
        **ipfix_meta(tid=400),
        "sourceIPv4Address": "10.1.1.1",
        "interfaceName": "eth1",
        "applicationId": "010203",
        "ie_9_100": 4242,
        "ie_9_200": "",
        "sourceTransportPort": 53,
    }
    assert r2["interfaceName"] == long_name
    assert r2["applicationId"] == ""
    assert r2["ie_9_100"] == 1
    assert r2["ie_9_200"] == "abcd"
    assert r2["sourceTransportPort"] == 54
    assert dec.drops.counts == {}
    assert element_name(100, 9) == "ie_9_100"
    assert element_name(1) == "octetDeltaCount"
    assert element_name(65000) == "ie_65000"


def test_ipfix_options_template_records_are_marked() -> None:
    opts = struct.pack(">HHH", 257, 3, 1) + struct.pack(">HHHHHH", 144, 4, 41, 8, 42, 8)
    data = struct.pack(">IQQ", 99, 1234, 5678)
    dec = FlowDecoder()
    [rec] = dec.decode(ipfix(flow_set(3, opts, pad=2), flow_set(257, data)), EXPORTER)
    assert rec == {
        **ipfix_meta(tid=257),
        "_options": True,
        "exportingProcessId": 99,
        "exportedMessageTotalCount": 1234,
        "exportedFlowRecordTotalCount": 5678,
    }


def test_data_before_template_is_buffered_then_decoded_with_its_own_header() -> None:
    clock = Clock()
    dec = FlowDecoder(clock=clock)
    assert dec.decode(ipfix(flow_set(256, five_tuple_record(1)), seq=10), EXPORTER) == []
    assert dec.templates.pending == 1
    clock.now += 2
    records = dec.decode(ipfix(flow_set(2, template(256, FIVE_TUPLE)), seq=11), EXPORTER)
    assert records == [{**ipfix_meta(seq=10), **five_tuple_fields(1)}]
    assert dec.templates.pending == 0
    assert dec.drops.counts == {}


def test_data_before_template_in_the_same_message_is_decoded() -> None:
    msg = ipfix(flow_set(256, five_tuple_record(3)), flow_set(2, template(256, FIVE_TUPLE)))
    assert FlowDecoder().decode(msg, EXPORTER) == [{**ipfix_meta(), **five_tuple_fields(3)}]


def test_buffered_data_without_template_expires_as_no_template() -> None:
    clock = Clock()
    drops: list[tuple[str, int]] = []
    dec = FlowDecoder(clock=clock, pending_timeout=5.0, drops=Drops(on_drop=lambda r, n: drops.append((r, n))))
    dec.decode(ipfix(flow_set(256, five_tuple_record(1))), EXPORTER)
    clock.now += 6
    dec.expire()
    assert dec.drops.counts == {"no_template": 1}
    assert drops == [("no_template", 1)]
    assert dec.decode(ipfix(flow_set(2, template(256, FIVE_TUPLE))), EXPORTER) == []


def test_stale_buffered_data_is_counted_when_its_template_arrives() -> None:
    clock = Clock()
    dec = FlowDecoder(clock=clock, pending_timeout=5.0)
    dec.decode(ipfix(flow_set(256, five_tuple_record(1))), EXPORTER)
    clock.now += 5.5  # the periodic sweep has not run yet
    dec.templates._next_sweep = clock.now + 1
    assert dec.decode(ipfix(flow_set(2, template(256, FIVE_TUPLE))), EXPORTER) == []
    assert dec.drops.counts == {"no_template": 1}


def test_buffer_is_bounded_per_exporter_and_overall() -> None:
    dec = FlowDecoder(pending_sets=2, pending_domains=2)
    for seq in range(3):
        dec.decode(ipfix(flow_set(256, five_tuple_record(1)), seq=seq), EXPORTER)
    assert dec.drops.counts == {"no_template": 1}
    assert dec.templates.pending == 2
    dec.decode(ipfix(flow_set(256, five_tuple_record(1)), domain=8), EXPORTER)
    dec.decode(ipfix(flow_set(256, five_tuple_record(1)), domain=9), EXPORTER)  # evicts domain 7's two
    assert dec.drops.counts == {"no_template": 3}
    assert dec.templates.pending == 2
    assert FlowDecoder(pending_sets=0).decode(ipfix(flow_set(256, five_tuple_record(1))), EXPORTER) == []
    # At most pending_bytes octets wait overall, whatever the per-domain limits.
    dec = FlowDecoder(pending_bytes=100)
    for domain in range(3):
        dec.decode(ipfix(flow_set(256, five_tuple_record(1)), domain=domain), EXPORTER)  # 46 octets each
    assert (dec.templates.pending, dec.drops.counts) == (2, {"no_template": 1})
    [rec] = dec.decode(ipfix(flow_set(2, template(256, FIVE_TUPLE)), domain=0), EXPORTER)
    assert rec["observation_domain"] == 0
    dec.decode(ipfix(flow_set(256, five_tuple_record(1)), domain=4), EXPORTER)  # room again
    assert dec.templates.pending == 2


def test_templates_are_scoped_by_exporter_and_domain() -> None:
    dec = FlowDecoder()
    dec.decode(ipfix(flow_set(2, template(256, [(8, 4)])), domain=1), "192.0.2.1")
    dec.decode(ipfix(flow_set(2, template(256, [(7, 2)])), domain=2), "192.0.2.1")
    dec.decode(ipfix(flow_set(2, template(256, [(4, 1)])), domain=1), "192.0.2.2")
    [a] = dec.decode(ipfix(flow_set(256, socket.inet_aton("10.9.9.9")), domain=1), "192.0.2.1")
    [b] = dec.decode(ipfix(flow_set(256, struct.pack(">H", 22)), domain=2), "192.0.2.1")
    [c] = dec.decode(ipfix(flow_set(256, b"\x11"), domain=1), "192.0.2.2")
    assert a["sourceIPv4Address"] == "10.9.9.9"
    assert b["sourceTransportPort"] == 22
    assert c["protocolIdentifier"] == 17
    assert c["exporter"] == "192.0.2.2"
    assert dec.decode(ipfix(flow_set(256, b"\x11"), domain=1), "192.0.2.3") == []  # waits
    assert dec.templates.pending == 1


def test_template_refresh_timeout_redefinition_and_withdrawal() -> None:
    clock = Clock()
    dec = FlowDecoder(clock=clock, template_timeout=60.0)
    tmpl = ipfix(flow_set(2, template(256, [(7, 2)])))
    data = ipfix(flow_set(256, struct.pack(">H", 80)))
    dec.decode(tmpl, EXPORTER)
    clock.now += 50
    assert len(dec.decode(data, EXPORTER)) == 1
    dec.decode(tmpl, EXPORTER)  # refresh
    clock.now += 50
    assert len(dec.decode(data, EXPORTER)) == 1
    clock.now += 11  # 61 s since the refresh: expired
    assert dec.decode(data, EXPORTER) == []
    assert dec.templates.pending == 1
    # The template comes back with another definition: the buffered set decodes with it.
    [rec] = dec.decode(ipfix(flow_set(2, template(256, [(11, 2)]))), EXPORTER)
    assert rec["destinationTransportPort"] == 80
    # Withdraw template 256, then all templates of the domain.
    dec.decode(ipfix(flow_set(2, struct.pack(">HH", 256, 0))), EXPORTER)
    assert dec.decode(data, EXPORTER) == []
    dec.decode(ipfix(flow_set(2, template(256, [(7, 2)]) + template(257, [(7, 2)]))), EXPORTER)
    dec.decode(ipfix(flow_set(2, struct.pack(">HH", 2, 0))), EXPORTER)
    assert len(dec.templates) == 0
    assert dec.drops.counts == {}


def test_template_cache_is_bounded() -> None:
    dec = FlowDecoder(max_templates=2)
    dec.decode(ipfix(flow_set(2, b"".join(template(t, [(7, 2)]) for t in (256, 257, 258)))), EXPORTER)
    assert len(dec.templates) == 2
    assert dec.drops.counts == {"template_evicted": 1}


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", "short_header"),
        (b"\x00\x0a\x00", "short_header"),
        (struct.pack(">HH", 9, 0), "short_header"),
        (struct.pack(">HHIII", 5, 16, 0, 0, 0), "bad_version"),
        (struct.pack(">HHIII", 10, 40, 0, 0, 0), "bad_length"),
        (struct.pack(">HHIII", 10, 8, 0, 0, 0), "bad_length"),
        (ipfix(struct.pack(">HH", 256, 2)), "bad_set"),
        (ipfix(struct.pack(">HH", 256, 40)), "bad_set"),
        (ipfix(flow_set(5, b"")), "bad_set"),
        (ipfix(flow_set(2, template(12, [(7, 2)]))), "bad_template"),
        (ipfix(flow_set(2, template(256, [(7, 0)]))), "bad_template"),
        (ipfix(flow_set(2, template(256, [(7, 2), (8, 4)])[:-2])), "bad_set"),
        (ipfix(flow_set(2, struct.pack(">HHHH", 256, 1, 0x8001, 4))), "bad_set"),
        (ipfix(flow_set(3, struct.pack(">HH", 256, 1))), "bad_set"),
        (ipfix(flow_set(2, template(256, [(7, 2)])), b"\x01\x02"), "bad_set"),
    ],
)
def test_malformed_packets_are_counted_per_reason(packet: bytes, reason: str) -> None:
    dec = FlowDecoder()
    assert dec.decode(packet, EXPORTER) == []
    assert dec.drops.counts == {reason: 1}


def test_clean_records_before_a_malformation_are_kept() -> None:
    dec = FlowDecoder()
    dec.decode(ipfix(flow_set(2, template(256, [(7, 2), (11, 2)]))), EXPORTER)
    # Two whole records and a cut one; then a set header running past the message.
    body = struct.pack(">HHHH", 1, 2, 3, 4) + b"\x00\x05"
    records = dec.decode(ipfix(flow_set(256, body), struct.pack(">HH", 256, 99)), EXPORTER)
    assert [(r["sourceTransportPort"], r["destinationTransportPort"]) for r in records] == [(1, 2), (3, 4)]
    assert dec.drops.counts == {"truncated_record": 1, "bad_set": 1}
    # Variable-length record cut inside its length prefix and inside its value.
    dec.decode(ipfix(flow_set(2, template(300, [(7, 2), (82, 65535)]))), EXPORTER)
    ok = struct.pack(">H", 9) + b"\x02ab"
    for cut in (ok + b"\x00\x07", ok + b"\x00\x07\xff\x00", ok + b"\x00\x07\x05ab"):
        assert [r["interfaceName"] for r in dec.decode(ipfix(flow_set(300, cut)), EXPORTER)] == ["ab"]
    assert dec.drops.get("truncated_record") == 4
    # Cut in a fixed field after a variable one, and before the second of two variable fields.
    dec.decode(ipfix(flow_set(2, template(301, [(82, 65535), (7, 2), (83, 65535), (84, 65535)]))), EXPORTER)
    ok = b"\x01a\x00\x01\x01b\x01c"
    for cut in (ok + b"\x06abcdef", ok + b"\x01a\x00\x01\x05bcde"):
        assert [r["interfaceDescription"] for r in dec.decode(ipfix(flow_set(301, cut)), EXPORTER)] == ["b"]
    assert dec.drops.get("truncated_record") == 6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"template_timeout": 0},
        {"pending_timeout": -1},
        {"pending_sets": -1},
        {"pending_bytes": -1},
        {"max_templates": 0},
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FlowDecoder(**kwargs)  # type: ignore[arg-type]


def test_no_buffering_when_no_domain_may_wait() -> None:
    dec = FlowDecoder(pending_domains=0)
    assert dec.decode(ipfix(flow_set(256, five_tuple_record(1))), EXPORTER) == []
    assert (dec.drops.counts, dec.templates.pending) == ({"no_template": 1}, 0)
    assert repr(dec.drops) == "Drops({'no_template': 1})"


# -- NetFlow v9 --------------------------------------------------------------------------------


def v9_meta(tid: int = 256, seq: int = 1) -> dict[str, object]:
    return {
        "exporter": EXPORTER,
        "version": 9,
        "source_id": 3,
        "export_time": 1_700_000_000,
        "sys_uptime": 5000,
        "sequence": seq,
        "template_id": tid,
    }


def test_v9_template_data_and_options() -> None:
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (22, 4), (21, 4), (10, 2), (14, 2)]
    data = struct.pack(
        ">4s4sHHBIIIIHH",
        socket.inet_aton("172.16.0.1"),
        socket.inet_aton("172.16.0.2"),
        5353,
        53,
        17,
        900,
        3,
        1000,
        4000,
        1,
        2,
    )
    # Options template: scope System (4 octets), option fields samplingInterval and samplingAlgorithm.
    opts = struct.pack(">HHH", 257, 4, 8) + struct.pack(">HHHHHH", 1, 4, 34, 4, 35, 1) + b"\x00\x00"
    opt_data = struct.pack(">IIB", 0x0A000001, 100, 2) + b"\x00\x00\x00"
    dec = FlowDecoder()
    records = dec.decode(
        v9(flow_set(0, template(256, fields)), flow_set(1, opts), flow_set(256, data + data, pad=2)), EXPORTER
    )
    flow = {
        **v9_meta(),
        "sourceIPv4Address": "172.16.0.1",
        "destinationIPv4Address": "172.16.0.2",
        "sourceTransportPort": 5353,
        "destinationTransportPort": 53,
        "protocolIdentifier": 17,
        "octetDeltaCount": 900,
        "packetDeltaCount": 3,
        "flowStartSysUpTime": 1000,
        "flowEndSysUpTime": 4000,
        "ingressInterface": 1,
        "egressInterface": 2,
    }
    assert records == [flow, flow]
    [opt] = dec.decode(v9(flow_set(257, opt_data), seq=2), EXPORTER)
    assert opt == {
        **v9_meta(tid=257, seq=2),
        "_options": True,
        "scope_system": 0x0A000001,
        "samplingInterval": 100,
        "samplingAlgorithm": 2,
    }
    assert dec.drops.counts == {}


def test_v9_templates_are_per_source_id_and_malformed_options_are_counted() -> None:
    dec = FlowDecoder()
    dec.decode(v9(flow_set(0, template(256, [(7, 2)])), source_id=1), EXPORTER)
    assert dec.decode(v9(flow_set(256, b"\x00\x50"), source_id=2), EXPORTER) == []
    assert dec.templates.pending == 1
    [rec] = dec.decode(v9(flow_set(256, b"\x00\x50"), source_id=1), EXPORTER)
    assert rec["sourceTransportPort"] == 80
    bad = [
        flow_set(1, struct.pack(">HHH", 257, 3, 4) + b"\x00" * 7),  # scope length not a multiple of 4
        flow_set(1, struct.pack(">HH", 257, 4)),  # cut before the option length
        flow_set(0, struct.pack(">HH", 256, 0)),  # no fields
    ]
    for s in bad:
        dec.decode(v9(s), EXPORTER)
    assert dec.drops.counts == {"bad_template": 2, "bad_set": 1}


# -- a real exporter ---------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f">{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
    return bytes.fromhex("0200000000020200000000010800") + ip + l4


def write_pcap(path: Path) -> None:
    """A pcap (Ethernet linktype) of one TCP flow (4 packets, 460 IP octets) and one UDP flow
    (2 packets, 96 IP octets)."""
    tcp_data = struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + b"x" * 100
    tcp_fin = struct.pack(">HHIIBBHHH", 40000, 80, 2, 0, 5 << 4, 0x11, 65535, 0, 0)
    udp = struct.pack(">HHHH", 5353, 53, 28, 0) + b"y" * 20
    t0 = 1_700_000_000
    packets = [(t0 + i, _frame("10.0.0.1", "10.0.0.2", 6, tcp_data)) for i in range(3)]
    packets.append((t0 + 3, _frame("10.0.0.1", "10.0.0.2", 6, tcp_fin)))
    packets += [(t0 + i, _frame("10.0.0.3", "10.0.0.4", 17, udp)) for i in range(2)]
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for ts, frame in sorted(packets):
        out += struct.pack("<IIII", ts, 0, len(frame), len(frame)) + frame
    path.write_bytes(out)


@pytest.mark.skipif(shutil.which("softflowd") is None, reason="softflowd is not installed (apt-get install softflowd)")
@pytest.mark.parametrize("version", [9, 10])
def test_softflowd_export_decodes(tmp_path: Path, version: int) -> None:
    pcap = tmp_path / "flows.pcap"
    write_pcap(pcap)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        argv = ["softflowd", "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", str(version), "-d"]
        argv += ["-p", str(tmp_path / "softflowd.pid")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        # softflowd has exited, so every datagram it sent is already queued on the socket.
        sock.setblocking(False)
        dec = FlowDecoder()
        records = []
        while True:
            try:
                packet, (addr, _) = sock.recvfrom(65535)
            except BlockingIOError:
                break
            records += dec.decode(packet, addr)
    assert dec.drops.counts == {}
    flows = {(r["sourceIPv4Address"], r["destinationIPv4Address"]): r for r in records if not r.get("_options")}
    assert set(flows) == {("10.0.0.1", "10.0.0.2"), ("10.0.0.3", "10.0.0.4")}
    tcp, udp = flows["10.0.0.1", "10.0.0.2"], flows["10.0.0.3", "10.0.0.4"]
    assert (tcp["sourceTransportPort"], tcp["destinationTransportPort"], tcp["protocolIdentifier"]) == (40000, 80, 6)
    assert (tcp["packetDeltaCount"], tcp["octetDeltaCount"], tcp["tcpControlBits"]) == (4, 460, 0x19)
    assert (udp["sourceTransportPort"], udp["destinationTransportPort"], udp["protocolIdentifier"]) == (5353, 53, 17)
    assert (udp["packetDeltaCount"], udp["octetDeltaCount"]) == (2, 96)
    assert tcp["flowEndSysUpTime"] - tcp["flowStartSysUpTime"] == 3000
    for r in records:
        assert r["exporter"] == "127.0.0.1"
        assert r["version"] == version
    assert any(r.get("_options") for r in records)  # softflowd sends an options template too
