"""A job's persisted cursor: which Parquet files it has exported, so a file is sent once and a
restarted connector resumes where it stopped.

Parquet files are immutable and named once, so "exported" is a property of a key. Keeping every
key forever would grow without bound; instead the cursor keeps a watermark (a ``last_modified``
time) and the keys exported at or after it. Files older than the watermark are done. The
watermark trails the newest exported file by ``GRACE`` (one hour), because a file becomes
visible some time after its ``last_modified`` (an S3 multipart upload is stamped when it starts):
a file that appears late, but within the grace period, is still recognised as new.

Durability: the cursor is rewritten atomically (``write_private_file``: temp file, fsync,
rename) after each file has been fully delivered. A crash between delivering a file and
writing the cursor re-sends that file after the restart: delivery is at-least-once. Elasticsearch
documents carry ids derived from (file key, row), so a re-sent file overwrites the same
documents; Splunk HEC and webhooks may see those events twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agents.runtime.objectstore import ObjectInfo
from floe.files import write_private_file

__all__ = ["GRACE", "Cursor"]

GRACE = 3600.0


@dataclass
class Cursor:
    """Stored as JSON at ``path``; ``load`` gives an empty cursor when none exists yet."""

    path: Path
    watermark: float = 0.0
    #: key -> last_modified (unix seconds) of files exported at or after the watermark.
    recent: dict[str, float] = field(default_factory=dict)
    #: A batch job that ran to the end (it does not run again).
    completed: bool = False
    files_exported: int = 0
    rows_exported: int = 0

    @classmethod
    def load(cls, path: Path) -> Cursor:
        try:
            doc: dict[str, Any] = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(path)
        except ValueError as exc:
            raise ValueError(f"The export cursor {path} is damaged ({exc}); move it away to export again.") from exc
        return cls(
            path,
            watermark=float(doc.get("watermark", 0.0)),
            recent={str(k): float(v) for k, v in doc.get("recent", {}).items()},
            completed=bool(doc.get("completed", False)),
            files_exported=int(doc.get("files_exported", 0)),
            rows_exported=int(doc.get("rows_exported", 0)),
        )

    def pending(self, listed: list[ObjectInfo]) -> list[ObjectInfo]:
        """The files of ``listed`` not exported yet, oldest first."""
        out = [
            o
            for o in listed
            if o.key.endswith(".parquet") and o.key not in self.recent and _ts(o.last_modified) >= self.watermark
        ]
        out.sort(key=lambda o: (o.last_modified, o.key))
        return out

    def mark(self, info: ObjectInfo, rows: int) -> None:
        """Record ``info`` as exported and persist the cursor (call after delivery)."""
        self.recent[info.key] = _ts(info.last_modified)
        self.files_exported += 1
        self.rows_exported += rows
        newest = max(self.recent.values())
        mark = newest - GRACE
        if mark > self.watermark:
            self.watermark = mark
            self.recent = {k: v for k, v in self.recent.items() if v >= mark}
        self.save()

    def finish(self) -> None:
        self.completed = True
        self.save()

    def save(self) -> None:
        doc = {
            "watermark": self.watermark,
            "recent": self.recent,
            "completed": self.completed,
            "files_exported": self.files_exported,
            "rows_exported": self.rows_exported,
        }
        write_private_file(self.path, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())


def _ts(when: datetime) -> float:
    return when.timestamp()
