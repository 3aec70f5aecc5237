"""Pieces shared by the flow decoders (NetFlow v9, IPFIX, sFlow): the IANA IPFIX information
elements with their value formatting, a per-reason drop counter, and the template cache with
its short buffer for data sets that arrive before their template.

Everything here runs on the per-packet path, so a template is compiled once into a
``struct.Struct`` plus a short list of value converters, and a data set is decoded in one pass.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "IANA_ELEMENTS",
    "Drops",
    "FieldSpec",
    "PendingSet",
    "Template",
    "TemplateCache",
    "compile_template",
    "element_name",
    "format_ip",
]

Record = dict[str, Any]
Converter = Callable[[Any], Any]

# IPFIX abstract data types (RFC 7012 section 3.1), shortened.
U, F, MAC, IP4, IP6, STR, OCT = "u", "f", "mac", "ip4", "ip6", "str", "oct"
SEC, MSEC, USEC, NSEC = "sec", "msec", "usec", "nsec"

# id -> (name, type). The commonly exported elements of the IANA "IPFIX Information Elements"
# registry; NetFlow v9 field types 1-127 share these numbers (RFC 3954 section 8).
IANA_ELEMENTS: dict[int, tuple[str, str]] = {
    1: ("octetDeltaCount", U), 2: ("packetDeltaCount", U), 3: ("deltaFlowCount", U),
    4: ("protocolIdentifier", U), 5: ("ipClassOfService", U), 6: ("tcpControlBits", U),
    7: ("sourceTransportPort", U), 8: ("sourceIPv4Address", IP4), 9: ("sourceIPv4PrefixLength", U),
    10: ("ingressInterface", U), 11: ("destinationTransportPort", U), 12: ("destinationIPv4Address", IP4),
    13: ("destinationIPv4PrefixLength", U), 14: ("egressInterface", U), 15: ("ipNextHopIPv4Address", IP4),
    16: ("bgpSourceAsNumber", U), 17: ("bgpDestinationAsNumber", U), 18: ("bgpNextHopIPv4Address", IP4),
    19: ("postMCastPacketDeltaCount", U), 20: ("postMCastOctetDeltaCount", U),
    21: ("flowEndSysUpTime", U), 22: ("flowStartSysUpTime", U), 23: ("postOctetDeltaCount", U),
    24: ("postPacketDeltaCount", U), 25: ("minimumIpTotalLength", U), 26: ("maximumIpTotalLength", U),
    27: ("sourceIPv6Address", IP6), 28: ("destinationIPv6Address", IP6), 29: ("sourceIPv6PrefixLength", U),
    30: ("destinationIPv6PrefixLength", U), 31: ("flowLabelIPv6", U), 32: ("icmpTypeCodeIPv4", U),
    33: ("igmpType", U), 34: ("samplingInterval", U), 35: ("samplingAlgorithm", U),
    36: ("flowActiveTimeout", U), 37: ("flowIdleTimeout", U), 38: ("engineType", U), 39: ("engineId", U),
    40: ("exportedOctetTotalCount", U), 41: ("exportedMessageTotalCount", U),
    42: ("exportedFlowRecordTotalCount", U), 44: ("sourceIPv4Prefix", IP4), 45: ("destinationIPv4Prefix", IP4),
    46: ("mplsTopLabelType", U), 47: ("mplsTopLabelIPv4Address", IP4), 48: ("samplerId", U),
    49: ("samplerMode", U), 50: ("samplerRandomInterval", U), 51: ("classId", U), 52: ("minimumTTL", U),
    53: ("maximumTTL", U), 54: ("fragmentIdentification", U), 55: ("postIpClassOfService", U),
    56: ("sourceMacAddress", MAC), 57: ("postDestinationMacAddress", MAC), 58: ("vlanId", U),
    59: ("postVlanId", U), 60: ("ipVersion", U), 61: ("flowDirection", U), 62: ("ipNextHopIPv6Address", IP6),
    63: ("bgpNextHopIPv6Address", IP6), 64: ("ipv6ExtensionHeaders", U), 70: ("mplsTopLabelStackSection", OCT),
    80: ("destinationMacAddress", MAC), 81: ("postSourceMacAddress", MAC), 82: ("interfaceName", STR),
    83: ("interfaceDescription", STR), 84: ("samplerName", STR), 85: ("octetTotalCount", U),
    86: ("packetTotalCount", U), 87: ("flagsAndSamplerId", U), 88: ("fragmentOffset", U),
    89: ("forwardingStatus", U), 90: ("mplsVpnRouteDistinguisher", OCT), 91: ("mplsTopLabelPrefixLength", U),
    94: ("applicationDescription", STR), 95: ("applicationId", OCT), 96: ("applicationName", STR),
    98: ("postIpDiffServCodePoint", U), 99: ("multicastReplicationFactor", U),
    128: ("bgpNextAdjacentAsNumber", U), 129: ("bgpPrevAdjacentAsNumber", U),
    130: ("exporterIPv4Address", IP4), 131: ("exporterIPv6Address", IP6), 132: ("droppedOctetDeltaCount", U),
    133: ("droppedPacketDeltaCount", U), 134: ("droppedOctetTotalCount", U), 135: ("droppedPacketTotalCount", U),
    136: ("flowEndReason", U), 137: ("commonPropertiesId", U), 138: ("observationPointId", U),
    139: ("icmpTypeCodeIPv6", U), 140: ("mplsTopLabelIPv6Address", IP6), 141: ("lineCardId", U),
    142: ("portId", U), 143: ("meteringProcessId", U), 144: ("exportingProcessId", U), 145: ("templateId", U),
    147: ("wlanSSID", STR), 148: ("flowId", U), 149: ("observationDomainId", U),
    150: ("flowStartSeconds", SEC), 151: ("flowEndSeconds", SEC), 152: ("flowStartMilliseconds", MSEC),
    153: ("flowEndMilliseconds", MSEC), 154: ("flowStartMicroseconds", USEC), 155: ("flowEndMicroseconds", USEC),
    156: ("flowStartNanoseconds", NSEC), 157: ("flowEndNanoseconds", NSEC),
    158: ("flowStartDeltaMicroseconds", U), 159: ("flowEndDeltaMicroseconds", U),
    160: ("systemInitTimeMilliseconds", MSEC), 161: ("flowDurationMilliseconds", U),
    162: ("flowDurationMicroseconds", U), 163: ("observedFlowTotalCount", U), 164: ("ignoredPacketTotalCount", U),
    165: ("ignoredOctetTotalCount", U), 166: ("notSentFlowTotalCount", U), 167: ("notSentPacketTotalCount", U),
    168: ("notSentOctetTotalCount", U), 169: ("destinationIPv6Prefix", IP6), 170: ("sourceIPv6Prefix", IP6),
    171: ("postOctetTotalCount", U), 172: ("postPacketTotalCount", U), 173: ("flowKeyIndicator", U),
    176: ("icmpTypeIPv4", U), 177: ("icmpCodeIPv4", U), 178: ("icmpTypeIPv6", U), 179: ("icmpCodeIPv6", U),
    180: ("udpSourcePort", U), 181: ("udpDestinationPort", U), 182: ("tcpSourcePort", U),
    183: ("tcpDestinationPort", U), 184: ("tcpSequenceNumber", U), 185: ("tcpAcknowledgementNumber", U),
    186: ("tcpWindowSize", U), 187: ("tcpUrgentPointer", U), 188: ("tcpHeaderLength", U),
    189: ("ipHeaderLength", U), 190: ("totalLengthIPv4", U), 191: ("payloadLengthIPv6", U), 192: ("ipTTL", U),
    193: ("nextHeaderIPv6", U), 195: ("ipDiffServCodePoint", U), 196: ("ipPrecedence", U),
    197: ("fragmentFlags", U), 204: ("ipPayloadLength", U), 205: ("udpMessageLength", U),
    206: ("isMulticast", U), 207: ("ipv4IHL", U), 208: ("ipv4Options", U), 209: ("tcpOptions", U),
    210: ("paddingOctets", OCT), 211: ("collectorIPv4Address", IP4), 212: ("collectorIPv6Address", IP6),
    213: ("exportInterface", U), 214: ("exportProtocolVersion", U), 215: ("exportTransportProtocol", U),
    216: ("collectorTransportPort", U), 217: ("exporterTransportPort", U), 218: ("tcpSynTotalCount", U),
    219: ("tcpFinTotalCount", U), 220: ("tcpRstTotalCount", U), 221: ("tcpPshTotalCount", U),
    222: ("tcpAckTotalCount", U), 223: ("tcpUrgTotalCount", U), 224: ("ipTotalLength", U),
    225: ("postNATSourceIPv4Address", IP4), 226: ("postNATDestinationIPv4Address", IP4),
    227: ("postNAPTSourceTransportPort", U), 228: ("postNAPTDestinationTransportPort", U),
    229: ("natOriginatingAddressRealm", U), 230: ("natEvent", U), 231: ("initiatorOctets", U),
    232: ("responderOctets", U), 233: ("firewallEvent", U), 234: ("ingressVRFID", U), 235: ("egressVRFID", U),
    236: ("VRFname", STR), 238: ("tcpWindowScale", U), 239: ("biflowDirection", U),
    240: ("ethernetHeaderLength", U), 241: ("ethernetPayloadLength", U), 242: ("ethernetTotalLength", U),
    243: ("dot1qVlanId", U), 244: ("dot1qPriority", U), 245: ("dot1qCustomerVlanId", U),
    246: ("dot1qCustomerPriority", U), 252: ("ingressPhysicalInterface", U), 253: ("egressPhysicalInterface", U),
    254: ("postDot1qVlanId", U), 255: ("postDot1qCustomerVlanId", U), 256: ("ethernetType", U),
    258: ("collectionTimeMilliseconds", MSEC), 281: ("postNATSourceIPv6Address", IP6),
    282: ("postNATDestinationIPv6Address", IP6), 298: ("initiatorPackets", U), 299: ("responderPackets", U),
    311: ("samplingProbability", F),
    312: ("dataLinkFrameSize", U), 313: ("ipHeaderPacketSection", OCT), 315: ("dataLinkFrameSection", OCT),
    322: ("observationTimeSeconds", SEC), 323: ("observationTimeMilliseconds", MSEC),
    324: ("observationTimeMicroseconds", USEC), 325: ("observationTimeNanoseconds", NSEC),
    302: ("selectorId", U), 304: ("selectorAlgorithm", U), 305: ("samplingPacketInterval", U),
    306: ("samplingPacketSpace", U),
    346: ("privateEnterpriseNumber", U), 352: ("layer2OctetDeltaCount", U), 353: ("layer2OctetTotalCount", U),
}  # fmt: skip

VARIABLE_LENGTH = 65535
_NTP_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP epoch) to 1970-01-01


def element_name(element_id: int, enterprise: int = 0) -> str:
    """The IANA name of an element, ``ie_<id>`` when unknown, ``ie_<pen>_<id>`` for enterprise ones."""
    if enterprise:
        return f"ie_{enterprise}_{element_id}"
    known = IANA_ELEMENTS.get(element_id)
    return known[0] if known else f"ie_{element_id}"


def format_ip(raw: bytes) -> str:
    """Dotted IPv4 or colon IPv6 text of 4 or 16 raw bytes."""
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def _ntp_to_unix(scale: int) -> Converter:
    def convert(value: int) -> int:
        return ((value >> 32) - _NTP_OFFSET) * scale + (((value & 0xFFFFFFFF) * scale) >> 32)

    return convert


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\x00").decode("utf-8", "replace")


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _hex(raw: bytes) -> str:
    return raw.hex()


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _field_code(typ: str, length: int) -> tuple[str, Converter | None]:
    """struct code and optional converter for one fixed-length field of the given type.

    Reduced-size encoding (RFC 7011 section 6.2) means any integer length may appear.
    """
    if typ in (U, SEC, MSEC):
        return (_INT_CODES[length], None) if length in _INT_CODES else (f"{length}s", _int)
    if typ in (USEC, NSEC):
        if length == 8:
            return "Q", _ntp_to_unix(1_000_000 if typ == USEC else 1_000_000_000)
        return f"{length}s", _hex
    if typ == F:
        return {8: ("d", None), 4: ("f", None)}.get(length, (f"{length}s", _hex))
    if typ == IP4 and length == 4:
        return "4s", socket.inet_ntoa
    if typ == IP6 and length == 16:
        return "16s", format_ip
    if typ == MAC and length == 6:
        return "6s", _mac
    if typ == STR:
        return f"{length}s", _text
    if typ == OCT or typ in (IP4, IP6, MAC):
        return f"{length}s", _hex
    raise AssertionError(typ)


def _bytes_converter(typ: str) -> Converter:
    """Converter from raw bytes of any length, for variable-length fields."""
    if typ in (U, SEC, MSEC):
        return _int
    return _text if typ == STR else _hex


@dataclass(frozen=True)
class FieldSpec:
    """One field specifier of a template: element id (enterprise bit cleared), length, PEN."""

    element_id: int
    length: int
    enterprise: int = 0
    name: str = ""  # overrides the registry name (NetFlow v9 option scopes)


@dataclass
class Template:
    """A compiled template. ``struct`` decodes a whole record when no field is variable-length."""

    template_id: int
    fields: tuple[FieldSpec, ...]
    options: bool
    names: tuple[str, ...]
    struct: struct.Struct | None  # None when some field is variable-length
    converters: tuple[tuple[int, Converter], ...]
    # Variable-length layout: (fixed-run Struct, its names, its converters) or (None, name, converter).
    segments: tuple[tuple[Any, ...], ...]
    min_length: int
    expires: float = 0.0

    def decode(self, body: bytes, base: Record, out: list[Record]) -> bool:
        """Append every record of a data set body to ``out``; False when the last one was cut short."""
        st = self.struct
        if st is None:
            return self._decode_variable(body, base, out)
        size = st.size
        count = len(body) // size
        names, convs = self.names, self.converters
        end = count * size
        for vals in st.iter_unpack(body[:end] if end != len(body) else body):
            rec = dict(base)
            if convs:
                row = list(vals)
                for i, conv in convs:
                    row[i] = conv(row[i])
                rec.update(zip(names, row, strict=False))
            else:
                rec.update(zip(names, vals, strict=False))
            out.append(rec)
        # What is left over is padding (shorter than a record, zero-filled by the exporter).
        return not any(body[end:])

    def _decode_variable(self, body: bytes, base: Record, out: list[Record]) -> bool:
        pos, n = 0, len(body)
        while n - pos >= self.min_length:
            rec = dict(base)
            for seg in self.segments:
                st, names, convs = seg
                if st is not None:
                    if pos + st.size > n:
                        return False
                    row = list(st.unpack_from(body, pos))
                    pos += st.size
                    for i, conv in convs:
                        row[i] = conv(row[i])
                    rec.update(zip(names, row, strict=True))
                    continue
                if pos >= n:
                    return False
                length = body[pos]
                pos += 1
                if length == 255:
                    if pos + 2 > n:
                        return False
                    length = (body[pos] << 8) | body[pos + 1]
                    pos += 2
                if pos + length > n:
                    return False
                rec[names] = convs(body[pos : pos + length])
                pos += length
            out.append(rec)
        return not any(body[pos:])


def compile_template(template_id: int, fields: tuple[FieldSpec, ...], options: bool = False) -> Template:
    """Build the decoder of a template once, when the template arrives.

    Raises ValueError when the template's records would be empty.
    """
    names: list[str] = []
    seen: dict[str, int] = {}
    for f in fields:
        name = f.name or element_name(f.element_id, f.enterprise)
        # The same element may appear twice in a template (RFC 7011 section 8): keep both.
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")

    def typ_of(f: FieldSpec) -> str:
        if f.enterprise or f.name:
            return U if f.length in _INT_CODES else OCT
        return IANA_ELEMENTS.get(f.element_id, ("", U if f.length in _INT_CODES else OCT))[1]

    segments: list[tuple[Any, ...]] = []
    run_codes: list[str] = []
    run_names: list[str] = []
    run_convs: list[tuple[int, Converter]] = []
    min_length = 0

    def close_run() -> None:
        if run_codes:
            segments.append((struct.Struct(">" + "".join(run_codes)), tuple(run_names), tuple(run_convs)))
            run_codes.clear()
            run_names.clear()
            run_convs.clear()

    for f, name in zip(fields, names, strict=True):
        typ = typ_of(f)
        if f.length == VARIABLE_LENGTH:
            close_run()
            segments.append((None, name, _bytes_converter(typ)))
            min_length += 1
            continue
        code, conv = _field_code(typ, f.length)
        if conv is not None:
            run_convs.append((len(run_codes), conv))
        run_codes.append(code)
        run_names.append(name)
        min_length += f.length
    close_run()
    variable = any(seg[0] is None for seg in segments)
    whole = segments[0][0] if len(segments) == 1 and not variable else None
    if not variable and (whole is None or whole.size == 0):
        # A record must take at least one octet, or a data set would hold endless records.
        raise ValueError(f"template {template_id} describes empty records")
    return Template(
        template_id=template_id,
        fields=fields,
        options=options,
        names=tuple(names),
        struct=whole,
        converters=segments[0][2] if whole is not None and segments else (),
        segments=tuple(segments),
        min_length=max(min_length, 1),
    )


class Drops:
    """Packets, sets and records dropped, counted per reason (exposed in metrics and health).

    ``on_drop`` is called with each increment, e.g. a health component's ``drop`` method.
    """

    def __init__(self, on_drop: Callable[[str, int], None] | None = None) -> None:
        self.counts: dict[str, int] = {}
        self._on_drop = on_drop

    def add(self, reason: str, count: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + count
        if self._on_drop is not None:
            self._on_drop(reason, count)

    def get(self, reason: str) -> int:
        return self.counts.get(reason, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __repr__(self) -> str:
        return f"Drops({self.counts!r})"


@dataclass
class PendingSet:
    """A data set whose template had not arrived yet, kept with its packet's metadata."""

    arrived: float
    template_id: int
    body: bytes
    base: Record = field(default_factory=dict)


