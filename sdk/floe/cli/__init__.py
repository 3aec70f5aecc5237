"""The ``floe`` command: run Floe (``up``, ``control-plane``) and manage it over the SDK."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from floe.cli.exports import add_export_commands
from floe.cli.query import add_query_command
from floe.cli.resources import add_resource_commands, run_resource_command
from floe.client import DEFAULT_TARGET, Client
from floe.errors import RpcError

__all__ = ["main"]

RESOURCE_GROUPS = {"tenants", "datasets", "keys", "users", "whoami", "health", "agents"}


def _default_key(data_dir: Path) -> str | None:
    path = data_dir / "admin.key"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def build_parser() -> argparse.ArgumentParser:
    from control_plane.config import ControlPlaneSettings
    from floe.settings import add_arguments

    parser = argparse.ArgumentParser(prog="floe", description="Floe telemetry pipeline")
    parser.add_argument(
        "--target",
        default=os.environ.get("FLOE_CONTROL_URL", DEFAULT_TARGET),
        help="control plane gRPC address [env FLOE_CONTROL_URL]",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FLOE_API_KEY"),
        help="API key or access token [env FLOE_API_KEY; default: <data-dir>/admin.key]",
    )
    parser.add_argument(
        "--ca-file", default=os.environ.get("FLOE_CA_FILE"), help="CA bundle for TLS [env FLOE_CA_FILE]"
    )
    parser.add_argument(
        "--cert-file",
        default=os.environ.get("FLOE_CERT_FILE"),
        help="client certificate, mutual TLS [env FLOE_CERT_FILE]",
    )
    parser.add_argument(
        "--key-file", default=os.environ.get("FLOE_KEY_FILE"), help="client private key, mutual TLS [env FLOE_KEY_FILE]"
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    sub = parser.add_subparsers(dest="group", required=True)

    up = sub.add_parser("up", help="run every Floe component with embedded defaults")
    up.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FLOE_DATA_DIR", "floe-data")))
    up.add_argument("--grpc-listen", default=None)
    up.add_argument("--http-listen", default=None)
    up.add_argument("--log-level", default=None)

    cp = sub.add_parser("control-plane", help="run the control plane")
    cp.add_argument("--config", type=Path, default=None, help="YAML settings file [env FLOE_CONFIG]")
    add_arguments(cp, ControlPlaneSettings)

    from agents.runtime.settings import KINDS, AgentSettings

    ag = sub.add_parser("agent", help="run one agent (proxy, receiver, piper, packer, query, connector)")
    ag.add_argument("kind", choices=KINDS)
    ag.add_argument("--config", type=Path, default=None, help="YAML settings file [env FLOE_CONFIG]")
    add_arguments(ag, AgentSettings)

    add_resource_commands(sub)
    add_export_commands(sub)
    add_query_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group == "up":
        from floe.cli.up import run_up

        return run_up(args)
    if args.group == "control-plane":
        return _run_control_plane(args)
    if args.group == "agent":
        return _run_agent(args)
    data_dir = Path(os.environ.get("FLOE_DATA_DIR", "floe-data"))
    key = args.api_key or _default_key(data_dir)
    if not key:
        print(
            "No credential: pass --api-key or set FLOE_API_KEY "
            f"(or run from the directory holding {data_dir}/admin.key).",
            file=sys.stderr,
        )
        return 2
    try:
        with Client(
            args.target,
            api_key=key,
            timeout=args.timeout,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            # One query per process: a grant and a second connection would cost more than they save.
            direct_queries=False,
        ) as client:
            return getattr(args, "run_with_client", run_resource_command)(args, client)
    except RpcError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 1


def _run_agent(args: argparse.Namespace) -> int:
    from agents.main import run_agent
    from agents.runtime.settings import AgentSettings
    from floe.aio import run
    from floe.logs import setup_logging
    from floe.settings import ConfigError, load_settings

    config = args.config or (Path(os.environ["FLOE_CONFIG"]) if os.environ.get("FLOE_CONFIG") else None)
    try:
        settings = load_settings(AgentSettings, config_file=config, flags=vars(args))
        if settings.config_mode != "local-only":
            settings.read_api_key()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        run(run_agent(args.kind, settings))
    except (OSError, ValueError) as exc:
        print(f"Agent failed to start: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_control_plane(args: argparse.Namespace) -> int:
    from control_plane.config import ControlPlaneSettings
    from control_plane.server import run_forever
    from floe.aio import run
    from floe.logs import setup_logging
    from floe.settings import ConfigError, load_settings

    config = args.config or (Path(os.environ["FLOE_CONFIG"]) if os.environ.get("FLOE_CONFIG") else None)
    try:
        settings = load_settings(ControlPlaneSettings, config_file=config, flags=vars(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        run(run_forever(settings))
    except OSError as exc:
        print(f"Control plane failed to start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
