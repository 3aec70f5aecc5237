"""Decoder of sFlow version 5 datagrams (sflow.org, "sFlow Version 5", 2004) into flat records.

One record per sample. A flow sample carries the sampling fields and, from its raw packet
header record, the sampled packet decoded to L2-L4 (MACs, 802.1Q VLANs, IPv4/IPv6, TCP/UDP
ports and flags, ICMP type and code), plus extended switch and router data. A counter sample
carries the generic interface and ethernet counters. Packet fields use IANA IPFIX names so
sFlow and NetFlow/IPFIX records can be queried alike; sample fields use snake_case.

Unknown sample and record formats are skipped by their length. Malformed datagrams are counted
per reason in ``drops``; ``decode`` returns the samples that decoded cleanly and never raises.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from agents.sources.flow_common import Drops, Record

__all__ = ["SFlowDecoder", "decode_ethernet", "decode_ip"]

_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">II")
_TAIL = struct.Struct(">IIII")  # sub-agent id, sequence, uptime, number of samples
_FLOW = struct.Struct(">IIIIIIII")  # seq, source id, rate, pool, drops, input, output, records
_FLOW_X = struct.Struct(">IIIIIIIIIII")  # seq, id type, id index, rate, pool, drops, in fmt/val, out fmt/val, n
_COUNTER = struct.Struct(">III")  # seq, source id, records
_COUNTER_X = struct.Struct(">IIII")  # seq, id type, id index, records
_RAW_HEADER = struct.Struct(">IIII")  # protocol, frame length, stripped, header length
_SWITCH = struct.Struct(">IIII")
_IPV4_DATA = struct.Struct(">II4s4sIIII")
_IPV6_DATA = struct.Struct(">II16s16sIIII")
_ETH_DATA = struct.Struct(">I6s2x6s2xI")
_IF_COUNTERS = struct.Struct(">IIQIIQIIIIIIQIIIIII")
_IF_NAMES = (
    "ifIndex", "ifType", "ifSpeed", "ifDirection", "ifStatus", "ifInOctets", "ifInUcastPkts",
    "ifInMulticastPkts", "ifInBroadcastPkts", "ifInDiscards", "ifInErrors", "ifInUnknownProtos",
    "ifOutOctets", "ifOutUcastPkts", "ifOutMulticastPkts", "ifOutBroadcastPkts", "ifOutDiscards",
    "ifOutErrors", "ifPromiscuousMode",
)  # fmt: skip
_ETH_COUNTERS = struct.Struct(">13I")
_ETH_NAMES = (
    "dot3StatsAlignmentErrors", "dot3StatsFCSErrors", "dot3StatsSingleCollisionFrames",
    "dot3StatsMultipleCollisionFrames", "dot3StatsSQETestErrors", "dot3StatsDeferredTransmissions",
    "dot3StatsLateCollisions", "dot3StatsExcessiveCollisions", "dot3StatsInternalMacTransmitErrors",
    "dot3StatsCarrierSenseErrors", "dot3StatsFrameTooLongs", "dot3StatsInternalMacReceiveErrors",
    "dot3StatsSymbolErrors",
)  # fmt: skip

_ETH_VLAN = (0x8100, 0x88A8, 0x9100)
_IPV6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: skip to the next header
_HEADER_ETHERNET, _HEADER_IPV4, _HEADER_IPV6 = 1, 11, 12


def _ntop(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def decode_ip(data: bytes, pos: int, version: int, rec: Record) -> None:
    """Add the IPv4/IPv6 and TCP/UDP/ICMP fields of a packet starting at ``pos`` to ``rec``.

    A header cut short by the sampler's snap length yields the fields before the cut.
    """
    n = len(data)
    if version == 4:
        if n - pos < 20:
            return
        ihl = (data[pos] & 0x0F) * 4
        rec["ipVersion"] = 4
        rec["ipClassOfService"] = data[pos + 1]
        rec["ipTotalLength"] = (data[pos + 2] << 8) | data[pos + 3]
        rec["ipTTL"] = data[pos + 8]
        proto = data[pos + 9]
        rec["protocolIdentifier"] = proto
        rec["sourceIPv4Address"] = socket.inet_ntoa(data[pos + 12 : pos + 16])
        rec["destinationIPv4Address"] = socket.inet_ntoa(data[pos + 16 : pos + 20])
        if ((data[pos + 6] & 0x1F) << 8) | data[pos + 7]:
            return  # a later fragment: no transport header
        pos += max(ihl, 20)
        icmp_type, icmp_code = "icmpTypeIPv4", "icmpCodeIPv4"
    else:
        if n - pos < 40:
            return
        rec["ipVersion"] = 6
        rec["ipClassOfService"] = ((data[pos] & 0x0F) << 4) | (data[pos + 1] >> 4)
        rec["flowLabelIPv6"] = ((data[pos + 1] & 0x0F) << 16) | (data[pos + 2] << 8) | data[pos + 3]
        rec["ipTotalLength"] = ((data[pos + 4] << 8) | data[pos + 5]) + 40
        proto = data[pos + 6]
        rec["ipTTL"] = data[pos + 7]
        rec["sourceIPv6Address"] = socket.inet_ntop(socket.AF_INET6, data[pos + 8 : pos + 24])
        rec["destinationIPv6Address"] = socket.inet_ntop(socket.AF_INET6, data[pos + 24 : pos + 40])
        pos += 40
        for _ in range(4):  # a few extension headers at most
            if proto in _IPV6_EXT and n - pos >= 8:
                proto, pos = data[pos], pos + (data[pos + 1] + 1) * 8
            elif proto == 44 and n - pos >= 8:  # fragment header
                if ((data[pos + 2] << 8) | data[pos + 3]) & 0xFFF8:
                    rec["protocolIdentifier"] = data[pos]
                    return
                proto, pos = data[pos], pos + 8
            else:
                break
        rec["protocolIdentifier"] = proto
        icmp_type, icmp_code = "icmpTypeIPv6", "icmpCodeIPv6"
    if proto in (6, 17, 132) and n - pos >= 4:
        rec["sourceTransportPort"] = (data[pos] << 8) | data[pos + 1]
        rec["destinationTransportPort"] = (data[pos + 2] << 8) | data[pos + 3]
        if proto == 6 and n - pos >= 14:
            rec["tcpControlBits"] = ((data[pos + 12] & 0x01) << 8) | data[pos + 13]
    elif proto in (1, 58) and n - pos >= 2:
        rec[icmp_type] = data[pos]
        rec[icmp_code] = data[pos + 1]


def decode_ethernet(data: bytes, rec: Record) -> None:
    """Add the L2 (and through ``decode_ip`` L3/L4) fields of an Ethernet frame to ``rec``."""
    n = len(data)
    if n < 14:
        return
    rec["destinationMacAddress"] = data[0:6].hex(":")
    rec["sourceMacAddress"] = data[6:12].hex(":")
    ethertype = (data[12] << 8) | data[13]
    pos = 14
    tags = 0
    while ethertype in _ETH_VLAN and n - pos >= 4 and tags < 2:
        vid = ((data[pos] & 0x0F) << 8) | data[pos + 1]
        rec["vlanId" if tags == 0 else "dot1qCustomerVlanId"] = vid
        ethertype = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4
        tags += 1
    rec["ethernetType"] = ethertype
    if ethertype == 0x0800:
        decode_ip(data, pos, 4, rec)
    elif ethertype == 0x86DD:
        decode_ip(data, pos, 6, rec)


class _Malformed(Exception):
    """Raised inside the decoder when a datagram is malformed; carries the drop reason."""


class SFlowDecoder:
    """Decodes sFlow v5 datagrams. Stateless apart from its drop counters."""

    def __init__(self, drops: Drops | None = None) -> None:
        self.drops = drops if drops is not None else Drops()

    def decode(self, packet: bytes, exporter: str) -> list[Record]:
        """Records (one per sample) of one datagram received from ``exporter``."""
        out: list[Record] = []
        try:
            self._decode(packet, exporter, out)
        except _Malformed as exc:
            self.drops.add(str(exc))
        except (struct.error, ValueError, IndexError, OverflowError):
            # Safety net, proven unused by the fuzz test: a decoder bug costs one datagram.
            self.drops.add("decode_error")
        return out

    def _decode(self, data: bytes, exporter: str, out: list[Record]) -> None:
        n = len(data)
        if n < 8:
            raise _Malformed("short_header")
        version, addr_type = _HEAD.unpack_from(data, 0)
        if version != 5:
            raise _Malformed("bad_version")
        if addr_type == 1:
            alen = 4
        elif addr_type == 2:
            alen = 16
        else:
            raise _Malformed("bad_address_type")
        pos = 8 + alen
        if n < pos + 16:
            raise _Malformed("short_header")
        agent = _ntop(data[8:pos])
        sub_agent, seq, uptime, count = _TAIL.unpack_from(data, pos)
        pos += 16
        base: Record = {
            "exporter": exporter,
            "version": 5,
            "agent_address": agent,
            "sub_agent_id": sub_agent,
            "sequence": seq,
            "uptime": uptime,
        }
        for _ in range(count):
            if n - pos < 8:
                raise _Malformed("bad_sample")  # fewer samples than announced
            fmt, length = _HEAD.unpack_from(data, pos)
            pos += 8
            if length > n - pos:
                raise _Malformed("bad_sample")
            start, pos = pos, pos + length
            if fmt in (1, 3):  # enterprise 0: flow sample, expanded flow sample
                rec = self._flow_sample(data, start, pos, fmt == 3, base)
            elif fmt in (2, 4):  # counter sample, expanded counter sample
                rec = self._counter_sample(data, start, pos, fmt == 4, base)
            else:
                continue
            if rec is not None:
                out.append(rec)
        if pos != n:
            self.drops.add("trailing_data")

    def _flow_sample(self, data: bytes, pos: int, end: int, expanded: bool, base: Record) -> Record | None:
        rec = dict(base)
        rec["sample_type"] = "flow"
        if expanded:
            if end - pos < _FLOW_X.size:
                self.drops.add("truncated_sample")
                return None
            fields = _FLOW_X.unpack_from(data, pos)
            seq, id_type, id_index, rate, pool, drops, in_fmt, in_val, out_fmt, out_val, records = fields
            pos += _FLOW_X.size
        else:
            if end - pos < _FLOW.size:
                self.drops.add("truncated_sample")
                return None
            seq, source, rate, pool, drops, inp, outp, records = _FLOW.unpack_from(data, pos)
            pos += _FLOW.size
            id_type, id_index = source >> 24, source & 0xFFFFFF
            in_fmt, in_val, out_fmt, out_val = inp >> 30, inp & 0x3FFFFFFF, outp >> 30, outp & 0x3FFFFFFF
        rec["sample_sequence"] = seq
        rec["source_id_type"] = id_type
        rec["source_id_index"] = id_index
        rec["sampling_rate"] = rate
        rec["sample_pool"] = pool
        rec["drops"] = drops
        rec["ingressInterface"] = in_val
        rec["egressInterface"] = out_val
        if in_fmt:
            rec["ingress_interface_format"] = in_fmt
        if out_fmt:  # 1: discarded (value = reason), 2: sent to several interfaces (value = count)
            rec["egress_interface_format"] = out_fmt
        for fmt, rpos, rend in self._records(data, pos, end, records):
            self._flow_record(fmt, data, rpos, rend, rec)
        return rec

    def _counter_sample(self, data: bytes, pos: int, end: int, expanded: bool, base: Record) -> Record | None:
        rec = dict(base)
        rec["sample_type"] = "counter"
        if expanded:
            if end - pos < _COUNTER_X.size:
                self.drops.add("truncated_sample")
                return None
            seq, id_type, id_index, records = _COUNTER_X.unpack_from(data, pos)
            pos += _COUNTER_X.size
        else:
            if end - pos < _COUNTER.size:
                self.drops.add("truncated_sample")
                return None
            seq, source, records = _COUNTER.unpack_from(data, pos)
            pos += _COUNTER.size
            id_type, id_index = source >> 24, source & 0xFFFFFF
        rec["sample_sequence"] = seq
        rec["source_id_type"] = id_type
        rec["source_id_index"] = id_index
        for fmt, rpos, rend in self._records(data, pos, end, records):
            if fmt == 1:
                self._fixed(_IF_COUNTERS, _IF_NAMES, data, (rpos, rend), rec)
            elif fmt == 2:
                self._fixed(_ETH_COUNTERS, _ETH_NAMES, data, (rpos, rend), rec)
        return rec

    def _records(self, data: bytes, pos: int, end: int, count: int) -> list[tuple[int, int, int]]:
        """(format, start, end) of each record of a sample; raises on a record overrunning it."""
        found = []
        for _ in range(count):
            if end - pos < 8:
                raise _Malformed("bad_record")
            fmt, length = _HEAD.unpack_from(data, pos)
            pos += 8
            if length > end - pos:
                raise _Malformed("bad_record")
            found.append((fmt, pos, pos + length))
            pos += length
        return found

    def _fixed(self, st: struct.Struct, keys: tuple[str, ...], data: bytes, span: tuple[int, int], rec: Record) -> bool:
        pos, end = span
        if end - pos < st.size:
            self.drops.add("truncated_record")
            return False
        rec.update(zip(keys, st.unpack_from(data, pos), strict=True))
        return True

    def _flow_record(self, fmt: int, data: bytes, pos: int, end: int, rec: Record) -> None:
        if fmt == 1:  # raw packet header
            if end - pos < _RAW_HEADER.size:
                self.drops.add("truncated_record")
                return
            proto, frame_length, stripped, hlen = _RAW_HEADER.unpack_from(data, pos)
            pos += _RAW_HEADER.size
            if hlen > end - pos:
                self.drops.add("truncated_record")
                return
            rec["header_protocol"] = proto
            rec["frame_length"] = frame_length
            rec["stripped"] = stripped
            rec["header_length"] = hlen
            header = data[pos : pos + hlen]
            if proto == _HEADER_ETHERNET:
                decode_ethernet(header, rec)
            elif proto in (_HEADER_IPV4, _HEADER_IPV6):
                decode_ip(header, 0, 4 if proto == _HEADER_IPV4 else 6, rec)
        elif fmt == 2:  # ethernet frame data
            if end - pos < _ETH_DATA.size:
                self.drops.add("truncated_record")
                return
            length, src, dst, etype = _ETH_DATA.unpack_from(data, pos)
            rec.setdefault("frame_length", length)
            rec.setdefault("sourceMacAddress", src.hex(":"))
            rec.setdefault("destinationMacAddress", dst.hex(":"))
            rec.setdefault("ethernetType", etype)
        elif fmt in (3, 4):  # IPv4 / IPv6 data
            st = _IPV4_DATA if fmt == 3 else _IPV6_DATA
            if end - pos < st.size:
                self.drops.add("truncated_record")
                return
            length, proto, src, dst, sport, dport, flags, tos = st.unpack_from(data, pos)
            v = "IPv4" if fmt == 3 else "IPv6"
            fields: dict[str, Any] = {
                "ipTotalLength": length,
                "protocolIdentifier": proto,
                f"source{v}Address": _ntop(src),
                f"destination{v}Address": _ntop(dst),
                "sourceTransportPort": sport,
                "destinationTransportPort": dport,
                "tcpControlBits": flags,
                "ipClassOfService": tos,
            }
            for key, value in fields.items():
                rec.setdefault(key, value)
        elif fmt == 1001:  # extended switch
            if end - pos < _SWITCH.size:
                self.drops.add("truncated_record")
                return
            src_vlan, src_prio, dst_vlan, dst_prio = _SWITCH.unpack_from(data, pos)
            rec["src_vlan"] = src_vlan
            rec["src_priority"] = src_prio
            rec["dst_vlan"] = dst_vlan
            rec["dst_priority"] = dst_prio
        elif fmt == 1002:  # extended router
            if end - pos < 4:
                self.drops.add("truncated_record")
                return
            atype = _U32.unpack_from(data, pos)[0]
            alen = 4 if atype == 1 else 16 if atype == 2 else 0
            if not alen or end - pos < 4 + alen + 8:
                self.drops.add("truncated_record")
                return
            rec["ipNextHopIPv4Address" if alen == 4 else "ipNextHopIPv6Address"] = _ntop(data[pos + 4 : pos + 4 + alen])
            src_mask, dst_mask = _HEAD.unpack_from(data, pos + 4 + alen)
            rec["src_mask_len"] = src_mask
            rec["dst_mask_len"] = dst_mask
