"""``floe tenants|datasets|keys|users|whoami|health``: resource commands on the SDK."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from floe.cli.output import emit, message_json
from floe.client import Client
from floe.v1 import agent_pb2, common_pb2, datasets_pb2, fleet_pb2, health_pb2, keys_pb2, tenants_pb2

__all__ = ["add_resource_commands"]

ROLES = {
    "admin": common_pb2.ROLE_ADMIN,
    "editor": common_pb2.ROLE_EDITOR,
    "viewer": common_pb2.ROLE_VIEWER,
    "agent": common_pb2.ROLE_AGENT,
}
KINDS = {"user": keys_pb2.KEY_KIND_USER, "service": keys_pb2.KEY_KIND_SERVICE}
AGENT_KINDS = {n.removeprefix("AGENT_KIND_").lower(): v for n, v in agent_pb2.AgentKind.items() if v != 0}
SOURCE_TYPES = {n.removeprefix("SOURCE_TYPE_").lower(): v for n, v in datasets_pb2.SourceType.items() if v != 0}


def _role(v: int) -> str:
    return common_pb2.Role.Name(common_pb2.Role.ValueType(v)).removeprefix("ROLE_").lower() if v else ""


def _labels(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise SystemExit(f"--label {p!r}: expected key=value")
        out[k] = v
    return out


TENANT_COLS = [
    ("NAME", lambda t: t.name),
    ("DISPLAY NAME", lambda t: t.display_name),
    ("STATE", lambda t: tenants_pb2.Tenant.State.Name(t.state).removeprefix("STATE_").lower()),
    ("CREATED", lambda t: t.create_time),
]
DATASET_COLS = [
    ("NAME", lambda d: d.name),
    ("SOURCE", lambda d: datasets_pb2.SourceType.Name(d.source.type).removeprefix("SOURCE_TYPE_").lower()),
    ("PORT", lambda d: d.source.port or ""),
    ("HINT", lambda d: d.data_hint),
    (
        "PROXY",
        lambda d: d.proxy.agent or ",".join(f"{k}={v}" for k, v in d.proxy.selector.match_labels.items()),
    ),
    ("ACTIVE", lambda d: "yes" if d.active else "no"),
    ("STEPS", lambda d: len(d.transformations)),
]
KEY_COLS = [
    ("NAME", lambda k: k.name),
    ("PREFIX", lambda k: k.prefix),
    ("KIND", lambda k: keys_pb2.KeyKind.Name(k.kind).removeprefix("KEY_KIND_").lower()),
    ("ROLE", lambda k: _role(k.role)),
    ("TENANT", lambda k: k.tenant),
    ("CREATED", lambda k: k.create_time),
    ("LAST USED", lambda k: k.last_used_time),
    ("REVOKED", lambda k: k.revoke_time),
]
USER_COLS = [
    ("NAME", lambda u: u.name),
    ("DISPLAY NAME", lambda u: u.display_name),
    ("ROLE", lambda u: _role(u.role)),
    ("TENANT", lambda u: u.tenant),
    ("DISABLED", lambda u: "yes" if u.disabled else "no"),
]


def _dataset_from_args(args: argparse.Namespace) -> tuple[datasets_pb2.Dataset, list[str]]:
    """Build a dataset from --file (JSON or YAML in the API's JSON form) and/or flags."""
    ds = datasets_pb2.Dataset()
    paths: list[str] = []
    if args.file:
        text = Path(args.file).read_text()
        data = yaml.safe_load(text) if args.file.endswith((".yaml", ".yml")) else json.loads(text)
        json_format.ParseDict(data, ds)
        paths.extend(json_format.MessageToDict(ds, preserving_proto_field_name=True).keys())
    if args.source_type:
        ds.source.type = SOURCE_TYPES[args.source_type]
        paths.append("source.type")
    if args.port is not None:
        ds.source.port = args.port
        paths.append("source.port")
    if args.bind_host:
        ds.source.bind_host = args.bind_host
        paths.append("source.bind_host")
    for opt in args.option or []:
        k, _, v = opt.partition("=")
        ds.source.options[k] = v
        paths.append("source.options")
    if args.data_hint:
        ds.data_hint = args.data_hint
        paths.append("data_hint")
    if args.proxy:
        ds.proxy.agent = args.proxy
        paths.append("proxy")
    if args.display_name is not None:
        ds.display_name = args.display_name
        paths.append("display_name")
    if args.active is not None:
        ds.active = args.active
        paths.append("active")
    if args.testing is not None:
        ds.testing = args.testing
        paths.append("testing")
    if args.label:
        ds.labels.update(_labels(args.label))
        paths.append("labels")
    return ds, sorted(set(paths))


def run_resource_command(args: argparse.Namespace, client: Client) -> int:
    out = args.output
    group, action = args.group, getattr(args, "action", None)
    if group == "tenants":
        if action == "list":
            emit(client.tenants.list(), TENANT_COLS, out)
        elif action == "get":
            emit(client.tenants.get(args.name), TENANT_COLS, out)
        elif action == "create":
            t = client.tenants.create(
                args.tenant_id,
                display_name=args.display_name or "",
                description=args.description or "",
                labels=_labels(args.label),
            )
            emit(t, TENANT_COLS, out)
        elif action == "update":
            t = tenants_pb2.Tenant(name=f"tenants/{args.name.removeprefix('tenants/')}")
            paths = []
            if args.display_name is not None:
                t.display_name = args.display_name
                paths.append("display_name")
            if args.description is not None:
                t.description = args.description
                paths.append("description")
            if args.state:
                t.state = tenants_pb2.Tenant.State.Value("STATE_" + args.state.upper())
                paths.append("state")
            if args.label:
                t.labels.update(_labels(args.label))
                paths.append("labels")
            if not paths:
                raise SystemExit("Nothing to update: pass --display-name, --description, --state or --label.")
            emit(client.tenants.update(t, paths), TENANT_COLS, out)
        elif action == "delete":
            client.tenants.delete(args.name, force=args.force)
            print(f"Deleted tenants/{args.name.removeprefix('tenants/')}")
    elif group == "datasets":
        if action == "list":
            emit(client.datasets.list(args.tenant or "tenants/-"), DATASET_COLS, out)
        elif action == "get":
            emit(client.datasets.get(args.name), DATASET_COLS, out)
        elif action == "create":
            tenant, _, dataset_id = args.name.removeprefix("tenants/").partition("/")
            dataset_id = dataset_id.removeprefix("datasets/")
            if not dataset_id:
                raise SystemExit("Name the dataset as TENANT/DATASET, e.g. acme/firewall.")
            ds, _ = _dataset_from_args(args)
            if args.active is None:
                ds.active = True
            emit(
                client.datasets.create(tenant, dataset_id, ds, validate_only=args.validate_only),
                DATASET_COLS,
                out,
            )
        elif action == "update":
            ds, paths = _dataset_from_args(args)
            ds.name = args.name
            if not paths:
                raise SystemExit("Nothing to update: pass --file or field flags.")
            emit(client.datasets.update(ds, paths, validate_only=args.validate_only), DATASET_COLS, out)
        elif action == "delete":
            client.datasets.delete(args.name)
            print(f"Deleted {args.name}")
    elif group == "keys":
        if action == "list":
            keys = client.keys.list(
                tenant=args.tenant or "",
                kind=KINDS.get(args.kind or "", keys_pb2.KEY_KIND_UNSPECIFIED),
                show_revoked=args.all,
            )
            emit(keys, KEY_COLS, out)
        elif action == "get":
            emit(client.keys.get(args.name), KEY_COLS, out)
        elif action in ("create", "rotate"):
            if action == "create":
                key, secret = client.keys.create(
                    ROLES[args.role],
                    tenant=args.tenant or "",
                    kind=KINDS.get(args.kind or "", keys_pb2.KEY_KIND_UNSPECIFIED),
                    display_name=args.display_name or "",
                )
            else:
                resp = client.keys.rotate(args.name, grace_seconds=args.grace)
                key, secret = resp.api_key, resp.secret
            if out == "json":
                json.dump({"apiKey": message_json(key), "secret": secret}, sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                emit(key, KEY_COLS, out)
                print(f"\nSecret (shown once, store it now):\n{secret}")
        elif action == "revoke":
            emit(client.keys.revoke(args.name), KEY_COLS, out)
    elif group == "users":
        if action == "list":
            emit(client.users.list(), USER_COLS, out)
        elif action == "get":
            emit(client.users.get(args.name), USER_COLS, out)
        elif action == "create":
            password = args.password or _read_password()
            u = client.users.create(
                args.user_id,
                password,
                role=ROLES[args.role],
                tenant=args.tenant or "",
                display_name=args.display_name or "",
            )
            emit(u, USER_COLS, out)
        elif action == "delete":
            client.users.delete(args.name)
            print(f"Deleted users/{args.name.removeprefix('users/')}")
        elif action == "set-password":
            client.users.set_password(args.name, args.password or _read_password())
            print("Password changed; the user's sessions were ended.")
    elif group == "agents":
        if action == "list":
            emit(
                client.agents.list(AGENT_KINDS.get(args.kind or "", agent_pb2.AGENT_KIND_UNSPECIFIED)), AGENT_COLS, out
            )
        elif action == "get":
            emit(client.agents.get(args.name), AGENT_COLS, out)
        elif action == "watch":
            return _watch_agents(client, args)
        elif action == "dlq":
            items = client.agents.dlq(
                args.name,
                tenant=args.tenant or "",
                dataset=args.dataset or "",
                limit=args.limit,
                wait_seconds=args.wait,
            )
            emit(items, DLQ_COLS, out)
            if out != "json" and items and len(items) == (args.limit or 100):
                print(f"(the oldest {len(items)}; there may be more: --limit up to 1000)", file=sys.stderr)
        elif action == "retry-dlq":
            moved = client.agents.retry_dlq(args.name, args.ids or None, wait_seconds=args.wait)
            scope = f"of the {len(args.ids)} requested " if args.ids else ""
            if out == "json":
                print(json.dumps({"moved": moved}))
            else:
                print(f"Moved {moved} batch(es) {scope}from the DLQ back to the queue.")
        elif action == "command":
            command = agent_pb2.Command()
            if args.verb == "retry-dlq":
                command.retry_dlq.items.extend(args.item or [])
            elif args.verb == "reload":
                command.reload.SetInParent()
            else:
                command.drain.SetInParent()
            result = client.agents.send_command(args.name, command, wait_seconds=args.wait)
            if out == "json":
                json.dump(message_json(result), sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                print(("ok: " if result.ok else "failed: ") + result.message)
                for k, v in sorted(result.details.items()):
                    print(f"  {k}: {v}")
            return 0 if result.ok else 1
    elif group == "whoami":
        me = client.auth.whoami()
        emit(
            me,
            [
                ("PRINCIPAL", lambda m: m.principal),
                ("ROLE", lambda m: _role(m.role)),
                ("TENANT", lambda m: m.tenant),
            ],
            out,
        )
    elif group == "health":
        h = client.health.get()
        emit(
            h,
            [
                (
                    "STATUS",
                    lambda m: health_pb2.HealthStatus.Name(m.status).removeprefix("HEALTH_STATUS_").lower(),
                ),
                ("VERSION", lambda m: m.version),
                ("UPTIME", lambda m: f"{m.uptime.seconds}s"),
                (
                    "CHECKS",
                    lambda m: ", ".join(
                        f"{c.name}={health_pb2.HealthStatus.Name(c.status).removeprefix('HEALTH_STATUS_').lower()}"
                        for c in m.checks
                    ),
                ),
            ],
            out,
        )
    return 0


AGENT_COLS = [
    ("NAME", lambda a: a.name),
    ("KIND", lambda a: agent_pb2.AgentKind.Name(a.kind).removeprefix("AGENT_KIND_").lower()),
    ("STATUS", lambda a: health_pb2.HealthStatus.Name(a.status).removeprefix("HEALTH_STATUS_").lower()),
    ("CONNECTED", lambda a: "yes" if a.connected else "no"),
    ("DRIFT", lambda a: "yes" if a.drift else "no"),
    ("CONFIG", lambda a: "failed" if a.config_failed else "ok"),
    ("VERSION", lambda a: a.version),
    ("API", lambda a: a.api_address),
    ("LAST SEEN", lambda a: a.last_seen_time),
]

DLQ_COLS = [
    ("ID", lambda i: i.id),
    ("DATASET", lambda i: i.dataset),
    ("BYTES", lambda i: i.size_bytes),
    ("RECORDS", lambda i: i.records or ""),
    ("ATTEMPTS", lambda i: i.attempts),
    ("DEAD-LETTERED", lambda i: i.dead_letter_time),
    ("REASON", lambda i: i.reason),
]


def _watch_agents(client: Client, args: argparse.Namespace) -> int:
    """Stream agent changes until Ctrl-C; one line (or JSON object) per event."""
    kind = AGENT_KINDS.get(args.kind or "", agent_pb2.AGENT_KIND_UNSPECIFIED)
    aclient = client._target

    async def follow() -> None:
        async for event in aclient.agents.watch(kind):
            if args.output == "json":
                print(json.dumps(message_json(event)), flush=True)
            else:
                a = event.agent
                kind_name = fleet_event_name(event.type)
                status = health_pb2.HealthStatus.Name(a.status).removeprefix("HEALTH_STATUS_").lower()
                print(f"{kind_name:<9} {a.name:<30} {status:<10} drift={'yes' if a.drift else 'no'}", flush=True)

    try:
        client._loop.run(follow())
    except KeyboardInterrupt:
        return 0
    return 0


def fleet_event_name(value: fleet_pb2.WatchAgentsResponse.EventType.ValueType) -> str:
    return fleet_pb2.WatchAgentsResponse.EventType.Name(value).removeprefix("EVENT_TYPE_").lower()


def _read_password() -> str:
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass("Password: ")


def _dataset_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", help="dataset as JSON or YAML (the API's JSON form)")
    p.add_argument("--source-type", choices=sorted(SOURCE_TYPES))
    p.add_argument("--port", type=int)
    p.add_argument("--bind-host")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="source plugin option")
    p.add_argument("--data-hint")
    p.add_argument("--proxy", help="agent name of the proxy that collects it")
    p.add_argument("--display-name")
    p.add_argument("--active", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--testing", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--label", action="append", metavar="KEY=VALUE")
    p.add_argument("--validate-only", action="store_true", help="check without saving")


def add_resource_commands(sub: Any) -> None:
    # -o/--output is accepted after the command too (`floe tenants list -o json`); SUPPRESS keeps
    # the top-level value unless given here.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=["table", "json"], default=argparse.SUPPRESS)

    def group(name: str, help_text: str) -> Any:
        parser = sub.add_parser(name, help=help_text)
        actions = parser.add_subparsers(dest="action", required=True)
        original = actions.add_parser

        def add_parser(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("parents", []).append(common)
            return original(*args, **kwargs)

        actions.add_parser = add_parser
        return actions

    t = group("tenants", "manage tenants")
    t.add_parser("list", help="list tenants")
    t.add_parser("get").add_argument("name")
    c = t.add_parser("create")
    c.add_argument("tenant_id")
    c.add_argument("--display-name")
    c.add_argument("--description")
    c.add_argument("--label", action="append", metavar="KEY=VALUE")
    u = t.add_parser("update")
    u.add_argument("name")
    u.add_argument("--display-name")
    u.add_argument("--description")
    u.add_argument("--state", choices=["active", "suspended"])
    u.add_argument("--label", action="append", metavar="KEY=VALUE")
    d = t.add_parser("delete")
    d.add_argument("name")
    d.add_argument("--force", action="store_true", help="also delete its datasets, users and keys")

    ds = group("datasets", "manage datasets")
    ds.add_parser("list").add_argument("--tenant", help="tenants/ID (default: every visible tenant)")
    ds.add_parser("get").add_argument("name", help="tenants/T/datasets/D")
    c = ds.add_parser("create")
    c.add_argument("name", help="TENANT/DATASET")
    _dataset_flags(c)
    u = ds.add_parser("update")
    u.add_argument("name", help="tenants/T/datasets/D")
    _dataset_flags(u)
    ds.add_parser("delete").add_argument("name")

    k = group("keys", "manage API keys")
    kl = k.add_parser("list")
    kl.add_argument("--tenant")
    kl.add_argument("--kind", choices=sorted(KINDS))
    kl.add_argument("--all", action="store_true", help="include revoked keys")
    k.add_parser("get").add_argument("name")
    kc = k.add_parser("create")
    kc.add_argument("--role", choices=sorted(ROLES), required=True)
    kc.add_argument("--tenant")
    kc.add_argument("--kind", choices=sorted(KINDS))
    kc.add_argument("--display-name")
    k.add_parser("revoke").add_argument("name")
    kr = k.add_parser("rotate")
    kr.add_argument("name")
    kr.add_argument("--grace", type=float, default=0, help="seconds the old key stays valid")

    us = group("users", "manage users")
    us.add_parser("list")
    us.add_parser("get").add_argument("name")
    uc = us.add_parser("create")
    uc.add_argument("user_id")
    uc.add_argument("--role", choices=["admin", "editor", "viewer"], required=True)
    uc.add_argument("--tenant")
    uc.add_argument("--display-name")
    uc.add_argument("--password", help="read from stdin/prompt when omitted")
    us.add_parser("delete").add_argument("name")
    sp = us.add_parser("set-password")
    sp.add_argument("name")
    sp.add_argument("--password")

    ag = group("agents", "the agent fleet")
    al = ag.add_parser("list")
    al.add_argument("--kind", choices=sorted(AGENT_KINDS))
    ag.add_parser("get").add_argument("name", help="agents/NAME or NAME")
    aw = ag.add_parser("watch", help="print agents as they change (Ctrl-C to stop)")
    aw.add_argument("--kind", choices=sorted(AGENT_KINDS))
    dl = ag.add_parser("dlq", help="list an agent's dead-lettered batches, oldest first")
    dl.add_argument("name", help="agents/NAME or NAME (a proxy, receiver or connector)")
    dl.add_argument("--tenant", help="only this tenant's batches")
    dl.add_argument("--dataset", help="only this dataset's batches (ID or tenants/T/datasets/D)")
    dl.add_argument("--limit", type=int, default=0, help="at most this many (default 100, at most 1000)")
    dl.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the agent's answer")
    dr = ag.add_parser("retry-dlq", help="move dead-lettered batches back to the agent's queue")
    dr.add_argument("name", help="agents/NAME or NAME")
    dr.add_argument("ids", nargs="*", metavar="ID", help="batch ids from 'floe agents dlq' (default: every batch)")
    dr.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the agent's answer")
    ac = ag.add_parser("command", help="send a command and print its result")
    ac.add_argument("name")
    ac.add_argument("verb", metavar="COMMAND", choices=["retry-dlq", "reload", "drain"])
    ac.add_argument("--item", action="append", help="retry-dlq: only these DLQ items")
    ac.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the result")

    sub.add_parser("whoami", help="show the caller's identity", parents=[common])
    sub.add_parser("health", help="control-plane health", parents=[common])
