"""Content encodings the receiver accepts, and a cheap check that a body is framed as it claims.

Bodies are spooled as they arrive, never decompressed on the acknowledgement path: the check
reads only the start of a body (gzip: the header and the first few KiB inflated into a small
buffer; zstd: the frame header and the first block header, RFC 8878), so a client that labels
garbage ``gzip`` is refused with a 400 while a well-framed body costs microseconds whatever its
size. A body damaged further in still reaches the object store and fails where it is decoded.
"""

from __future__ import annotations

import zlib

import pyarrow as pa

__all__ = ["ENCODINGS", "FramingError", "check_framing", "compress_zstd", "encoding_of"]

#: ``Content-Encoding`` values -> the encoding recorded with the batch ("" = identity).
ENCODINGS = {"": "", "identity": "", "gzip": "gzip", "x-gzip": "gzip", "zstd": "zstd"}

_GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1 ID2 and CM=8 (deflate), the only method defined
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
_ZSTD_MAX_WINDOW_LOG = 31
_PROBE_INPUT = 16 * 1024
_PROBE_OUTPUT = 4 * 1024


class FramingError(ValueError):
    """Raised by ``check_framing`` when a body does not start as its encoding requires."""


def encoding_of(header: str) -> str | None:
    """The encoding named by a ``Content-Encoding`` header; None when it is not supported."""
    return ENCODINGS.get(header.strip().lower())


def check_framing(encoding: str, body: bytes) -> None:
    """Raise ``FramingError`` (a sentence) unless ``body`` starts as ``encoding`` requires."""
    if encoding == "gzip":
        _check_gzip(body)
    elif encoding == "zstd":
        _check_zstd(body)


def _check_gzip(body: bytes) -> None:
    # Header (10) + the smallest deflate stream (2) + trailer (8).
    if len(body) < 20 or body[:3] != _GZIP_MAGIC:
        raise FramingError("The body is not gzip data (Content-Encoding: gzip): it lacks the gzip header.")
    if body[3] & 0xE0:
        raise FramingError("The body's gzip header sets reserved flag bits; it is not valid gzip.")
    try:
        zlib.decompressobj(wbits=31).decompress(body[:_PROBE_INPUT], _PROBE_OUTPUT)
    except zlib.error as exc:
        raise FramingError(f"The body is not valid gzip data: {exc}.") from None


def _check_zstd(body: bytes) -> None:
    if len(body) >= 8 and int.from_bytes(body[:4], "little") in _ZSTD_SKIPPABLE:
        return  # a skippable frame first: legal, and nothing more to check cheaply
    if body[:4] != _ZSTD_MAGIC:
        raise FramingError("The body is not zstd data (Content-Encoding: zstd): it lacks the zstd frame magic.")
    if len(body) < 9:
        raise FramingError("The body's zstd frame ends inside its header; the body is truncated.")
    fhd = body[4]
    if fhd & 0x08:
        raise FramingError("The body's zstd frame header sets the reserved bit; it is not valid zstd.")
    single_segment = bool(fhd & 0x20)
    fcs_flag = fhd >> 6
    dict_id_bytes = (0, 1, 2, 4)[fhd & 0x03]
    fcs_bytes = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    pos = 5
    if not single_segment:
        window_log = 10 + (body[pos] >> 3)
        if window_log > _ZSTD_MAX_WINDOW_LOG:
            raise FramingError(f"The body's zstd frame asks for a {window_log}-bit window; at most 31 is valid.")
        pos += 1
    pos += dict_id_bytes + fcs_bytes
    if len(body) < pos + 3:
        raise FramingError("The body's zstd frame ends inside its header; the body is truncated.")
    block_header = int.from_bytes(body[pos : pos + 3], "little")
    if (block_header >> 1) & 0x03 == 3:
        raise FramingError("The body's first zstd block has the reserved block type; it is not valid zstd.")


def compress_zstd(data: bytes, level: int = 3) -> bytes:
    """One zstd frame of ``data`` (blocking; pyarrow releases the GIL, so run it in a thread)."""
    return bytes(pa.Codec("zstd", compression_level=level).compress(data, asbytes=True))
