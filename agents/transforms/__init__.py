"""Dataset transformations: the validation rules (shared with the control plane), the parsers
from raw batch bodies to Arrow tables, and the Arrow execution engine the piper and the control
plane's preview run.

The engine and parsers are imported on first use, so the control plane importing the validator
(``agents.transforms.spec``) does not load DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents.transforms.spec import validate_transformations

if TYPE_CHECKING:
    from agents.transforms.engine import (
        ERROR_SCHEMA,
        InvalidTransformations,
        Plan,
        Preview,
        Result,
        StepStats,
        compile_plan,
        preview,
    )
    from agents.transforms.fields import FieldInfo, FieldStats
    from agents.transforms.parsers import HINTS, PARSE_ERROR_SCHEMA, ParseResult, UnknownDataHint, parse_body

__all__ = [
    "ERROR_SCHEMA",
    "HINTS",
    "PARSE_ERROR_SCHEMA",
    "FieldInfo",
    "FieldStats",
    "InvalidTransformations",
    "ParseResult",
    "Plan",
    "Preview",
    "Result",
    "StepStats",
    "UnknownDataHint",
    "compile_plan",
    "parse_body",
    "preview",
    "validate_transformations",
]

_HOMES = {
    "engine": (
        "ERROR_SCHEMA",
        "InvalidTransformations",
        "Plan",
        "Preview",
        "Result",
        "StepStats",
        "compile_plan",
        "preview",
    ),
    "fields": ("FieldInfo", "FieldStats"),
    "parsers": ("HINTS", "PARSE_ERROR_SCHEMA", "ParseResult", "UnknownDataHint", "parse_body"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"agents.transforms.{module}"), name)
