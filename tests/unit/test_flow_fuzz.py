"""Fuzzing the flow decoders: random bytes and mutated valid packets (truncated at every offset,
flipped bytes, huge counts and lengths) never raise, are counted as drops, and leave the decoder
working for the next good packet."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.sources.netflow import FlowDecoder
from agents.sources.sflow import SFlowDecoder
from tests.unit import test_netflow as nf
from tests.unit import test_sflow as sf

EXPORTER = "192.0.2.99"

_VAR_TEMPLATE = nf.template(300, [(8, 4), (82, 65535), (100, 4, 9), (7, 2)])
_VAR_DATA = socket.inet_aton("10.0.0.1") + b"\x03abc" + struct.pack(">IH", 5, 6)
_OPTIONS = struct.pack(">HHH", 257, 3, 1) + struct.pack(">HHHHHH", 144, 4, 41, 8, 42, 8)
_V9_OPTIONS = struct.pack(">HHH", 257, 4, 8) + struct.pack(">HHHHHH", 1, 4, 34, 4, 35, 1)

IPFIX = [
    nf.ipfix(
        nf.flow_set(2, nf.template(256, nf.FIVE_TUPLE) + _VAR_TEMPLATE),
        nf.flow_set(3, _OPTIONS, pad=2),
        nf.flow_set(256, nf.five_tuple_record(1) + nf.five_tuple_record(2)),
        nf.flow_set(300, _VAR_DATA * 2, pad=1),
        nf.flow_set(257, struct.pack(">IQQ", 1, 2, 3)),
    ),
]
V9 = [
    nf.v9(
        nf.flow_set(0, nf.template(256, nf.FIVE_TUPLE)),
        nf.flow_set(1, _V9_OPTIONS, pad=2),
        nf.flow_set(256, nf.five_tuple_record(1) * 3),
        nf.flow_set(257, struct.pack(">IIB", 1, 2, 3), pad=3),
    ),
]
_FRAME = sf.ether(0x0800, sf.ipv4(6, sf.tcp()), vlans=(7,))
_FRAME6 = sf.ether(0x86DD, sf.ipv6(0, bytes([17, 0]) + b"\x00" * 6 + sf.udp()))
SFLOW = [
    sf.datagram(
        sf.flow_sample(
            sf.raw_header(_FRAME, 1500),
            sf.record(1001, struct.pack(">IIII", 7, 0, 8, 0)),
            sf.record(1002, struct.pack(">I4sII", 1, b"\x0a\x00\x00\x01", 24, 24)),
        ),
        sf.expanded_flow_sample(sf.raw_header(_FRAME6, 100), sf.record(2, b"\x00" * 24)),
        sf.counter_sample(sf.record(1, b"\x00" * 88), sf.record(2, b"\x00" * 52)),
        sf.counter_sample(sf.record(1, b"\x00" * 88), expanded=True),
        agent="2001:db8::1",
    ),
]

Decode = Callable[[bytes], list[dict[str, object]]]


def _decoders() -> list[tuple[list[bytes], FlowDecoder | SFlowDecoder]]:
    return [(IPFIX, FlowDecoder()), (V9, FlowDecoder()), (SFLOW, SFlowDecoder())]


def _check(dec: FlowDecoder | SFlowDecoder, packet: bytes) -> list[dict[str, object]]:
    records = dec.decode(packet, EXPORTER)
    json.dumps(records)  # every record stays serialisable
    assert dec.drops.get("decode_error") == 0, packet.hex()
    return records


def _primed(corpus: list[bytes], dec: FlowDecoder | SFlowDecoder) -> FlowDecoder | SFlowDecoder:
    """The decoder after one good packet, so mutated data sets meet known templates."""
    expected = {id(IPFIX): 5, id(V9): 4, id(SFLOW): 4}[id(corpus)]
    assert len(_check(dec, corpus[0])) == expected
    return dec


def test_corpus_decodes_cleanly() -> None:
    for corpus, dec in _decoders():
        _primed(corpus, dec)
        assert dec.drops.counts == {}


def test_truncation_at_every_offset_is_counted() -> None:
    for corpus, dec in _decoders():
        packet = corpus[0]
        for cut in range(len(packet)):
            fresh = type(dec)()
            records = _check(fresh, packet[:cut])
            # Cut mid-set/sample is always noticed; a v9 packet cut between sets is not malformed.
            assert fresh.drops.total > 0 or (packet[:2] == b"\x00\x09" and cut >= 20), cut
            assert len(records) <= 5
        # The decoder that saw every truncation still decodes a whole packet.
        _primed(corpus, dec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1500))
def test_random_bytes(data: bytes) -> None:
    for _, dec in _decoders():
        _check(dec, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [b"\x00\x0a", b"\x00\x09", b"\x00\x00\x00\x05\x00\x00\x00\x01", b"\x00\x00\x00\x05\x00\x00\x00\x02"]
    ),
    st.binary(max_size=600),
)
def test_random_bodies_behind_valid_headers(head: bytes, tail: bytes) -> None:
    packet = head + tail
    if head == b"\x00\x0a" and len(tail) >= 2:  # make the IPFIX length agree so the sets get parsed
        packet = head + struct.pack(">H", len(packet)) + tail[2:]
    for _, dec in _decoders():
        _check(dec, packet)


_MUTATION = st.tuples(st.integers(0, 10_000), st.sampled_from(["flip", "set", "huge", "zero"]), st.integers(0, 255))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2), st.lists(_MUTATION, min_size=1, max_size=6))
def test_mutated_packets(which: int, mutations: list[tuple[int, str, int]]) -> None:
    corpus, dec = _decoders()[which]
    _primed(corpus, dec)
    packet = bytearray(corpus[0])
    for offset, kind, value in mutations:
        pos = offset % len(packet)
        if kind == "flip":
            packet[pos] ^= 1 << (value % 8)
        elif kind == "set":
            packet[pos] = value
        elif kind == "huge":  # counts and lengths at their maximum
            packet[pos : pos + 4] = b"\xff\xff\xff\xff"[: len(packet) - pos]
        else:
            packet[pos : pos + 2] = b"\x00\x00"[: len(packet) - pos]
    _check(dec, bytes(packet))
    # Whatever came before, a good packet still decodes.
    records = _check(dec, corpus[0])
    assert records


def test_huge_counts_and_lengths() -> None:
    big_count = sf.datagram()[:-4] + struct.pack(">I", 0xFFFFFFFF)
    big_records = sf.datagram(struct.pack(">II", 1, 32) + struct.pack(">8I", 1, 1, 1, 1, 0, 1, 1, 0xFFFFFFFF))
    big_header = sf.datagram(sf.flow_sample(sf.record(1, struct.pack(">IIII", 1, 64, 0, 0xFFFFFFFF))))
    big_fields = nf.ipfix(nf.flow_set(2, struct.pack(">HH", 256, 0xFFFF) + b"\x00\x07\x00\x02" * 10))
    big_var = nf.ipfix(nf.flow_set(2, nf.template(256, [(82, 65535)])), nf.flow_set(256, b"\xff\xff\xff" + b"a" * 10))
    cases: list[tuple[FlowDecoder | SFlowDecoder, bytes, str]] = [
        (SFlowDecoder(), big_count, "bad_sample"),
        (SFlowDecoder(), big_records, "bad_record"),
        (SFlowDecoder(), big_header, "truncated_record"),
        (FlowDecoder(), big_fields, "bad_set"),
        (FlowDecoder(), big_var, "truncated_record"),
    ]
    for dec, packet, reason in cases:
        _check(dec, packet)
        assert dec.drops.counts == {reason: 1}
