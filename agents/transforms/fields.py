"""Field tracking: which fields a dataset's output holds, with their Arrow types and how many
values were seen. ``FieldStats.observe`` takes one output table; the piper keeps one ``FieldStats``
per dataset, merges per-batch stats into it and reports it to the control plane."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

__all__ = ["FieldInfo", "FieldStats"]


@dataclass
class FieldInfo:
    """One field across the batches observed."""

    #: Arrow type name (``str(pa.DataType)``, e.g. ``int64``, ``timestamp[us, tz=UTC]``) -> batches
    #: in which the field had that type; more than one key means the type changed.
    types: dict[str, int] = field(default_factory=dict)
    #: Non-null values seen.
    non_null: int = 0
    #: Rows seen in batches that had the field (null or not).
    rows: int = 0
    #: Unix nanoseconds of the first and last batch that had the field (0: not given).
    first_seen: int = 0
    last_seen: int = 0

    def merge(self, other: FieldInfo) -> None:
        for name, count in other.types.items():
            self.types[name] = self.types.get(name, 0) + count
        self.non_null += other.non_null
        self.rows += other.rows
        if other.first_seen and (not self.first_seen or other.first_seen < self.first_seen):
            self.first_seen = other.first_seen
        self.last_seen = max(self.last_seen, other.last_seen)

    @property
    def type(self) -> str:
        """The type seen in most batches."""
        return max(self.types.items(), key=lambda kv: kv[1])[0] if self.types else "null"


@dataclass
class FieldStats:
    """Fields by name (top-level columns; a struct column is one field with its struct type)."""

    fields: dict[str, FieldInfo] = field(default_factory=dict)
    #: Rows observed in all.
    rows: int = 0

    @classmethod
    def of_table(cls, table: pa.Table, seen_at: int = 0) -> FieldStats:
        """The stats of one table; ``seen_at`` (Unix ns) becomes each field's first and last seen."""
        stats = cls(rows=table.num_rows)
        for name, column in zip(table.column_names, table.columns, strict=True):
            stats.fields[name] = FieldInfo(
                types={str(column.type): 1},
                non_null=len(column) - column.null_count,
                rows=len(column),
                first_seen=seen_at,
                last_seen=seen_at,
            )
        return stats

    def observe(self, table: pa.Table, seen_at: int = 0) -> None:
        self.merge(FieldStats.of_table(table, seen_at))

    def merge(self, other: FieldStats) -> None:
        self.rows += other.rows
        for name, info in other.fields.items():
            mine = self.fields.get(name)
            if mine is None:
                self.fields[name] = FieldInfo(
                    dict(info.types), info.non_null, info.rows, info.first_seen, info.last_seen
                )
            else:
                mine.merge(info)
