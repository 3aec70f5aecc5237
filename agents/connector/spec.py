"""Export jobs as the connector runs them: validation (shared with the control plane, which
imports ``validate_job``), defaults, the SQL a job runs, and secrets read on the connector host.

A job's ``query`` is either a whole ``SELECT``/``WITH`` over a table named like the dataset id or a
bare condition; both are parsed by DuckDB here, so a malformed query is refused when the job is
created, not when it first runs. What a query may read is enforced elsewhere (``sandbox``): the
connection it runs on sees one registered table and has external access disabled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from google.protobuf import json_format

from floe.errors import FieldViolation
from floe.v1 import exports_pb2

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_INTERVAL",
    "MAX_BATCH_SIZE",
    "ExportJob",
    "JobSpec",
    "SecretError",
    "jobs_from_yaml",
    "read_secret",
    "validate_job",
]

ExportJob = exports_pb2.ExportJob

DEFAULT_INTERVAL = 30.0
DEFAULT_BATCH_SIZE = 5000
MAX_BATCH_SIZE = 100_000
MIN_INTERVAL = 1.0
DEFAULT_ATTEMPTS = 5
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 30.0

_DATASET_RE = re.compile(r"^tenants/([a-z][a-z0-9-]{0,61}[a-z0-9])/datasets/([a-z][a-z0-9-]{0,61}[a-z0-9])$")
_JOB_RE = re.compile(r"^tenants/([a-z][a-z0-9-]{0,61}[a-z0-9])/exports/([a-z][a-z0-9-]{0,61}[a-z0-9])$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_SELECT_RE = re.compile(r"^\s*(\(\s*)*(select|with|from)\b", re.IGNORECASE)


class SecretError(Exception):
    """Raised when a secret reference cannot be read on this host."""


def _seconds(d: Any, default: float) -> float:
    return d.ToNanoseconds() / 1e9 if d.ByteSize() else default


def is_full_query(query: str) -> bool:
    """``SELECT ...``/``WITH ...``/``FROM ...`` rather than a bare condition."""
    return bool(_SELECT_RE.match(query))


def _query_problem(query: str) -> str | None:
    # Parsed only, never run.
    text = query if is_full_query(query) else f"SELECT * FROM t WHERE (\n{query}\n)"  # noqa: S608
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        return f"is not valid SQL: {str(exc).splitlines()[0]}"
    if len(statements) != 1:
        return "must be one statement"
    if statements[0].type != duckdb.StatementType.SELECT:
        return "must be a SELECT query or a condition"
    return None


def _url_problem(url: str) -> str | None:
    if not url:
        return "is required"
    if not re.match(r"^https?://[^/\s]+", url):
        return f"{url!r} must be an http:// or https:// URL"
    return None


def _secret_problems(ref: exports_pb2.SecretRef, field: str, *, required: bool) -> list[FieldViolation]:
    source = ref.WhichOneof("source")
    if source is None:
        return [FieldViolation(field, "is required: name an env variable (env) or a file (file)")] if required else []
    if source == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref.env):
        return [FieldViolation(f"{field}.env", f"{ref.env!r} is not an environment variable name")]
    if source == "file" and not ref.file.startswith("/"):
        return [FieldViolation(f"{field}.file", f"{ref.file!r} must be an absolute path on the connector host")]
    return []


def _destination_problems(dest: exports_pb2.ExportDestination, f: str) -> list[FieldViolation]:
    kind = dest.WhichOneof("kind")
    out: list[FieldViolation] = []
    if kind is None:
        return [FieldViolation(f, "is required: one of stdout, elasticsearch, splunk_hec, webhook")]
    if kind == "elasticsearch":
        es = dest.elasticsearch
        if p := _url_problem(es.url):
            out.append(FieldViolation(f"{f}.elasticsearch.url", p))
        if not es.index:
            out.append(FieldViolation(f"{f}.elasticsearch.index", "is required"))
        elif es.index != es.index.lower() or re.search(r'[\\/*?"<>| ,#:]', es.index) or es.index[0] in "-_+":
            out.append(
                FieldViolation(
                    f"{f}.elasticsearch.index",
                    f'{es.index!r} is not a valid index name (lowercase, no spaces or \\/*?"<>|,#:)',
                )
            )
        auth = es.WhichOneof("auth")
        if auth == "api_key":
            out += _secret_problems(es.api_key, f"{f}.elasticsearch.api_key", required=True)
        elif auth == "basic":
            if not es.basic.username:
                out.append(FieldViolation(f"{f}.elasticsearch.basic.username", "is required"))
            out += _secret_problems(es.basic.password, f"{f}.elasticsearch.basic.password", required=True)
    elif kind == "splunk_hec":
        hec = dest.splunk_hec
        if p := _url_problem(hec.url):
            out.append(FieldViolation(f"{f}.splunk_hec.url", p))
        out += _secret_problems(hec.token, f"{f}.splunk_hec.token", required=True)
        if hec.ack_timeout.ByteSize() and hec.ack_timeout.ToNanoseconds() <= 0:
            out.append(FieldViolation(f"{f}.splunk_hec.ack_timeout", "must be positive"))
    elif kind == "webhook":
        hook = dest.webhook
        if p := _url_problem(hook.url):
            out.append(FieldViolation(f"{f}.webhook.url", p))
        if hook.method and hook.method.upper() not in ("POST", "PUT", "PATCH"):
            out.append(FieldViolation(f"{f}.webhook.method", f"{hook.method!r} must be POST, PUT or PATCH"))
        for name in [*hook.headers, *hook.secret_headers]:
            if not _HEADER_RE.match(name):
                out.append(FieldViolation(f"{f}.webhook.headers", f"{name!r} is not a valid header name"))
        for name, value in hook.headers.items():
            if "\n" in value or "\r" in value:
                out.append(FieldViolation(f"{f}.webhook.headers[{name}]", "must be one line"))
            if name.lower() in ("authorization", "proxy-authorization", "x-api-key"):
                out.append(
                    FieldViolation(f"{f}.webhook.headers[{name}]", "holds a credential: use secret_headers instead")
                )
        for name, ref in hook.secret_headers.items():
            out += _secret_problems(ref, f"{f}.webhook.secret_headers[{name}]", required=True)
    return out


def validate_job(job: ExportJob, prefix: str = "export_job") -> list[FieldViolation]:
    """Every problem of ``job`` (its name excepted), each naming its field."""
    out: list[FieldViolation] = []
    if not job.dataset:
        out.append(FieldViolation(f"{prefix}.dataset", "is required (tenants/{tenant}/datasets/{dataset})"))
    elif not _DATASET_RE.match(job.dataset):
        out.append(
            FieldViolation(
                f"{prefix}.dataset", f"{job.dataset!r} is not of the form tenants/{{tenant}}/datasets/{{id}}"
            )
        )
    if job.query.strip() and (p := _query_problem(job.query)):
        out.append(FieldViolation(f"{prefix}.query", p))
    out += _destination_problems(job.destination, f"{prefix}.destination")
    if job.mode == exports_pb2.EXPORT_MODE_UNSPECIFIED:
        out.append(FieldViolation(f"{prefix}.mode", "is required: EXPORT_MODE_BATCH or EXPORT_MODE_WATCH"))
    elif job.mode not in exports_pb2.ExportMode.values():
        out.append(FieldViolation(f"{prefix}.mode", f"{job.mode} is not an export mode"))
    if job.interval.ByteSize() and job.interval.ToNanoseconds() < MIN_INTERVAL * 1e9:
        out.append(FieldViolation(f"{prefix}.interval", f"must be at least {MIN_INTERVAL:g}s"))
    if not 0 <= job.batch_size <= MAX_BATCH_SIZE:
        out.append(FieldViolation(f"{prefix}.batch_size", f"must be from 1 to {MAX_BATCH_SIZE} (0: default)"))
    r = job.retry
    if r.max_attempts < 0:
        out.append(FieldViolation(f"{prefix}.retry.max_attempts", "must be at least 1 (0: default)"))
    initial = _seconds(r.initial_backoff, DEFAULT_INITIAL_BACKOFF)
    maximum = _seconds(r.max_backoff, max(DEFAULT_MAX_BACKOFF, initial))
    if initial <= 0 or maximum < initial:
        out.append(FieldViolation(f"{prefix}.retry", "needs 0 < initial_backoff <= max_backoff"))
    if job.connector and not re.fullmatch(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", job.connector):
        out.append(FieldViolation(f"{prefix}.connector", f"{job.connector!r} is not an agent name"))
    return out


@dataclass(frozen=True)
class JobSpec:
    """A valid job with every default filled in."""

    name: str
    tenant: str
    dataset_id: str
    query: str
    destination: exports_pb2.ExportDestination
    watch: bool
    interval: float
    batch_size: int
    max_attempts: int
    initial_backoff: float
    max_backoff: float
    connector: str
    paused: bool
    #: Changes whenever anything the run depends on changes (restart the runner then).
    fingerprint: bytes

    @classmethod
    def from_proto(cls, job: ExportJob) -> JobSpec:
        m = _JOB_RE.match(job.name)
        d = _DATASET_RE.match(job.dataset)
        if m is None or d is None:
            raise ValueError(f"{job.name!r}: not a valid export job (name or dataset)")
        if m[1] != d[1]:
            raise ValueError(f"{job.name}: dataset {job.dataset} belongs to another tenant")
        initial = _seconds(job.retry.initial_backoff, DEFAULT_INITIAL_BACKOFF)
        return cls(
            name=job.name,
            tenant=m[1],
            dataset_id=d[2],
            query=job.query.strip(),
            destination=job.destination,
            watch=job.mode == exports_pb2.EXPORT_MODE_WATCH,
            interval=_seconds(job.interval, DEFAULT_INTERVAL),
            batch_size=job.batch_size or DEFAULT_BATCH_SIZE,
            max_attempts=job.retry.max_attempts or DEFAULT_ATTEMPTS,
            initial_backoff=initial,
            max_backoff=_seconds(job.retry.max_backoff, max(DEFAULT_MAX_BACKOFF, initial)),
            connector=job.connector,
            paused=job.paused,
            fingerprint=_fingerprint(job),
        )

    @property
    def kind(self) -> str:
        return self.destination.WhichOneof("kind") or ""


def _fingerprint(job: ExportJob) -> bytes:
    copy = ExportJob()
    copy.CopyFrom(job)
    for field in ("create_time", "update_time", "etag", "labels", "display_name"):
        copy.ClearField(field)
    return copy.SerializeToString(deterministic=True)


def read_secret(ref: exports_pb2.SecretRef, field: str) -> str:
    """The secret ``ref`` names, read now on this host; ``SecretError`` naming ``field`` otherwise."""
    source = ref.WhichOneof("source")
    if source == "env":
        value = os.environ.get(ref.env)
        if not value:
            raise SecretError(f"{field}: environment variable {ref.env} is not set on the connector host")
        return value.strip()
    if source == "file":
        try:
            return Path(ref.file).read_text().strip()
        except OSError as exc:
            raise SecretError(f"{field}: cannot read {ref.file} ({exc.strerror})") from exc
    raise SecretError(f"{field}: no secret reference given")


def jobs_from_yaml(raw: list[dict[str, Any]]) -> list[ExportJob]:
    """The settings' ``exports`` list (API JSON form, each with its ``name``); ValueError naming the
    entry and every bad field."""
    out: list[ExportJob] = []
    for i, entry in enumerate(raw):
        job = ExportJob()
        try:
            json_format.ParseDict(entry, job)
        except json_format.ParseError as exc:
            raise ValueError(f"exports[{i}]: {exc}") from exc
        if not _JOB_RE.match(job.name):
            raise ValueError(f"exports[{i}].name: {job.name!r} must be tenants/{{tenant}}/exports/{{id}}")
        problems = validate_job(job, f"exports[{i}]")
        if not problems and job.dataset.split("/")[1] != job.name.split("/")[1]:
            problems.append(FieldViolation(f"exports[{i}].dataset", "must be a dataset of the job's tenant"))
        if problems:
            raise ValueError("; ".join(f"{v.field}: {v.description}" for v in problems))
        out.append(job)
    return out
