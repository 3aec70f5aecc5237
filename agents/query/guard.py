"""What SQL may run: exactly one SELECT whose only table is the dataset's.

DuckDB itself parses the statement (``extract_statements`` for the statement count and type,
``json_serialize_sql`` for the syntax tree), so the check sees exactly what the engine will run —
comments, quoting and odd spellings cannot hide a second statement or a file read from it. The
tree is then walked with allow-lists (unknown node types are refused, never passed):

- table references: the dataset's table (by its id) or a CTE of the query; nothing qualified
  with a catalog or schema; ``read_parquet('PARQUET_PATH', ...)`` (the reference's placeholder)
  is rewritten to the dataset's table;
- table functions: only generators that touch no data (``range``, ``generate_series``,
  ``unnest``); ``read_csv``, ``glob``, ``read_text``, ``query``... are refused;
- scalar functions that reveal the process environment or configuration are refused.

This check is the first of two layers: the connection the statement runs on has external
access off (only the dataset's own files are readable), its configuration locked, and nothing
in its catalog but the dataset's view (see ``engine.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import grpc

from agents.query.errors import QueryError, denied, invalid

__all__ = ["CheckedSQL", "check_sql", "quote_ident"]

PLACEHOLDER = "PARQUET_PATH"
_PARQUET_READERS = frozenset({"read_parquet", "parquet_scan"})
_SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
#: Scalar functions that read the environment, settings or logs, or run SQL given as text.
_DENIED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "write_log",
        "json_execute_serialized_sql",
        "nextval",
        "currval",
        "setseed",
    }
)
#: Query nodes, table references and modifiers a SELECT may contain (expressions have a "class").
_ALLOWED_NODES = frozenset(
    {
        "SELECT_NODE",
        "SET_OPERATION_NODE",
        "RECURSIVE_CTE_NODE",
        "CTE_NODE",
        "EMPTY",
        "EXPRESSION_LIST",
        "JOIN",
        "SUBQUERY",
        "BASE_TABLE",
        "TABLE_FUNCTION",
        "ORDER_MODIFIER",
        "LIMIT_MODIFIER",
        "LIMIT_PERCENT_MODIFIER",
        "DISTINCT_MODIFIER",
        "ASCENDING",
        "DESCENDING",
        "ORDER_DEFAULT",
    }
)
_NODE_NAMES = {"SHOW_REF": "DESCRIBE, SHOW and SUMMARIZE (use GetSchema for the columns)", "PIVOT": "PIVOT"}


@dataclass(frozen=True)
class CheckedSQL:
    """A statement that passed: ``sql`` is what runs (the placeholder rewritten, if it was used)."""

    sql: str
    has_order_by: bool


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _serialize(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    rows = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchall()
    tree: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True, "error_message": "no result"}
    if tree.get("error"):
        # Serialization covers every plain SELECT; what it cannot express (PIVOT...) is not run.
        raise denied(f"This statement cannot be checked, so it is not run: {tree.get('error_message', '')}")
    return tree


class _Walker:
    def __init__(self, table: str, allow_order_by: bool) -> None:
        self.table = table.lower()
        self.allow_order_by = allow_order_by
        self.ctes: set[str] = set()
        self.has_order_by = False
        self.placeholders: list[dict[str, Any]] = []

    def collect_ctes(self, node: Any) -> None:
        if isinstance(node, dict):
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                for entry in cte_map.get("map", []):
                    self.ctes.add(str(entry.get("key", "")).lower())
            for value in node.values():
                self.collect_ctes(value)
        elif isinstance(node, list):
            for value in node:
                self.collect_ctes(value)

    def walk(self, node: Any) -> None:
        if isinstance(node, list):
            for value in node:
                self.walk(value)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if "class" in node:
            if node["class"] == "FUNCTION":
                self._function(node)
        elif isinstance(kind, str):
            if kind not in _ALLOWED_NODES:
                what = _NODE_NAMES.get(kind, kind.replace("_", " ").lower())
                raise denied(f"Queries cannot use {what}; only a plain SELECT over the dataset's table runs.")
            if kind == "BASE_TABLE":
                self._table(node)
            elif kind == "TABLE_FUNCTION":
                if self._table_function(node):
                    return  # the placeholder is replaced whole; its arguments are never run
            elif kind == "ORDER_MODIFIER" and node.get("orders"):
                self.has_order_by = True
                if not self.allow_order_by:
                    raise QueryError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "ORDER BY is not allowed by this query service (limit allow_order_by is off).",
                        "ORDER_BY_NOT_ALLOWED",
                        {"limit": "allow_order_by"},
                    )
        for value in node.values():
            self.walk(value)

    def _table(self, node: dict[str, Any]) -> None:
        name = str(node.get("table_name", ""))
        if node.get("catalog_name") or node.get("schema_name"):
            qualified = ".".join(p for p in (node.get("catalog_name"), node.get("schema_name"), name) if p)
            raise denied(f"Queries can read only the dataset's table {self.table!r}, not {qualified!r}.")
        if name.lower() != self.table and name.lower() not in self.ctes:
            raise denied(f"Queries can read only the dataset's table {self.table!r}; {name!r} is not available.")
        if node.get("at_clause"):
            raise denied("AT (time travel) clauses are not available on dataset tables.")

    def _table_function(self, node: dict[str, Any]) -> bool:
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        args = function.get("arguments") or []
        first = args[0].get("expression", {}) if args and isinstance(args[0], dict) else {}
        literal = first.get("literal") or {}
        if name in _PARQUET_READERS and literal.get("kind") == "STRING" and literal.get("text") == PLACEHOLDER:
            self.placeholders.append(node)
            return True
        if name in _SAFE_TABLE_FUNCTIONS and not function.get("schema") and not function.get("catalog"):
            return False
        raise denied(f"Table function {name}() is not allowed: queries read only the dataset's table {self.table!r}.")

    def _function(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        if name in _DENIED_FUNCTIONS:
            raise denied(f"Function {name}() is not allowed in queries.")


def _replace_placeholders(walker: _Walker, table: str) -> None:
    for node in walker.placeholders:
        alias = node.get("alias", "")
        column_aliases = node.get("column_name_alias", [])
        node.clear()
        node.update(
            {
                "type": "BASE_TABLE",
                "alias": alias,
                "sample": None,
                "query_location": 0,
                "query_location_length": 0,
                "schema_name": "",
                "table_name": table,
                "column_name_alias": column_aliases,
                "catalog_name": "",
                "at_clause": None,
                "qualified_name": {"path": [table]},
            }
        )


def check_sql(con: duckdb.DuckDBPyConnection, sql: str, table: str, *, allow_order_by: bool) -> CheckedSQL:
    """Return the statement to run, or raise PERMISSION_DENIED (INVALID_ARGUMENT for bad syntax)."""
    if not sql.strip():
        raise invalid("sql: is empty; give one SELECT statement.", "sql")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise invalid(f"sql: {exc}", "sql", "SQL_SYNTAX") from None
    if len(statements) != 1:
        raise denied(f"Give exactly one SELECT statement; this text holds {len(statements)}.")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind.name if hasattr(kind, "name") else kind).upper()
        raise denied(f"Only SELECT statements may run; this is a {name} statement.")
    tree = _serialize(con, sql)
    walker = _Walker(table, allow_order_by)
    walker.collect_ctes(tree)
    walker.walk(tree["statements"])
    if not walker.placeholders:
        return CheckedSQL(sql, walker.has_order_by)
    _replace_placeholders(walker, table)
    rows = con.execute("SELECT json_deserialize_sql(?::JSON)", [json.dumps(tree)]).fetchall()
    rewritten = str(rows[0][0]) if rows else ""
    # The rewritten text is checked again from scratch: what runs is always what was checked.
    again = check_sql(con, rewritten, table, allow_order_by=allow_order_by)
    return CheckedSQL(again.sql, again.has_order_by)
