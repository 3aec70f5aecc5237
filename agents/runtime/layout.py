"""Where each stage's objects live, in one place: the raw objects receivers write, the processed
batches pipers write, and the Parquet files packers write (and the query service reads).

- intake store: ``{tenant}/{dataset}/{tenant}--{dataset}--{unix_nanos}--{data_hint}.{gz|zst}``
- processed store: ``{tenant}/{dataset}/{YYYYMMDDHH}/{stem}.arrow`` — an Arrow IPC file (zstd
  buffers) holding one raw object's records of that hour; ``stem`` is the raw object's name
  without its extension, plus ``--from-{dataset}`` for records routed from another dataset.
  Commit manifests of packers live beside them under ``{tenant}/{dataset}/_manifests/``.
- Parquet store: ``{tenant}/{dataset}/data/parquet/year=YYYY/month=MM/day=DD/hour=HH/part-{id}.parquet``.

Names derive from the inputs, so a stage that repeats work after a crash overwrites its own
earlier output instead of adding a second copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.runtime.objectstore import ObjectInfo, ObjectStore

__all__ = [
    "RawKey",
    "hour_of",
    "list_all",
    "parquet_key",
    "parquet_prefix",
    "parse_raw_key",
    "processed_key",
    "raw_key",
]

_RAW_RE = re.compile(
    r"^(?P<tenant>[a-z][a-z0-9-]*)/(?P<dataset>[a-z][a-z0-9-]*)/"
    r"(?P=tenant)--(?P=dataset)--(?P<nanos>\d{1,20})--(?P<hint>[a-z0-9_-]+)\.(?P<ext>gz|zst|ndjson)$"
)
_HOUR_RE = re.compile(r"^\d{10}$")


@dataclass(frozen=True, slots=True)
class RawKey:
    tenant: str
    dataset: str
    unix_nanos: int
    data_hint: str
    extension: str

    @property
    def stem(self) -> str:
        return f"{self.tenant}--{self.dataset}--{self.unix_nanos}--{self.data_hint}"


def raw_key(tenant: str, dataset: str, unix_nanos: int, data_hint: str, extension: str) -> str:
    return f"{tenant}/{dataset}/{tenant}--{dataset}--{unix_nanos}--{data_hint}.{extension}"


def parse_raw_key(key: str) -> RawKey | None:
    """The parts of a raw object's key, or None when it is not one."""
    m = _RAW_RE.match(key)
    if m is None:
        return None
    return RawKey(m["tenant"], m["dataset"], int(m["nanos"]), m["hint"], m["ext"])


def hour_of(unix_seconds: float) -> str:
    """The ``YYYYMMDDHH`` partition (UTC) of a moment."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y%m%d%H")


def processed_key(tenant: str, dataset: str, hour: str, stem: str) -> str:
    if not _HOUR_RE.match(hour):
        raise ValueError(f"hour {hour!r} is not YYYYMMDDHH")
    return f"{tenant}/{dataset}/{hour}/{stem}.arrow"


def parquet_prefix(tenant: str, dataset: str) -> str:
    """The directory under which every Parquet file of a dataset lives (Hive layout below it)."""
    return f"{tenant}/{dataset}/data/parquet/"


def parquet_key(tenant: str, dataset: str, hour: str, file_id: str) -> str:
    if not _HOUR_RE.match(hour):
        raise ValueError(f"hour {hour!r} is not YYYYMMDDHH")
    y, mo, d, h = hour[:4], hour[4:6], hour[6:8], hour[8:10]
    return f"{parquet_prefix(tenant, dataset)}year={y}/month={mo}/day={d}/hour={h}/part-{file_id}.parquet"


async def list_all(store: ObjectStore, prefix: str) -> list[ObjectInfo]:
    """Every object under ``prefix``, in key order (all pages)."""
    out: list[ObjectInfo] = []
    after = ""
    while True:
        page = await store.list(prefix, start_after=after, limit=1000)
        out += page
        if len(page) < 1000:
            return out
        after = page[-1].key
