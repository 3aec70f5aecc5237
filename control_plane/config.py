"""Control-plane settings. Precedence: CLI flag > ``FLOE_*`` env > YAML file > default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.query.forwarding import MAX_GRANT_SECONDS
from floe.settings import ConfigError, parse_host_port, setting

__all__ = ["LOG_LEVELS", "ControlPlaneSettings"]

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ControlPlaneSettings:
    """Every setting of ``floe control-plane``."""

    data_dir: Path = setting(Path("floe-data"), "Directory for the database, keys and admin.key.")
    grpc_listen: str = setting("127.0.0.1:9090", "gRPC address (host:port; port 0 picks one).", kind="host_port")
    http_listen: str = setting(
        "127.0.0.1:9091", "HTTP address for health probes, metrics and the dashboard.", kind="host_port"
    )
    store_url: str = setting(
        "sqlite:///control-plane.db",
        "State store; sqlite:///FILE is relative to data_dir, sqlite:////ABS absolute.",
    )
    jwt_key_file: Path | None = setting(
        None,
        "Ed25519 PEM signing key for access tokens; default data_dir/jwt-signing.pem (created if missing).",
    )
    access_token_ttl: float = setting(900.0, "Lifetime of access tokens (JWT).", kind="duration")
    refresh_token_ttl: float = setting(7 * 86400.0, "Lifetime of refresh tokens (sign-in sessions).", kind="duration")
    auth_failure_burst: int = setting(20, "Failed authentications allowed at once per client address.")
    auth_failure_rate: float = setting(1.0, "Failed authentications refilled per second per client address.")
    lease_retention: float = setting(
        7 * 86400.0,
        "How long finished work leases are kept (a raw object uploaded again within it is not processed "
        "twice); 0 keeps them forever.",
        kind="duration",
    )
    housekeeping_interval: float = setting(
        3600.0, "How often old leases and ended sign-in sessions are deleted from the store.", kind="duration"
    )
    key_recheck_interval: float = setting(
        5.0,
        "How often a cached API key is re-read from the store (revocation on other replicas).",
        kind="duration",
    )
    drain_timeout: float = setting(30.0, "On SIGTERM, how long in-flight calls may finish.", kind="duration")
    max_message_bytes: int = setting(4 * 1024 * 1024, "Largest gRPC message accepted or sent.")
    agent_heartbeat_interval: float = setting(
        10.0, "How often agents must send a heartbeat; offline after three missed.", kind="duration"
    )
    agent_health_interval: float = setting(10.0, "How often agents send health reports.", kind="duration")
    agent_connect_burst: int = setting(2000, "Agent streams that may connect at once before throttling.")
    agent_connect_rate: float = setting(500.0, "Agent connects allowed per second after the burst.")
    tls_cert_file: Path | None = setting(None, "PEM certificate (chain) for TLS on the gRPC and HTTP ports.")
    tls_key_file: Path | None = setting(None, "PEM private key of tls_cert_file.", secret=True)
    tls_client_ca_file: Path | None = setting(
        None,
        "Mutual TLS: every gRPC client (agents, SDK, CLI) must present a certificate signed by this CA.",
    )
    query_ca_file: Path | None = setting(
        None, "CA bundle to verify query agents that serve TLS (listen_tls_cert_file); default the system's CAs."
    )
    query_grant_ttl: float = setting(
        300.0,
        "Lifetime of query grants, which let SDK clients send a dataset's queries straight to a query agent "
        "(its query port must be reachable from them); a grant outlives a revoked key by at most this. "
        "0 issues none: every query goes through the control plane. At most 1h.",
        kind="duration",
    )
    web_dir: Path | None = setting(
        None,
        "Built dashboard served at / on the HTTP port; default web/dist beside the control_plane package.",
    )
    log_level: str = setting("info", "debug, info, warning or error.")
    log_format: str = setting("auto", "auto (JSON unless a terminal), json or text.")

    def __post_init__(self) -> None:
        # Collect every problem so one run of the process reports them all.
        problems: list[str] = []
        for name in ("grpc_listen", "http_listen"):
            try:
                parse_host_port(getattr(self, name))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        if self.log_level.lower() not in LOG_LEVELS:
            problems.append(f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in ("auto", "json", "text"):
            problems.append(f"log_format: {self.log_format!r} is not auto, json or text")
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "key_recheck_interval",
            "agent_heartbeat_interval",
            "agent_health_interval",
            "agent_connect_rate",
            "housekeeping_interval",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be greater than zero")
        if not 0 <= self.query_grant_ttl <= MAX_GRANT_SECONDS:
            problems.append(f"query_grant_ttl: must be between 0 (no grants) and {MAX_GRANT_SECONDS}s")
        if self.lease_retention < 0:
            problems.append("lease_retention: must be >= 0 (0 keeps finished leases forever)")
        if self.auth_failure_burst < 1 or self.auth_failure_rate <= 0:
            problems.append("auth_failure_burst / auth_failure_rate: must be positive")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append("tls_cert_file / tls_key_file: set both to enable TLS, or neither")
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file", "query_ca_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(f"{name}: {path} is not a readable file")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            problems.append("tls_client_ca_file: needs tls_cert_file and tls_key_file (mutual TLS runs over TLS)")
        if self.max_message_bytes < 64 * 1024:
            problems.append("max_message_bytes: must be at least 65536")
        if problems:
            raise ConfigError(problems)

    @property
    def signing_key_path(self) -> Path:
        return self.jwt_key_file or self.data_dir / "jwt-signing.pem"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"
