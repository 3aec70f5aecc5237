"""The sFlow decoder against Wireshark's: a datagram built byte for byte from the sFlow v5 spec
is written to a pcap and decoded by ``tshark``; every field both decode must agree."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from agents.sources.sflow import SFlowDecoder
from tests.unit.test_netflow import _frame
from tests.unit.test_sflow import datagram, ether, flow_sample, ipv4, ipv6, raw_header, record, tcp, udp

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)"
)
L4 = {"tcp": "6", "udp": "17"}

FIELDS = {
    "sflow_245.agent": "agent_address",
    "sflow_245.sequence_number": "sequence",
    "sflow_245.sysuptime": "uptime",
    "sflow.flow_sample.sampling_rate": "sampling_rate",
    "sflow.flow_sample.sample_pool": "sample_pool",
    "sflow.flow_sample.index": "source_id_index",
    "sflow_245.header.frame_length": "frame_length",
    "sflow_245.header.payload_stripped": "stripped",
    "vlan.id": "vlanId",
}
# Fields of the sampled packet: tshark lists the outer (exporter) value first, then the inner.
INNER = {
    "ip.src": "sourceIPv4Address",
    "ip.dst": "destinationIPv4Address",
    "ip.ttl": "ipTTL",
    "ipv6.src": "sourceIPv6Address",
    "ipv6.dst": "destinationIPv6Address",
    "eth.src": "sourceMacAddress",
    "eth.dst": "destinationMacAddress",
    "tcp.srcport": "sourceTransportPort",
    "tcp.dstport": "destinationTransportPort",
    "udp.srcport": "sourceTransportPort",
    "udp.dstport": "destinationTransportPort",
}


def _pcap(path: Path, payload: bytes) -> None:
    udp_header = struct.pack(">HHHH", 40000, 6343, 8 + len(payload), 0)
    frame = _frame("192.0.2.1", "192.0.2.2", 17, udp_header + payload)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame)


def _tshark(path: Path) -> dict[str, list[str]]:
    names = [*FIELDS, *INNER]
    argv = ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;", "-E", "separator=|"]
    for name in names:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    values = out.split("|")
    assert len(values) == len(names), out
    return {name: [v for v in value.split(";") if v] for name, value in zip(names, values, strict=True)}


def _norm(value: object) -> str:
    return str(value).lower()


@pytest.mark.parametrize(
    "frame",
    [
        ether(0x0800, ipv4(6, tcp(sport=51000, dport=443)), vlans=(100,)),
        ether(0x86DD, ipv6(17, udp(sport=5353, dport=53))),
    ],
    ids=["vlan-ipv4-tcp", "ipv6-udp"],
)
def test_sflow_fields_match_tsharks_decode(tmp_path: Path, frame: bytes) -> None:
    switch = record(1001, struct.pack(">IIII", 100, 3, 200, 0))
    packet = datagram(flow_sample(raw_header(frame, 1518), switch))
    [rec] = SFlowDecoder().decode(packet, "192.0.2.1")
    pcap = tmp_path / "sflow.pcap"
    _pcap(pcap, packet)
    shark = _tshark(pcap)
    compared = 0
    for field, ours in FIELDS.items():
        if field == "vlan.id" and "vlanId" not in rec:
            continue
        assert shark[field], f"tshark did not decode {field}"
        assert _norm(rec[ours]) == _norm(shark[field][-1]), field
        compared += 1
    for field, ours in INNER.items():
        values = shark[field]
        if ours not in rec or not values:
            continue
        inner = values[-1]  # the sampled packet's value comes after the exporter's own headers
        if field[:3] in L4 and str(rec["protocolIdentifier"]) != L4[field[:3]]:
            continue
        if "ipv6" in field:
            inner = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, inner))
        expected = inner
        assert _norm(rec[ours]) == _norm(expected), field
        compared += 1
    assert compared >= 12
