"""Validation of a dataset's transformation list. The control plane runs it before saving a
dataset and the piper before running one, so both agree on what is valid. Patterns are checked
with the RE2 engine the piper executes them with (Arrow compute), not Python's ``re``."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence

from floe.errors import FieldViolation
from floe.v1 import transforms_pb2 as tp

__all__ = ["MAX_STEPS", "validate_transformations"]

MAX_STEPS = 100
_MAX_CONDITION_DEPTH = 16
_SPECIAL_TIME_FORMATS = {"rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns"}


def _field(value: str, path: str, out: list[FieldViolation]) -> None:
    if not value:
        out.append(FieldViolation(path, "is required"))
    elif len(value) > 256 or value != value.strip():
        out.append(FieldViolation(path, f"{value!r} is not a field name (at most 256 characters, no edge spaces)"))


def _regex(pattern: str, path: str, out: list[FieldViolation]) -> None:
    if not pattern:
        out.append(FieldViolation(path, "is required"))
        return
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern=pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        out.append(FieldViolation(path, f"is not a valid RE2 pattern: {exc}"))


def _replacement(pattern: str, replacement: str, path: str, out: list[FieldViolation]) -> None:
    """RE2 rejects a rewrite naming a group the pattern lacks only when it runs: run it here."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.replace_substring_regex(pa.array([""], pa.string()), pattern=pattern, replacement=replacement)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        out.append(FieldViolation(path, f"does not fit the pattern: {exc}"))


def _condition(cond: tp.Condition, path: str, out: list[FieldViolation], depth: int = 0) -> None:
    if depth > _MAX_CONDITION_DEPTH:
        out.append(FieldViolation(path, f"nests deeper than {_MAX_CONDITION_DEPTH} levels"))
        return
    kind = cond.WhichOneof("kind")
    if kind is None:
        out.append(FieldViolation(path, "is empty: set one of compare, regex, in, exists, all, any, not"))
    elif kind == "compare":
        _field(cond.compare.field, f"{path}.compare.field", out)
        if cond.compare.operator == tp.Comparison.OPERATOR_UNSPECIFIED:
            out.append(FieldViolation(f"{path}.compare.operator", "is required"))
    elif kind == "regex":
        _field(cond.regex.field, f"{path}.regex.field", out)
        _regex(cond.regex.pattern, f"{path}.regex.pattern", out)
    elif kind == "in":
        _field(getattr(cond, "in").field, f"{path}.in.field", out)
        if not getattr(cond, "in").values:
            out.append(FieldViolation(f"{path}.in.values", "must list at least one value"))
    elif kind == "exists":
        _field(cond.exists.field, f"{path}.exists.field", out)
    elif kind in ("all", "any"):
        group = getattr(cond, kind)
        if not group.conditions:
            out.append(FieldViolation(f"{path}.{kind}.conditions", "must list at least one condition"))
        for i, sub in enumerate(group.conditions):
            _condition(sub, f"{path}.{kind}.conditions[{i}]", out, depth + 1)
    else:
        _condition(getattr(cond, "not"), f"{path}.not", out, depth + 1)


