"""The cheap framing check of gzip and zstd bodies, and the idempotent object names."""

from __future__ import annotations

import gzip
import os
import zlib

import pyarrow as pa
import pytest

from agents.receiver.framing import FramingError, check_framing, compress_zstd, encoding_of
from agents.receiver.naming import candidates, created_at_ns, object_key, seconds_from_ns, unix_nanos
from agents.runtime.spool import BatchMeta

DATA = b"".join(b'{"n": %d}\n' % i for i in range(5000))


def test_encodings() -> None:
    assert [encoding_of(v) for v in ("", "identity", "GZIP", "x-gzip", " zstd ")] == ["", "", "gzip", "gzip", "zstd"]
    assert encoding_of("br") is None and encoding_of("gzip, zstd") is None


@pytest.mark.parametrize("body", [gzip.compress(DATA), gzip.compress(b"x"), gzip.compress(os.urandom(100_000))])
def test_good_gzip_passes(body: bytes) -> None:
    check_framing("gzip", body)


@pytest.mark.parametrize(
    "body",
    [
        compress_zstd(DATA),
        compress_zstd(b"x"),
        bytes(pa.Codec("zstd", compression_level=19).compress(DATA, asbytes=True)),
    ],
)
def test_good_zstd_passes(body: bytes) -> None:
    check_framing("zstd", body)
    assert bytes(pa.CompressedInputStream(pa.py_buffer(body), "zstd").read()) in (DATA, b"x")


@pytest.mark.parametrize(
    ("encoding", "body", "words"),
    [
        ("gzip", DATA, "gzip header"),
        ("gzip", b"\x1f\x8b", "gzip header"),
        ("gzip", b"\x1f\x8b\x08\xe0" + bytes(30), "reserved"),
        ("gzip", b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 20, "not valid gzip"),
        ("zstd", gzip.compress(DATA), "frame magic"),
        ("zstd", b"\x28\xb5\x2f\xfd\x08" + bytes(10), "reserved bit"),
        ("zstd", b"\x28\xb5\x2f\xfd\x00\xb0" + bytes(10), "window"),
        ("zstd", b"\x28\xb5\x2f\xfd\x00\x00\x06\x00\x00", "reserved block type"),
        ("zstd", compress_zstd(DATA)[:6], "truncated"),
    ],
)
def test_bad_framing_is_refused_with_a_sentence(encoding: str, body: bytes, words: str) -> None:
    with pytest.raises(FramingError, match=words):
        check_framing(encoding, body)


def test_identity_bodies_are_not_checked() -> None:
    check_framing("", b"\x00\xff anything")


def test_object_names_follow_the_documented_formula_and_are_stable() -> None:
    created = 1_731_000_000_123_456_789
    meta = BatchMeta("acme", "fw", data_hint="syslog", created_at=seconds_from_ns(created), batch_id="b-42")
    assert created_at_ns(meta) == created // 1000 * 1000
    nanos = created // 1000 * 1000 + zlib.crc32(b"b-42") % 1000
    assert unix_nanos(meta) == nanos
    assert object_key(meta, nanos, "gzip") == f"acme/fw/acme--fw--{nanos}--syslog.gz"
    assert candidates(meta, "zstd", 3) == [f"acme/fw/acme--fw--{nanos + i}--syslog.zst" for i in range(3)]
    # Microsecond exactness holds across the whole range of plausible timestamps.
    for ns in range(10**18, 4 * 10**18, 7_777_777_777_777_777):
        assert created_at_ns(BatchMeta("a", "b", created_at=seconds_from_ns(ns))) == ns // 1000 * 1000
