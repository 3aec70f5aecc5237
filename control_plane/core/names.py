"""Resource names and ids (AIP-122): ``tenants/{tenant}``, ``tenants/{t}/datasets/{d}``,
``keys/{key}``, ``users/{user}``."""

from __future__ import annotations

import re

from control_plane.core.errors import FieldViolation, InvalidArgument

__all__ = [
    "check_id",
    "dataset_name",
    "parse_dataset_name",
    "parse_name",
    "parse_tenant_name",
    "tenant_name",
]

_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_USER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,61}[a-z0-9]$")
ID_RULE = "2-63 characters of lowercase letters, digits and '-', starting with a letter and not ending with '-'"
USER_ID_RULE = "2-63 characters of lowercase letters, digits, '.', '_' and '-'"


def check_id(value: str, field: str, *, user: bool = False) -> FieldViolation | None:
    """Return a violation when ``value`` is not a valid resource id."""
    pattern, rule = (_USER_ID_RE, USER_ID_RULE) if user else (_ID_RE, ID_RULE)
    if not value:
        return FieldViolation(field, "is required")
    if not pattern.match(value):
        return FieldViolation(field, f"{value!r} is not a valid id: use {rule}")
    return None


def tenant_name(tenant_id: str) -> str:
    return f"tenants/{tenant_id}"


def dataset_name(tenant_id: str, dataset_id: str) -> str:
    return f"tenants/{tenant_id}/datasets/{dataset_id}"


def parse_name(value: str, collection: str, field: str = "name", *, user: bool = False) -> str:
    """Parse ``{collection}/{id}`` and return the id; INVALID_ARGUMENT naming ``field`` otherwise."""
    parts = value.split("/")
    if len(parts) != 2 or parts[0] != collection:
        raise InvalidArgument.from_violations(
            [FieldViolation(field, f"{value!r} is not a resource name of the form {collection}/{{id}}")]
        )
    violation = check_id(parts[1], field, user=user)
    if violation:
        raise InvalidArgument.from_violations([violation])
    return parts[1]


def parse_tenant_name(value: str, field: str = "name") -> str:
    return parse_name(value, "tenants", field)


def parse_dataset_name(value: str, field: str = "name") -> tuple[str, str]:
    """Parse ``tenants/{t}/datasets/{d}`` into ``(t, d)``."""
    parts = value.split("/")
    if len(parts) != 4 or parts[0] != "tenants" or parts[2] != "datasets":
        raise InvalidArgument.from_violations(
            [FieldViolation(field, f"{value!r} is not of the form tenants/{{tenant}}/datasets/{{dataset}}")]
        )
    violations = [v for v in (check_id(parts[1], field), check_id(parts[3], field)) if v]
    if violations:
        raise InvalidArgument.from_violations(violations)
    return parts[1], parts[3]
