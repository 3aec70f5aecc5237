#!/usr/bin/env python3
"""Rewrite the settings tables in docs/configuration.md from the settings dataclasses.

The tables sit between ``<!-- BEGIN settings:NAME -->`` and ``<!-- END settings:NAME -->``
markers; a unit test fails when they differ from the code. Usage: python scripts/gen_config_docs.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from agents.runtime.settings import AgentSettings
from control_plane.config import ControlPlaneSettings
from floe.settings import reference_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
TABLES = {"control-plane": ControlPlaneSettings, "agent": AgentSettings}


def render(text: str) -> str:
    for name, cls in TABLES.items():
        pattern = re.compile(rf"(<!-- BEGIN settings:{name} -->\n).*?(<!-- END settings:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: markers for settings:{name} are missing")
        # A replacement string would interpret backslashes in the table; escape them.
        table = reference_table(cls).replace("\\", "\\\\")
        text = pattern.sub(rf"\g<1>{table}\n\g<2>", text)
    return text


def main() -> int:
    DOC.write_text(render(DOC.read_text()))
    print(f"Updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
