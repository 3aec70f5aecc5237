"""``floe exports create|list|get|delete``: export jobs on the SDK.

``create`` takes the job from ``--file`` (YAML or JSON, the API's JSON form) and/or flags for the
common cases; flags win over the file. Credentials are referenced, never passed: ``--es-api-key-env
ES_KEY`` names a variable on the connector host.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from floe.cli.output import emit
from floe.client import Client
from floe.v1 import exports_pb2

__all__ = ["add_export_commands", "run_export_command"]

EXPORT_COLS = [
    ("NAME", lambda j: j.name),
    ("DATASET", lambda j: j.dataset),
    ("MODE", lambda j: exports_pb2.ExportMode.Name(j.mode).removeprefix("EXPORT_MODE_").lower()),
    ("DESTINATION", lambda j: j.destination.WhichOneof("kind") or ""),
    ("CONNECTOR", lambda j: j.connector or "(any)"),
    ("PAUSED", lambda j: "yes" if j.paused else "no"),
    ("CREATED", lambda j: j.create_time),
]


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if m is None:
        raise SystemExit(f"{text!r} is not a duration such as 30s, 5m or 1h")
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m[2]]


def _job_from_args(args: argparse.Namespace) -> exports_pb2.ExportJob:
    job = exports_pb2.ExportJob()
    if args.file:
        doc = yaml.safe_load(Path(args.file).read_text())
        json_format.ParseDict(doc or {}, job)
    if args.dataset:
        job.dataset = args.dataset if args.dataset.startswith("tenants/") else _dataset_name(args.dataset)
    if args.query is not None:
        job.query = args.query
    if args.mode:
        job.mode = exports_pb2.EXPORT_MODE_WATCH if args.mode == "watch" else exports_pb2.EXPORT_MODE_BATCH
    if args.interval:
        job.interval.FromNanoseconds(int(_duration(args.interval) * 1e9))
    if args.batch_size:
        job.batch_size = args.batch_size
    if args.connector:
        job.connector = args.connector
    if args.stdout:
        job.destination.stdout.SetInParent()
    if args.es_url:
        es = job.destination.elasticsearch
        es.url, es.index = args.es_url, args.es_index or ""
        if args.es_api_key_env:
            es.api_key.env = args.es_api_key_env
    if args.hec_url:
        hec = job.destination.splunk_hec
        hec.url = args.hec_url
        if args.hec_token_env:
            hec.token.env = args.hec_token_env
        hec.index, hec.sourcetype, hec.use_acks = args.hec_index or "", args.hec_sourcetype or "", args.hec_acks
    if args.webhook_url:
        hook = job.destination.webhook
        hook.url = args.webhook_url
        hook.gzip = args.webhook_gzip
        if args.webhook_json_array:
            hook.format = exports_pb2.WEBHOOK_FORMAT_JSON_ARRAY
    return job


def _dataset_name(short: str) -> str:
    tenant, sep, dataset = short.partition("/")
    if not sep:
        raise SystemExit(f"--dataset {short!r}: use TENANT/DATASET or tenants/T/datasets/D")
    return f"tenants/{tenant}/datasets/{dataset}"


def _export_name(value: str) -> str:
    if value.startswith("tenants/"):
        return value
    tenant, sep, export = value.partition("/")
    if not sep:
        raise SystemExit(f"{value!r}: use TENANT/EXPORT or tenants/T/exports/E")
    return f"tenants/{tenant}/exports/{export}"


def run_export_command(args: argparse.Namespace, client: Client) -> int:
    out = args.output
    if args.action == "list":
        emit(client.exports.list(args.tenant or "tenants/-"), EXPORT_COLS, out)
    elif args.action == "get":
        emit(client.exports.get(_export_name(args.name)), EXPORT_COLS, out)
    elif args.action == "create":
        name = _export_name(args.name)
        parent, _, export_id = name.rpartition("/exports/")
        job = _job_from_args(args)
        emit(client.exports.create(parent, export_id, job, validate_only=args.validate_only), EXPORT_COLS, out)
    elif args.action == "delete":
        client.exports.delete(_export_name(args.name))
        print(f"Deleted {_export_name(args.name)}.")
    return 0


def add_export_commands(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=["table", "json"], default=argparse.SUPPRESS)
    parser = sub.add_parser("exports", help="manage export jobs (connector)")
    parser.set_defaults(run_with_client=run_export_command)
    actions = parser.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", parents=[common], help="list export jobs")
    ls.add_argument("--tenant", help="tenants/T (default: every visible tenant)")
    actions.add_parser("get", parents=[common]).add_argument("name", help="TENANT/EXPORT or tenants/T/exports/E")
    actions.add_parser("delete", parents=[common]).add_argument("name", help="TENANT/EXPORT or tenants/T/exports/E")
    c = actions.add_parser("create", parents=[common], help="create an export job")
    c.add_argument("name", help="TENANT/EXPORT or tenants/T/exports/E")
    c.add_argument("--file", help="the job as YAML or JSON (the API's JSON form)")
    c.add_argument("--dataset", help="TENANT/DATASET or tenants/T/datasets/D")
    c.add_argument("--query", help="SELECT ... FROM <dataset id> ..., or a condition")
    c.add_argument("--mode", choices=["batch", "watch"])
    c.add_argument("--interval", help="watch interval, e.g. 30s")
    c.add_argument("--batch-size", type=int)
    c.add_argument("--connector", help="agent name of the connector that runs it (default: any)")
    c.add_argument("--stdout", action="store_true", help="destination: the connector's stdout")
    c.add_argument("--es-url", help="destination: Elasticsearch base URL")
    c.add_argument("--es-index")
    c.add_argument("--es-api-key-env", help="env variable on the connector host holding the API key")
    c.add_argument("--hec-url", help="destination: Splunk HEC base URL")
    c.add_argument("--hec-token-env", help="env variable on the connector host holding the HEC token")
    c.add_argument("--hec-index")
    c.add_argument("--hec-sourcetype")
    c.add_argument("--hec-acks", action="store_true")
    c.add_argument("--webhook-url", help="destination: a webhook URL")
    c.add_argument("--webhook-gzip", action="store_true")
    c.add_argument("--webhook-json-array", action="store_true")
    c.add_argument("--validate-only", action="store_true", help="check without saving")
