"""Decoder of NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export packets into flat records.

One ``FlowDecoder`` serves every exporter of a listener: templates and options templates are
kept per (exporter address, observation domain / source id, template id), refreshed when sent
again and forgotten after ``template_timeout``. Data sets that arrive before their template wait
briefly (see ``TemplateCache``). Malformed input is counted per reason in ``drops`` and dropped;
``decode`` returns whatever decoded cleanly and never raises on bad input.

A record carries ``exporter``, ``version``, ``export_time`` (unix seconds), ``sequence``,
``observation_domain`` (IPFIX) or ``source_id`` and ``sys_uptime`` (NetFlow v9), ``template_id``
and ``_options: true`` for options data, then one key per field named from the IANA registry.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from agents.sources.flow_common import (
    Drops,
    FieldSpec,
    PendingSet,
    Record,
    Template,
    TemplateCache,
    compile_template,
)

__all__ = ["FlowDecoder"]

_V9_HEADER = struct.Struct(">HHIIII")  # version, count, sysUptime, unix secs, sequence, source id
_IPFIX_HEADER = struct.Struct(">HHIII")  # version, length, export time, sequence, observation domain
_SET_HEADER = struct.Struct(">HH")  # set id, length
_U16X3 = struct.Struct(">HHH")
_U32 = struct.Struct(">I")

# NetFlow v9 option scope field types (RFC 3954 section 6.1).
_V9_SCOPES = {1: "scope_system", 2: "scope_interface", 3: "scope_line_card", 4: "scope_cache", 5: "scope_template"}


class FlowDecoder:
    """Decodes NetFlow v9 and IPFIX packets. Not thread-safe: use one per listener task."""

    def __init__(
        self,
        *,
        template_timeout: float = 1800.0,
        pending_timeout: float = 5.0,
        pending_sets: int = 32,
        pending_domains: int = 1024,
        pending_bytes: int = 4 << 20,
        max_templates: int = 65536,
        drops: Drops | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drops = drops if drops is not None else Drops()
        self.clock = clock
        self.templates = TemplateCache(
            self.drops,
            template_timeout=template_timeout,
            pending_timeout=pending_timeout,
            pending_sets=pending_sets,
            pending_domains=pending_domains,
            pending_bytes=pending_bytes,
            max_templates=max_templates,
            clock=clock,
        )

    def expire(self) -> None:
        """Count as ``no_template`` the buffered data sets whose template did not come in time.

        ``decode`` does this at most once a second by itself; call it from a timer when packets
        may stop arriving.
        """
        self.templates.sweep(self.clock(), force=True)

    def decode(self, packet: bytes, exporter: str) -> list[Record]:
        """Records of one export packet from ``exporter`` (its IP address as text)."""
        out: list[Record] = []
        try:
            self._decode(packet, exporter, out)
        except (struct.error, ValueError, IndexError, OverflowError):
            # Every malformation has its own check; this is the safety net the fuzz test
            # proves unused, so a decoder bug costs one packet and not the listener.
            self.drops.add("decode_error")
        return out

    def _decode(self, packet: bytes, exporter: str, out: list[Record]) -> None:
        n = len(packet)
        if n < 2:
            self.drops.add("short_header")
            return
        version = (packet[0] << 8) | packet[1]
        if version == 9:
            if n < _V9_HEADER.size:
                self.drops.add("short_header")
                return
            _, _, uptime, secs, seq, domain = _V9_HEADER.unpack_from(packet)
            base: Record = {
                "exporter": exporter,
                "version": 9,
                "source_id": domain,
                "export_time": secs,
                "sys_uptime": uptime,
                "sequence": seq,
            }
            pos, end, template_set, options_set = _V9_HEADER.size, n, 0, 1
        elif version == 10:
            if n < _IPFIX_HEADER.size:
                self.drops.add("short_header")
                return
            _, end, secs, seq, domain = _IPFIX_HEADER.unpack_from(packet)
            if end < _IPFIX_HEADER.size or end > n:
                self.drops.add("bad_length")
                return
            base = {
                "exporter": exporter,
                "version": 10,
                "observation_domain": domain,
                "export_time": secs,
                "sequence": seq,
            }
            pos, template_set, options_set = _IPFIX_HEADER.size, 2, 3
        else:
            self.drops.add("bad_version")
            return

        now = self.clock()
        cache = self.templates
        cache.sweep(now)
        while end - pos >= 4:
            set_id, set_len = _SET_HEADER.unpack_from(packet, pos)
            if set_len < 4 or pos + set_len > end:
                self.drops.add("bad_set")
                return
            body = packet[pos + 4 : pos + set_len]
            pos += set_len
            if set_id >= 256:
                template = cache.get((exporter, domain, set_id), now)
                if template is None:
                    cache.park(exporter, domain, PendingSet(now, set_id, body, base))
                else:
                    self._emit(template, body, base, out)
            elif set_id in (template_set, options_set):
                self._templates(body, set_id, version=version, exporter=exporter, domain=domain, now=now, out=out)
            else:
                self.drops.add("bad_set")  # reserved set id
        if any(packet[pos:end]):
            self.drops.add("bad_set")  # stray octets after the last set

    def _emit(self, template: Template, body: bytes, base: Record, out: list[Record]) -> None:
        rbase = dict(base)
        rbase["template_id"] = template.template_id
        if template.options:
            rbase["_options"] = True
        if not template.decode(body, rbase, out):
            self.drops.add("truncated_record")

    def _templates(
        self,
        body: bytes,
        set_id: int,
        *,
        version: int,
        exporter: str,
        domain: int,
        now: float,
        out: list[Record],
    ) -> None:
        """Read every template record of a (options) template set and decode what waited for it."""
        options = set_id in (1, 3)
        cache, n, p = self.templates, len(body), 0
        while n - p >= 4:
            tid, count = _SET_HEADER.unpack_from(body, p)
            p += 4
            if version == 10 and count == 0:
                # Withdrawal (RFC 7011 section 8.1): the set id as template id withdraws them all.
                if tid == set_id:
                    cache.withdraw_all(exporter, domain, options)
                else:
                    cache.withdraw((exporter, domain, tid))
                continue
            if tid < 256:
                self.drops.add("bad_template")
                return
            fields: list[FieldSpec] = []
            if version == 9 and options:
                # Options template: scope and option lengths in octets, no field count.
                if p + 2 > n:
                    self.drops.add("bad_set")
                    return
                scope_len, option_len = count, (body[p] << 8) | body[p + 1]
                p += 2
                if scope_len % 4 or option_len % 4 or p + scope_len + option_len > n:
                    self.drops.add("bad_template")
                    return
                for i in range(scope_len // 4):
                    ftype, flen = _SET_HEADER.unpack_from(body, p + 4 * i)
                    fields.append(FieldSpec(ftype, flen, name=_V9_SCOPES.get(ftype, f"scope_{ftype}")))
                p += scope_len
                for i in range(option_len // 4):
                    fields.append(FieldSpec(*_SET_HEADER.unpack_from(body, p + 4 * i)))
                p += option_len
            else:
                if version == 10 and options:
                    if p + 2 > n:
                        self.drops.add("bad_set")
                        return
                    p += 2  # scope field count: scope fields are ordinary IEs listed first
                for _ in range(count):
                    if p + 4 > n:
                        self.drops.add("bad_set")
                        return
                    eid, flen = _SET_HEADER.unpack_from(body, p)
                    p += 4
                    pen = 0
                    if version == 10 and eid & 0x8000:
                        if p + 4 > n:
                            self.drops.add("bad_set")
                            return
                        pen = _U32.unpack_from(body, p)[0]
                        p += 4
                        eid &= 0x7FFF
                    fields.append(FieldSpec(eid, flen, pen))
                if version == 9 and count == 0:
                    self.drops.add("bad_template")
                    continue
            try:
                template = compile_template(tid, tuple(fields), options)
            except ValueError:
                self.drops.add("bad_template")
                continue
            cache.put((exporter, domain, tid), template, now)
            for pending in cache.take(exporter, domain, tid):
                self._emit(template, pending.body, pending.base, out)
