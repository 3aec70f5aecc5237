"""sFlow v5 decoding: datagrams built byte for byte from the sFlow version 5 specification."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from agents.sources.sflow import SFlowDecoder

EXPORTER = "192.0.2.10"


# -- datagram builders (shared with the fuzz test and the benchmark) ---------------------------


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def record(fmt: int, body: bytes) -> bytes:
    body = _pad(body)
    return struct.pack(">II", fmt, len(body)) + body


def raw_header(header: bytes, frame_length: int, proto: int = 1, stripped: int = 4) -> bytes:
    return record(1, struct.pack(">IIII", proto, frame_length, stripped, len(header)) + header)


def flow_sample(*records: bytes, seq: int = 1, source: int = 5, rate: int = 512, pool: int = 1024) -> bytes:
    body = struct.pack(">IIIIIIII", seq, source, rate, pool, 0, 5, 7, len(records)) + b"".join(records)
    return struct.pack(">II", 1, len(body)) + body


def expanded_flow_sample(*records: bytes) -> bytes:
    body = struct.pack(">IIIIIIIIIII", 9, 0, 70000, 2048, 4096, 3, 0, 70001, 2, 4, len(records))
    body += b"".join(records)
    return struct.pack(">II", 3, len(body)) + body


def counter_sample(*records: bytes, expanded: bool = False) -> bytes:
    if expanded:
        body = struct.pack(">IIII", 12, 0, 70000, len(records)) + b"".join(records)
    else:
        body = struct.pack(">III", 12, 5, len(records)) + b"".join(records)
    return struct.pack(">II", 4 if expanded else 2, len(body)) + body


def datagram(*samples: bytes, agent: str = "10.0.0.254", seq: int = 77, uptime: int = 123456) -> bytes:
    if ":" in agent:
        addr = struct.pack(">I", 2) + socket.inet_pton(socket.AF_INET6, agent)
    else:
        addr = struct.pack(">I", 1) + socket.inet_aton(agent)
    return struct.pack(">I", 5) + addr + struct.pack(">IIII", 1, seq, uptime, len(samples)) + b"".join(samples)


SRC_MAC, DST_MAC = bytes.fromhex("00163e000001"), bytes.fromhex("00163e000002")


def ether(ethertype: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    out = DST_MAC + SRC_MAC
    tpids = (0x88A8, 0x8100) if len(vlans) == 2 else (0x8100,) * len(vlans)  # QinQ: S-tag then C-tag
    for tpid, vid in zip(tpids, vlans, strict=True):
        out += struct.pack(">HH", tpid, (3 << 13) | vid)
    return out + struct.pack(">H", ethertype) + payload


def ipv4(proto: int, l4: bytes, src: str = "10.1.0.1", dst: str = "10.2.0.2", *, frag: int = 0, ttl: int = 61) -> bytes:
    return (
        struct.pack(">BBHHHBBH", 0x45, 0xB8, 20 + len(l4), 1, frag, ttl, proto, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
        + l4
    )


def ipv6(next_header: int, l4: bytes, src: str = "2001:db8::a", dst: str = "2001:db8::b") -> bytes:
    first = (6 << 28) | (0x2E << 20) | 0x12345
    return (
        struct.pack(">IHBB", first, len(l4), next_header, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + l4
    )


def tcp(sport: int = 51000, dport: int = 443, flags: int = 0x18) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 2, (5 << 4) | (flags >> 8), flags & 0xFF, 1000, 0, 0)


def udp(sport: int = 5353, dport: int = 53) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8, 0)


META = {
    "exporter": EXPORTER,
    "version": 5,
    "agent_address": "10.0.0.254",
    "sub_agent_id": 1,
    "sequence": 77,
    "uptime": 123456,
}
FLOW_META = {
    **META,
    "sample_type": "flow",
    "sample_sequence": 1,
    "source_id_type": 0,
    "source_id_index": 5,
    "sampling_rate": 512,
    "sample_pool": 1024,
    "drops": 0,
    "ingressInterface": 5,
    "egressInterface": 7,
}


def test_flow_sample_with_vlan_ipv4_tcp_header_and_extended_records() -> None:
    frame = ether(0x0800, ipv4(6, tcp(flags=0x1C2)), vlans=(100,))
    switch = record(1001, struct.pack(">IIII", 100, 3, 200, 0))
    router = record(1002, struct.pack(">I4sII", 1, socket.inet_aton("10.9.0.1"), 24, 16))
    unknown = record(2000, b"\x01\x02\x03")
    dec = SFlowDecoder()
    [rec] = dec.decode(datagram(flow_sample(raw_header(frame, 1518), switch, router, unknown)), EXPORTER)
    assert rec == {
        **FLOW_META,
        "header_protocol": 1,
        "frame_length": 1518,
        "stripped": 4,
        "header_length": len(frame),
        "destinationMacAddress": "00:16:3e:00:00:02",
        "sourceMacAddress": "00:16:3e:00:00:01",
        "vlanId": 100,
        "ethernetType": 0x0800,
        "ipVersion": 4,
        "ipClassOfService": 0xB8,
        "ipTotalLength": 40,
        "ipTTL": 61,
        "protocolIdentifier": 6,
        "sourceIPv4Address": "10.1.0.1",
        "destinationIPv4Address": "10.2.0.2",
        "sourceTransportPort": 51000,
        "destinationTransportPort": 443,
        "tcpControlBits": 0x1C2,
        "src_vlan": 100,
        "src_priority": 3,
        "dst_vlan": 200,
        "dst_priority": 0,
        "ipNextHopIPv4Address": "10.9.0.1",
        "src_mask_len": 24,
        "dst_mask_len": 16,
    }
    assert dec.drops.counts == {}
    json.dumps(rec)


def test_expanded_flow_sample_ipv6_agent_qinq_ipv6_udp() -> None:
    frame = ether(0x86DD, ipv6(17, udp()), vlans=(10, 20))
    router6 = record(1002, struct.pack(">I16sII", 2, socket.inet_pton(socket.AF_INET6, "fe80::1"), 64, 48))
    [rec] = SFlowDecoder().decode(
        datagram(expanded_flow_sample(raw_header(frame, 90), router6), agent="2001:db8::fe"), EXPORTER
    )
    assert rec["agent_address"] == "2001:db8::fe"
    assert (rec["sample_sequence"], rec["source_id_type"], rec["source_id_index"]) == (9, 0, 70000)
    assert (rec["sampling_rate"], rec["sample_pool"], rec["drops"]) == (2048, 4096, 3)
    assert (rec["ingressInterface"], rec["egressInterface"], rec["egress_interface_format"]) == (70001, 4, 2)
    assert (rec["vlanId"], rec["dot1qCustomerVlanId"], rec["ethernetType"]) == (10, 20, 0x86DD)
    assert rec["ipVersion"] == 6
    assert rec["ipClassOfService"] == 0x2E
    assert rec["flowLabelIPv6"] == 0x12345
    assert rec["ipTotalLength"] == 48
    assert rec["ipTTL"] == 64
    assert rec["sourceIPv6Address"] == "2001:db8::a"
    assert rec["destinationIPv6Address"] == "2001:db8::b"
    assert (rec["protocolIdentifier"], rec["sourceTransportPort"], rec["destinationTransportPort"]) == (17, 5353, 53)
    assert rec["ipNextHopIPv6Address"] == "fe80::1"
    assert "tcpControlBits" not in rec


@pytest.mark.parametrize(
    ("header", "proto", "expected"),
    [
        (ether(0x0800, ipv4(1, b"\x08\x00\x00\x00")), 1, {"icmpTypeIPv4": 8, "icmpCodeIPv4": 0}),
        (ipv4(1, b"\x03\x0d"), 11, {"icmpTypeIPv4": 3, "icmpCodeIPv4": 13, "ipVersion": 4}),
        # Hop-by-hop options, then ICMPv6 echo reply.
        (ipv6(0, bytes([58, 0]) + b"\x00" * 6 + b"\x81\x00"), 12, {"icmpTypeIPv6": 129, "protocolIdentifier": 58}),
        # A later fragment: addresses and protocol, no ports.
        (ether(0x0800, ipv4(17, udp(), frag=0x2010)), 1, {"protocolIdentifier": 17, "sourceTransportPort": None}),
        # IPv6 fragment header with a non-zero offset.
        (ipv6(44, bytes([6, 0, 0x01, 0x00]) + b"\x00" * 4), 12, {"protocolIdentifier": 6, "sourceTransportPort": None}),
        # IPv6 first fragment: transport header follows.
        (ipv6(44, bytes([6, 0, 0, 1]) + b"\x00" * 4 + tcp()), 12, {"sourceTransportPort": 51000}),
        # Snap length cut the TCP header after the ports.
        (ether(0x0800, ipv4(6, tcp()))[:38], 1, {"sourceTransportPort": 51000, "tcpControlBits": None}),
        # Cut inside the IP header: L2 only.
        (ether(0x0800, ipv4(6, tcp()))[:30], 1, {"ethernetType": 0x0800, "ipVersion": None}),
        (ether(0x0806, b"\x00" * 28), 1, {"ethernetType": 0x0806, "ipVersion": None}),
        (b"\x00" * 10, 1, {"sourceMacAddress": None}),
    ],
)
def test_sampled_header_variants(header: bytes, proto: int, expected: dict[str, object]) -> None:
    dec = SFlowDecoder()
    [rec] = dec.decode(datagram(flow_sample(raw_header(header, 64, proto=proto))), EXPORTER)
    for key, value in expected.items():
        assert rec.get(key) == value, key
    assert dec.drops.counts == {}


def test_ethernet_and_ip_data_records_fill_fields_absent_from_a_header() -> None:
    eth = record(2, struct.pack(">I6s2x6s2xI", 1514, SRC_MAC, DST_MAC, 0x0800))
    ip4 = record(
        3, struct.pack(">II4s4sIIII", 1500, 6, socket.inet_aton("1.1.1.1"), socket.inet_aton("2.2.2.2"), 1, 2, 2, 0)
    )
    six = socket.inet_pton(socket.AF_INET6, "::1")
    ip6 = record(4, struct.pack(">II16s16sIIII", 100, 17, six, six, 3, 4, 0, 0))
    [a, b] = SFlowDecoder().decode(datagram(flow_sample(eth, ip4), flow_sample(ip6)), EXPORTER)
    assert a["frame_length"] == 1514
    assert (a["sourceMacAddress"], a["destinationMacAddress"], a["ethernetType"]) == (
        "00:16:3e:00:00:01",
        "00:16:3e:00:00:02",
        0x0800,
    )
    assert (a["sourceIPv4Address"], a["destinationIPv4Address"], a["tcpControlBits"]) == ("1.1.1.1", "2.2.2.2", 2)
    assert (b["sourceIPv6Address"], b["protocolIdentifier"], b["destinationTransportPort"]) == ("::1", 17, 4)


def test_counter_samples_generic_and_ethernet() -> None:
    generic = struct.pack(
        ">IIQIIQIIIIIIQIIIIII", 5, 6, 10_000_000_000, 1, 3, 2**40, 10, 11, 12, 13, 14, 15, 2**33, 20, 21, 22, 23, 24, 0
    )
    ethernet = struct.pack(">13I", *range(1, 14))
    dec = SFlowDecoder()
    records = dec.decode(
        datagram(
            counter_sample(record(1, generic), record(2, ethernet), record(1001, b"\x00" * 8)),
            counter_sample(record(1, generic), expanded=True),
        ),
        EXPORTER,
    )
    assert records[0] == {
        **META,
        "sample_type": "counter",
        "sample_sequence": 12,
        "source_id_type": 0,
        "source_id_index": 5,
        "ifIndex": 5,
        "ifType": 6,
        "ifSpeed": 10_000_000_000,
        "ifDirection": 1,
        "ifStatus": 3,
        "ifInOctets": 2**40,
        "ifInUcastPkts": 10,
        "ifInMulticastPkts": 11,
        "ifInBroadcastPkts": 12,
        "ifInDiscards": 13,
        "ifInErrors": 14,
        "ifInUnknownProtos": 15,
        "ifOutOctets": 2**33,
        "ifOutUcastPkts": 20,
        "ifOutMulticastPkts": 21,
        "ifOutBroadcastPkts": 22,
        "ifOutDiscards": 23,
        "ifOutErrors": 24,
        "ifPromiscuousMode": 0,
        "dot3StatsAlignmentErrors": 1,
        "dot3StatsFCSErrors": 2,
        "dot3StatsSingleCollisionFrames": 3,
        "dot3StatsMultipleCollisionFrames": 4,
        "dot3StatsSQETestErrors": 5,
        "dot3StatsDeferredTransmissions": 6,
        "dot3StatsLateCollisions": 7,
        "dot3StatsExcessiveCollisions": 8,
        "dot3StatsInternalMacTransmitErrors": 9,
        "dot3StatsCarrierSenseErrors": 10,
        "dot3StatsFrameTooLongs": 11,
        "dot3StatsInternalMacReceiveErrors": 12,
        "dot3StatsSymbolErrors": 13,
    }
    assert (records[1]["source_id_index"], records[1]["ifInOctets"]) == (70000, 2**40)
    assert dec.drops.counts == {}


def test_unknown_sample_formats_are_skipped_by_length() -> None:
    enterprise_sample = struct.pack(">II", (4300 << 12) | 1, 8) + b"\x00" * 8
    [rec] = SFlowDecoder().decode(datagram(enterprise_sample, flow_sample()), EXPORTER)
    assert rec["sample_type"] == "flow"


def _cut_sample(sample: bytes, keep: int) -> bytes:
    return struct.pack(">II", struct.unpack(">I", sample[:4])[0], keep) + sample[8 : 8 + keep]


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x00\x00\x00\x05", "short_header"),
        (datagram()[:20], "short_header"),
        (struct.pack(">II", 4, 1) + b"\x00" * 24, "bad_version"),
        (struct.pack(">II", 5, 3) + b"\x00" * 24, "bad_address_type"),
        (datagram(flow_sample())[:-4], "bad_sample"),
        (datagram(flow_sample()) + b"\x00", "trailing_data"),
        (datagram(_cut_sample(flow_sample(), 20)), "truncated_sample"),
        (datagram(_cut_sample(expanded_flow_sample(), 20)), "truncated_sample"),
        (datagram(_cut_sample(counter_sample(), 8)), "truncated_sample"),
        (datagram(_cut_sample(counter_sample(expanded=True), 8)), "truncated_sample"),
        (datagram(flow_sample(record(1, b"\x00" * 8))), "truncated_record"),
        (datagram(flow_sample(record(1, struct.pack(">IIII", 1, 64, 0, 200)))), "truncated_record"),
        (datagram(flow_sample(record(2, b"\x00" * 8))), "truncated_record"),
        (datagram(flow_sample(record(3, b"\x00" * 8))), "truncated_record"),
        (datagram(flow_sample(record(1001, b"\x00" * 8))), "truncated_record"),
        (datagram(flow_sample(record(1002, b""))), "truncated_record"),
        (datagram(flow_sample(record(1002, struct.pack(">I", 7) + b"\x00" * 12))), "truncated_record"),
        (datagram(counter_sample(record(1, b"\x00" * 20))), "truncated_record"),
    ],
)
def test_malformed_datagrams_are_counted_per_reason(packet: bytes, reason: str) -> None:
    dec = SFlowDecoder()
    dec.decode(packet, EXPORTER)
    assert dec.drops.counts == {reason: 1}


def test_record_overrunning_its_sample_drops_the_rest_of_the_datagram() -> None:
    good = flow_sample(raw_header(ether(0x0800, ipv4(6, tcp())), 60))
    body = struct.pack(">IIIIIIII", 2, 5, 1, 1, 0, 1, 2, 1) + struct.pack(">II", 1, 500)
    bad = struct.pack(">II", 1, len(body)) + body
    missing = struct.pack(">II", 1, 32) + struct.pack(">IIIIIIII", 3, 5, 1, 1, 0, 1, 2, 4)  # 4 records, none there
    dec = SFlowDecoder()
    records = dec.decode(datagram(good, bad), EXPORTER)
    assert [r["sample_sequence"] for r in records] == [1]
    assert dec.decode(datagram(missing), EXPORTER) == []
    assert dec.drops.counts == {"bad_record": 2}
