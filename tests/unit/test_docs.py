"""Docs that are derived from code must match it."""

from __future__ import annotations

import subprocess
import sys

from scripts.gen_config_docs import DOC, render
from tests.helpers import ROOT


def test_configuration_reference_matches_settings() -> None:
    text = DOC.read_text()
    assert render(text) == text, "docs/configuration.md is stale: run python scripts/gen_config_docs.py"


def test_generated_sdk_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_sdk.py", "--check"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
