"""Table and JSON output for CLI commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["Column", "emit", "message_json"]

Column = tuple[str, Callable[[Any], object]]


def message_json(msg: Message) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=False)


def _ts(value: Any) -> str:
    if hasattr(value, "seconds") and (value.seconds or value.nanos):
        return str(value.ToJsonString())
    return ""


def emit(items: Sequence[Message] | Message, columns: Sequence[Column], output: str) -> None:
    """Print ``items`` as JSON (messages as grpcurl shows them) or as an aligned table."""
    if output == "json":
        data = message_json(items) if isinstance(items, Message) else [message_json(m) for m in items]
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    rows = [items] if isinstance(items, Message) else list(items)
    table = [[title for title, _ in columns]]
    for row in rows:
        cells = []
        for _, get in columns:
            value = get(row)
            cells.append(_ts(value) if hasattr(value, "seconds") else str(value))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if not rows:
        sys.stdout.write("(none)\n")