def _step(step: tp.Transformation, path: str, out: list[FieldViolation]) -> None:
    kind = step.WhichOneof("kind")
    if step.HasField("when"):
        _condition(step.when, f"{path}.when", out)
    if kind is None:
        out.append(FieldViolation(path, "sets no transformation: choose one kind, such as rename_field"))
        return
    p = f"{path}.{kind}"
    if kind in ("filter", "route") and step.HasField("when"):
        out.append(FieldViolation(f"{path}.when", f"is not used by {kind}: put the condition in {kind}.condition"))
    if kind == "add_field":
        _field(step.add_field.field, f"{p}.field", out)
    elif kind == "remove_fields":
        if not step.remove_fields.fields:
            out.append(FieldViolation(f"{p}.fields", "must list at least one field"))
        for i, name in enumerate(step.remove_fields.fields):
            _field(name, f"{p}.fields[{i}]", out)
    elif kind in ("rename_field", "copy_field"):
        msg = getattr(step, kind)
        _field(getattr(msg, "from"), f"{p}.from", out)
        _field(msg.to, f"{p}.to", out)
        if getattr(msg, "from") and getattr(msg, "from") == msg.to:
            out.append(FieldViolation(f"{p}.to", "must differ from 'from'"))
    elif kind == "filter":
        if step.filter.mode == tp.Filter.MODE_UNSPECIFIED:
            out.append(FieldViolation(f"{p}.mode", "is required: MODE_INCLUDE or MODE_EXCLUDE"))
        if not step.filter.HasField("condition"):
            out.append(FieldViolation(f"{p}.condition", "is required"))
        else:
            _condition(step.filter.condition, f"{p}.condition", out)
    elif kind == "regex_replace":
        _field(step.regex_replace.field, f"{p}.field", out)
        before = len(out)
        _regex(step.regex_replace.pattern, f"{p}.pattern", out)
        if len(out) == before:
            _replacement(step.regex_replace.pattern, step.regex_replace.replacement, f"{p}.replacement", out)
    elif kind == "mask":
        _field(step.mask.field, f"{p}.field", out)
        _regex(step.mask.pattern, f"{p}.pattern", out)
        if len(step.mask.mask_char) > 1:
            out.append(FieldViolation(f"{p}.mask_char", "must be a single character"))
    elif kind == "hash_field":
        _field(step.hash_field.field, f"{p}.field", out)
        if step.hash_field.target:
            _field(step.hash_field.target, f"{p}.target", out)
    elif kind == "convert_type":
        _field(step.convert_type.field, f"{p}.field", out)
        if step.convert_type.type == tp.ConvertType.TYPE_UNSPECIFIED:
            out.append(FieldViolation(f"{p}.type", "is required"))
    elif kind == "parse_timestamp":
        _field(step.parse_timestamp.field, f"{p}.field", out)
        if step.parse_timestamp.target:
            _field(step.parse_timestamp.target, f"{p}.target", out)
        for i, fmt in enumerate(step.parse_timestamp.formats):
            if fmt not in _SPECIAL_TIME_FORMATS and "%" not in fmt:
                out.append(
                    FieldViolation(f"{p}.formats[{i}]", f"{fmt!r} is neither a strptime format nor rfc3339/unix_*")
                )
            elif "%f" in fmt and "%S.%f" not in fmt and "%S,%f" not in fmt:
                out.append(FieldViolation(f"{p}.formats[{i}]", "may use %f only right after seconds, as %S.%f"))
        tz = step.parse_timestamp.timezone
        if tz:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                out.append(FieldViolation(f"{p}.timezone", f"{tz!r} is not an IANA time zone such as Europe/Paris"))
    elif kind == "parse_key_value":
        _field(step.parse_key_value.field, f"{p}.field", out)
        pair_sep = step.parse_key_value.pair_separator or " "
        kv_sep = step.parse_key_value.kv_separator or "="
        if pair_sep == kv_sep:
            out.append(FieldViolation(f"{p}.kv_separator", "must differ from pair_separator (default ' ')"))
    elif kind == "parse_json":
        _field(step.parse_json.field, f"{p}.field", out)
    elif kind == "change_case":
        _field(step.change_case.field, f"{p}.field", out)
        if step.change_case.case == tp.ChangeCase.CASE_UNSPECIFIED:
            out.append(FieldViolation(f"{p}.case", "is required: CASE_LOWER or CASE_UPPER"))
    elif kind == "sample":
        if step.sample.rate < 1:
            out.append(FieldViolation(f"{p}.rate", "must be at least 1"))
    elif kind == "route":
        if not step.route.HasField("condition"):
            out.append(FieldViolation(f"{p}.condition", "is required"))
        else:
            _condition(step.route.condition, f"{p}.condition", out)
        parts = step.route.dataset.split("/")
        if len(parts) != 4 or parts[0] != "tenants" or parts[2] != "datasets" or not parts[1] or not parts[3]:
            out.append(FieldViolation(f"{p}.dataset", "must be tenants/{tenant}/datasets/{dataset}"))


def validate_transformations(steps: Sequence[tp.Transformation], path: str) -> list[FieldViolation]:
    """Every problem in ``steps``, each naming its field (``dataset.transformations[2].mask.pattern``)."""
    out: list[FieldViolation] = []
    if len(steps) > MAX_STEPS:
        out.append(FieldViolation(path, f"has {len(steps)} steps; at most {MAX_STEPS} are allowed"))
    ids: set[str] = set()
    for i, step in enumerate(steps):
        if step.id:
            if step.id in ids:
                out.append(FieldViolation(f"{path}[{i}].id", f"{step.id!r} is used by an earlier step"))
            ids.add(step.id)
        _step(step, f"{path}[{i}]", out)
    return out
