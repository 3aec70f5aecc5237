"""The transformation engine: a dataset's transformation list compiled once into a ``Plan`` whose
``run`` executes every step on a whole Arrow table with ``pyarrow.compute`` (DuckDB for SHA-256
of many distinct values and for JSON encoding of failed records). Pure: no I/O, no clock. The
piper and the control plane's preview run the same code.

Rules every step follows:

- **Missing fields.** A step whose field is missing from the table does nothing (remove, rename,
  copy, regex_replace, mask, hash, convert, parse_*, change_case); add_field creates the field.
  A condition on a missing field is false (see ``agents.transforms.conditions`` for conditions).
- **Nulls.** Null values stay null through every step and never fail one; add_field with
  ``overwrite`` false fills only null or missing values.
- **Field names.** A top-level column, or a dotted path into struct columns (``user.name``) when no
  column has the dotted name; writes go to that place or to a new top-level column.
- **Types.** Text steps (regex_replace, mask, hash) work on the field's text form (numbers in
  shortest form, booleans ``true``/``false``, timestamps ISO 8601 with ``Z``, nested values as JSON)
  and leave text. change_case changes only text fields. add_field keeps a typed field typed when
  the constant fits its type (``"5"`` into an int field), else writes text.
- **when.** A step with ``when`` changes only the matching rows; the others keep their values.
  If the step changes the field's type (convert_type, parse_timestamp, hash) and the other rows'
  values cannot take the new type, the field becomes text for the batch rather than lose values.
  remove_fields under ``when`` sets the field to null in matching rows. ``when`` is not allowed on
  filter and route (the validator says so); sample under ``when`` samples matching rows only.
- **Failed records.** convert_type (a value that does not convert), parse_timestamp (a value
  matching no format) and parse_json (a value that is not a JSON object) take the record out of the
  output into ``Result.errors``, with the record as it was before the step, the step and a reason.
- **Dropped and moved rows.** filter keeps (include) or drops (exclude) matching rows; sample keeps
  every ``rate``-th record counted across runs of the plan (exactly 1 in N over the stream); route
  moves matching rows, as they are at that step, to ``Result.routed[dataset]`` (later steps do not
  see them).
- **Outputs of steps that add several fields.** parse_key_value and parse_json add one field per
  key (with ``prefix``; nested JSON objects flattened with ``separator``), replacing an existing
  field of that name in the rows where the key is present. parse_json of a struct field flattens it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from agents.sources.ndjson import json_objects
from agents.transforms.arrowkit import as_text, to_array
from agents.transforms.conditions import compile_condition
from agents.transforms.ndjson import read_json_lines
from agents.transforms.spec import validate_transformations
from agents.transforms.steps import Step, build_step
from floe.errors import FieldViolation
from floe.v1 import transforms_pb2 as tp

__all__ = [
    "ERROR_SCHEMA",
    "InvalidTransformations",
    "Plan",
    "Preview",
    "Result",
    "StepStats",
    "compile_plan",
    "preview",
    "preview_table",
]

#: Records that failed a step: which step (its index and its id, or its kind when it has none),
#: why, and the record as it entered the step, as a JSON object.
ERROR_SCHEMA: Final = pa.schema(
    [("step_index", pa.int32()), ("step", pa.string()), ("reason", pa.string()), ("record", pa.string())]
)


class InvalidTransformations(ValueError):
    """Raised when a transformation list does not validate; ``violations`` names every problem."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field} {v.description}" for v in violations))


@dataclass
class StepStats:
    """What one step did in one run."""

    index: int
    step: str
    kind: str
    rows_in: int = 0
    rows_out: int = 0
    failed: int = 0
    routed: int = 0
    seconds: float = 0.0
    notes: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    table: pa.Table
    #: Failed records, ``ERROR_SCHEMA``.
    errors: pa.Table
    #: Routed records by dataset resource name (``tenants/t/datasets/d``).
    routed: dict[str, pa.Table]
    step_stats: list[StepStats]


@dataclass
class _Compiled:
    index: int
    label: str
    kind: str
    run: Step
    when: Any
    route_to: str = ""