TemplateKey = tuple[str, int, int]  # exporter address, observation domain / source id, template id
DomainKey = tuple[str, int]


class TemplateCache:
    """Templates per (exporter, observation domain, template id) and the data sets waiting for one.

    A template expires ``template_timeout`` seconds after it was last (re)sent. At most
    ``max_templates`` are kept (oldest refreshed first out). Data sets without a template wait
    up to ``pending_timeout`` seconds, at most ``pending_sets`` per exporter and domain,
    ``pending_domains`` domains and ``pending_bytes`` octets overall; past that they count as
    ``no_template``.
    """

    def __init__(
        self,
        drops: Drops,
        *,
        template_timeout: float = 1800.0,
        pending_timeout: float = 5.0,
        pending_sets: int = 32,
        pending_domains: int = 1024,
        pending_bytes: int = 4 << 20,
        max_templates: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if template_timeout <= 0:
            raise ValueError("template_timeout must be positive")
        if min(pending_timeout, pending_sets, pending_domains, pending_bytes) < 0:
            raise ValueError("pending_timeout, pending_sets, pending_domains and pending_bytes must not be negative")
        if max_templates <= 0:
            raise ValueError("max_templates must be positive")
        self.drops = drops
        self.template_timeout = template_timeout
        self.pending_timeout = pending_timeout
        self.pending_sets = pending_sets
        self.pending_domains = pending_domains
        self.pending_bytes = pending_bytes
        self._pending_size = 0  # octets of the data sets waiting
        self.max_templates = max_templates
        self.clock = clock
        self._templates: OrderedDict[TemplateKey, Template] = OrderedDict()
        self._pending: OrderedDict[DomainKey, deque[PendingSet]] = OrderedDict()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._templates)

    def get(self, key: TemplateKey, now: float) -> Template | None:
        t = self._templates.get(key)
        if t is not None and t.expires < now:
            del self._templates[key]
            return None
        return t

    def put(self, key: TemplateKey, template: Template, now: float) -> None:
        """Add or refresh a template; an unchanged template keeps its compiled decoder."""
        old = self._templates.pop(key, None)
        if old is not None and old.fields == template.fields and old.options == template.options:
            template = old
        template.expires = now + self.template_timeout
        self._templates[key] = template
        while len(self._templates) > self.max_templates:
            self._templates.popitem(last=False)
            self.drops.add("template_evicted")

    def withdraw(self, key: TemplateKey) -> None:
        self._templates.pop(key, None)

    def withdraw_all(self, exporter: str, domain: int, options: bool) -> None:
        for key in [k for k, t in self._templates.items() if k[:2] == (exporter, domain) and t.options == options]:
            del self._templates[key]

    def park(self, exporter: str, domain: int, pending: PendingSet) -> None:
        """Keep a data set until its template arrives (or count it as ``no_template``)."""
        if (
            self.pending_sets == 0
            or self.pending_timeout == 0
            or (self._pending_size + len(pending.body) > self.pending_bytes)
        ):
            self.drops.add("no_template")
            return
        dkey = (exporter, domain)
        queue = self._pending.get(dkey)
        if queue is None:
            while len(self._pending) >= self.pending_domains and self._pending:
                _, evicted = self._pending.popitem(last=False)
                self._pending_size -= sum(len(p.body) for p in evicted)
                self.drops.add("no_template", len(evicted))
            if self.pending_domains == 0:
                self.drops.add("no_template")
                return
            queue = self._pending[dkey] = deque()
        if len(queue) >= self.pending_sets:
            self._pending_size -= len(queue.popleft().body)
            self.drops.add("no_template")
        queue.append(pending)
        self._pending_size += len(pending.body)

    def take(self, exporter: str, domain: int, template_id: int) -> Iterator[PendingSet]:
        """Remove and yield the still-fresh data sets waiting for this template."""
        dkey = (exporter, domain)
        queue = self._pending.get(dkey)
        if not queue:
            return
        deadline = self.clock() - self.pending_timeout
        keep: deque[PendingSet] = deque()
        ready: list[PendingSet] = []
        for p in queue:
            if p.template_id != template_id:
                keep.append(p)
                continue
            self._pending_size -= len(p.body)
            if p.arrived < deadline:
                self.drops.add("no_template")
            else:
                ready.append(p)
        if keep:
            self._pending[dkey] = keep
        else:
            del self._pending[dkey]
        yield from ready

    def sweep(self, now: float, force: bool = False) -> None:
        """Count and forget data sets that waited too long; runs at most once a second unless forced."""
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        deadline = now - self.pending_timeout
        for dkey in list(self._pending):
            queue = self._pending[dkey]
            while queue and queue[0].arrived < deadline:
                self._pending_size -= len(queue.popleft().body)
                self.drops.add("no_template")
            if not queue:
                del self._pending[dkey]

    @property
    def pending(self) -> int:
        """Data sets currently waiting for a template."""
        return sum(len(q) for q in self._pending.values())
