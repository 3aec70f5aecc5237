#!/usr/bin/env python3
"""Rewrite the generated parts of docs/configuration.md: the settings tables (from the settings
dataclasses) and the proxy's source options (from the input plugins' schemas).

Each sits between ``<!-- BEGIN settings:NAME -->`` and ``<!-- END settings:NAME -->`` markers; a
unit test fails when they differ from the code. Usage: python scripts/gen_config_docs.py
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from agents.runtime.settings import AgentSettings
from agents.sources.registry import reference
from control_plane.config import ControlPlaneSettings
from floe.settings import reference_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
TABLES: dict[str, Callable[[], str]] = {
    "control-plane": lambda: reference_table(ControlPlaneSettings),
    "agent": lambda: reference_table(AgentSettings),
    "sources": reference,
}


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- BEGIN settings:{name} -->\n).*?(<!-- END settings:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: markers for settings:{name} are missing")
        # A replacement string would interpret backslashes in the table; escape them.
        table = make().strip().replace("\\", "\\\\")
        text = pattern.sub(rf"\g<1>{table}\n\g<2>", text)
    return text


def main() -> int:
    DOC.write_text(render(DOC.read_text()))
    print(f"Updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