class Plan:
    """A compiled transformation list. ``run`` may be called for batch after batch; one thread at a
    time (sample counts records across runs)."""

    def __init__(self, steps: list[_Compiled]) -> None:
        self._steps = steps

    def __len__(self) -> int:
        return len(self._steps)

    def run(self, table: pa.Table) -> Result:
        """Run every step on ``table`` in order (see the module docstring for the rules)."""
        errors: list[pa.Table] = []
        routed: dict[str, list[pa.Table]] = {}
        stats: list[StepStats] = []
        for step in self._steps:
            started = time.perf_counter()
            st = StepStats(step.index, step.label, step.kind, rows_in=table.num_rows)
            when = step.when(table) if step.when is not None else None
            out = step.run(table, when)
            if out.failed is not None and out.failed.true_count:
                keep = pc.invert(out.failed)
                errors.append(_errors(table.filter(out.failed), step, out.reason, out.failed))
                st.failed = out.failed.true_count
                table = out.table.filter(keep)
            else:
                table = out.table
            if out.routed is not None and out.routed.num_rows:
                routed.setdefault(step.route_to, []).append(out.routed)
                st.routed = out.routed.num_rows
            st.rows_out, st.notes = table.num_rows, out.notes
            st.seconds = time.perf_counter() - started
            stats.append(st)
        error_table = pa.concat_tables(errors) if errors else ERROR_SCHEMA.empty_table()
        return Result(table, error_table, {k: _concat(v) for k, v in routed.items()}, stats)


def compile_plan(steps: Sequence[tp.Transformation], *, salt: str = "", path: str = "transformations") -> Plan:
    """Validate ``steps`` (raising ``InvalidTransformations``) and compile them. ``salt`` is the
    dataset's secret prefix for hash_field."""
    violations = validate_transformations(steps, path)
    if violations:
        raise InvalidTransformations(violations)
    compiled = []
    for i, step in enumerate(steps):
        kind = step.WhichOneof("kind") or ""
        when = compile_condition(step.when) if step.HasField("when") else None
        route_to = step.route.dataset if kind == "route" else ""
        compiled.append(_Compiled(i, step.id or kind, kind, build_step(step, salt), when, route_to))
    return Plan(compiled)


def _errors(failed_rows: pa.Table, step: _Compiled, reason: str | pa.Array, failed: pa.BooleanArray) -> pa.Table:
    n = failed_rows.num_rows
    reasons = pa.array([reason] * n, pa.string()) if isinstance(reason, str) else to_array(reason).filter(failed)
    return pa.table(
        {
            "step_index": pa.array([step.index] * n, pa.int32()),
            "step": pa.array([step.label] * n, pa.string()),
            "reason": reasons,
            "record": json_objects(failed_rows),
        },
        schema=ERROR_SCHEMA,
    )


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a field changed type between two route steps
        texts = [pa.table({n: as_text(c) for n, c in zip(t.column_names, t.columns, strict=True)}) for t in tables]
        return pa.concat_tables(texts, promote_options="permissive")


# -- preview ----------------------------------------------------------------------------------


@dataclass
class Preview:
    """What a transformation list does to sample records, JSON-ready (timestamps ISO 8601)."""

    rows: list[dict[str, Any]]
    #: One per failed record: step_index, step, reason, record (the record as the step got it).
    errors: list[dict[str, Any]]
    routed: dict[str, list[dict[str, Any]]]
    steps: list[StepStats]


def preview(
    steps: Sequence[tp.Transformation],
    records: Sequence[dict[str, Any]],
    *,
    salt: str = "",
    path: str = "transformations",
) -> Preview:
    """Run ``steps`` on ``records`` with the engine the piper uses. Raises ``InvalidTransformations``."""
    body = "\n".join(json.dumps(r, ensure_ascii=False, default=str) for r in records).encode()
    table = read_json_lines(body).table
    if table.num_rows < len(records):  # only possible for records that are not objects
        raise ValueError("every record must be a JSON object")
    return preview_table(steps, table, salt=salt, path=path)


def preview_table(
    steps: Sequence[tp.Transformation], table: pa.Table, *, salt: str = "", path: str = "transformations"
) -> Preview:
    """``preview`` of records already parsed into a table (e.g. by ``parse_body``), types kept."""
    plan = compile_plan(steps, salt=salt, path=path)
    result = plan.run(table)
    errors = [{**e, "record": json.loads(e["record"])} for e in result.errors.to_pylist()]
    return Preview(
        rows=_json_rows(result.table),
        errors=errors,
        routed={k: _json_rows(v) for k, v in result.routed.items()},
        steps=result.step_stats,
    )


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    return [json.loads(j) for j in json_objects(table).to_pylist()]
