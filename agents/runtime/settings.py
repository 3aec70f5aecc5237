"""Agent settings, loaded like every Floe process: defaults < YAML < ``FLOE_*`` env < flags."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floe.settings import ConfigError, parse_host_port, setting

__all__ = ["DEFAULT_API_PORTS", "KINDS", "AgentSettings", "default_agent_name"]

KINDS = ("proxy", "receiver", "piper", "packer", "query", "connector")
#: The API port of each role (design.md).
DEFAULT_API_PORTS = {"proxy": 8008, "receiver": 8081, "piper": 8082, "packer": 8083, "query": 8000, "connector": 8090}
MODES = ("control-only", "local-only", "hybrid")


def default_agent_name(kind: str) -> str:
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "host"
    return f"{kind}-{host}"[:63].rstrip("-")


@dataclass(frozen=True)
class AgentSettings:
    """Settings of ``floe agent KIND``."""

    agent_name: str = setting("", "Name the control plane knows this agent by; default KIND-HOSTNAME.")
    labels: dict[str, str] = setting({}, "Labels for dataset selectors, e.g. site=paris,zone=dmz.")
    config_mode: str = setting("control-only", "control-only, local-only (no control plane) or hybrid.")
    control_url: str = setting("127.0.0.1:9090", "Control plane gRPC address.")
    api_key: str = setting("", "Agent API key (ROLE_AGENT); prefer api_key_file.", secret=True)
    api_key_file: Path | None = setting(None, "File holding the agent API key.")
    ca_file: Path | None = setting(None, "CA bundle to verify the control plane's TLS certificate (enables TLS).")
    tls_cert_file: Path | None = setting(None, "Client certificate for mutual TLS with the control plane.")
    tls_key_file: Path | None = setting(None, "Private key of tls_cert_file.", secret=True)
    data_dir: Path = setting(Path("floe-data/agents"), "Root for this agent's state; the agent uses DATA_DIR/NAME.")
    api_listen: str = setting("", "HTTP API address; default 127.0.0.1:<the role's port>.")
    listen_tls_cert_file: Path | None = setting(
        None,
        "PEM certificate (chain): this agent's own listeners serve TLS (the API port, a receiver's ingest "
        "port, a query agent's gRPC port).",
    )
    listen_tls_key_file: Path | None = setting(None, "PEM private key of listen_tls_cert_file.", secret=True)
    reconnect_max: float = setting(30.0, "Longest wait between reconnect attempts.", kind="duration")
    datasets: list[dict[str, Any]] = setting(
        [], "Local datasets (local-only and hybrid modes), in the API's JSON form.", kind="raw"
    )
    # -- proxy ------------------------------------------------------------------------------
    receivers: list[str] = setting(
        ["http://127.0.0.1:8080"], "proxy: receiver base URLs, used round-robin with health-based failover."
    )
    ingest_key: str = setting("", "proxy: bearer key for receivers; default the agent's own key.", secret=True)
    receiver_ca_file: Path | None = setting(
        None, "proxy: CA bundle to verify https:// receivers' certificates; default the system's CAs."
    )
    batch_max_bytes: int = setting(4 << 20, "proxy: flush a dataset's batch at this many uncompressed bytes.")
    batch_max_records: int = setting(100_000, "proxy: flush a dataset's batch at this many records.")
    batch_max_age: float = setting(
        1.0, "proxy: flush a dataset's batch this long after its first record.", kind="duration"
    )
    compression: str = setting("zstd", "proxy: batch compression, zstd or gzip.")
    forward_timeout: float = setting(30.0, "proxy: timeout of one POST to a receiver.", kind="duration")
    # -- spool (proxy and receiver) -----------------------------------------------------------
    spool_max_bytes: int = setting(1 << 30, "Disk spool limit for queued and retrying batches (0: unlimited).")
    dlq_max_bytes: int = setting(10 << 30, "DLQ hard limit; oldest batches evicted first (0: unlimited).")
    retry_attempts: int = setting(5, "Delivery attempts before a batch goes to the DLQ.")
    retry_interval: float = setting(
        60.0, "Longest wait between delivery attempts (backoff grows to it).", kind="duration"
    )
    spool_max_age: float = setting(
        0.0, "Move undelivered batches older than this to the DLQ (0: never).", kind="duration"
    )
    cleanup_interval: float = setting(300.0, "How often the DLQ limit and max age are enforced.", kind="duration")
    # -- receiver ---------------------------------------------------------------------------
    webhook_listen: str = setting(
        "0.0.0.0:8080", "receiver: ingest address (POST /{tenant}/{dataset}).", kind="host_port"
    )
    object_store: str = setting(
        "",
        "receiver/piper: intake store, a directory or s3://bucket/prefix?endpoint=URL; DATA_DIR/objects/intake.",
    )
    max_body_bytes: int = setting(64 << 20, "receiver: largest accepted request body (compressed), bytes.")
    ack: str = setting("disk", "receiver: acknowledge after the disk spool (disk) or on receipt (memory).")
    upload_concurrency: int = setting(8, "receiver: batches uploaded to the object store at once.")
    # -- piper and packer -------------------------------------------------------------------
    processed_store: str = setting("", "piper/packer: store of processed batches; default DATA_DIR/objects/processed.")
    parquet_store: str = setting("", "packer/query: store of the Parquet files; default DATA_DIR/objects/parquet.")
    hash_salt: str = setting(
        "", "piper: secret mixed into hash_field digests (with the dataset name); the same on every piper.", secret=True
    )
    poll_interval: float = setting(2.0, "piper/packer: how often to look for new work.", kind="duration")
    lease_ttl: float = setting(120.0, "piper/packer: work lease length; renewed while working.", kind="duration")
    parquet_target_bytes: int = setting(128 << 20, "packer: write a partition's file once this much is waiting.")
    parquet_max_age: float = setting(
        60.0, "packer: write a partition's file once its oldest input is this old.", kind="duration"
    )
    # -- query ----------------------------------------------------------------------------
    query_grpc_listen: str = setting(
        "127.0.0.1:8001", "query: QueryService gRPC address (the control plane forwards to it).", kind="host_port"
    )
    query_advertise: str = setting(
        "",
        "query: host:port the control plane dials; default query_grpc_listen's, an unspecified host (0.0.0.0, "
        "::) replaced by this host's address toward the control plane.",
    )
    query_max_time_range: float = setting(
        720 * 3600.0,
        "query: widest time range of one query; also the default look-back (0: unlimited).",
        kind="duration",
    )
    query_max_rows: int = setting(10_000, "query: results are cut at this many rows (the summary says so).")
    query_allow_order_by: bool = setting(True, "query: whether ORDER BY is allowed (sorting costs memory).")
    query_statement_timeout: float = setting(
        60.0, "query: a statement running longer is interrupted (RESOURCE_EXHAUSTED).", kind="duration"
    )
    query_memory_limit: str = setting("1GiB", "query: DuckDB memory_limit of each query, e.g. 512MiB or 2GB.")
    query_threads: int = setting(2, "query: DuckDB threads of each query.")
    query_max_concurrent: int = setting(4, "query: queries run at once; more wait their turn.")
    llm_base_url: str = setting(
        "", "query: OpenAI-compatible API base URL for questions, e.g. http://127.0.0.1:11434/v1 (empty: off)."
    )
    llm_model: str = setting("", "query: model name sent to the LLM provider.")
    llm_api_key: str = setting("", "query: bearer key of the LLM provider.", secret=True)
    llm_timeout: float = setting(60.0, "query: timeout of one LLM request.", kind="duration")
    # -- connector --------------------------------------------------------------------------
    exports: list[dict[str, Any]] = setting(
        [],
        "connector: local export jobs (local-only and hybrid modes), in the API's JSON form, each with its name.",
        kind="raw",
    )
    log_level: str = setting("info", "debug, info, warning or error.")
    log_format: str = setting("auto", "auto (JSON unless a terminal), json or text.")

    def __post_init__(self) -> None:
        problems = []
        if self.config_mode not in MODES:
            problems.append(f"config_mode: {self.config_mode!r} is not one of {', '.join(MODES)}")
        if self.agent_name and not re.fullmatch(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", self.agent_name):
            problems.append(f"agent_name: {self.agent_name!r} must be 2-63 lowercase letters, digits or '-'")
        for name in ("api_listen", "query_advertise"):  # optional addresses
            if getattr(self, name):
                try:
                    parse_host_port(getattr(self, name))
                except ValueError as exc:
                    problems.append(f"{name}: {exc}")
        if self.config_mode != "local-only" and not (self.api_key or self.api_key_file):
            problems.append("api_key / api_key_file: an agent key is required unless config_mode is local-only")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            problems.append("tls_cert_file / tls_key_file: set both for mutual TLS, or neither")
        if (self.listen_tls_cert_file is None) != (self.listen_tls_key_file is None):
            problems.append("listen_tls_cert_file / listen_tls_key_file: set both to serve TLS, or neither")
        for name in ("listen_tls_cert_file", "listen_tls_key_file", "receiver_ca_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(f"{name}: {path} is not a readable file")
        if self.compression not in ("zstd", "gzip"):
            problems.append(f"compression: {self.compression!r} must be zstd or gzip")
        if self.ack not in ("disk", "memory"):
            problems.append(f"ack: {self.ack!r} must be disk or memory")
        bad_urls = [u for u in self.receivers if not re.match(r"^https?://[^/]+", u)]
        if bad_urls:
            problems.append(f"receivers: {', '.join(map(repr, bad_urls))} must be http:// or https:// URLs")
        for name in (
            "batch_max_bytes",
            "batch_max_records",
            "retry_attempts",
            "max_body_bytes",
            "upload_concurrency",
            "parquet_target_bytes",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1")
        for name in ("spool_max_bytes", "dlq_max_bytes"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0 (0 means unlimited)")
        if self.batch_max_age <= 0:
            problems.append("batch_max_age: must be greater than 0")
        problems += self._query_problems()
        if not isinstance(self.datasets, list) or not all(isinstance(d, dict) for d in self.datasets):
            problems.append("datasets: must be a list of datasets (mappings)")
        if not isinstance(self.exports, list) or not all(isinstance(d, dict) for d in self.exports):
            problems.append("exports: must be a list of export jobs (mappings)")
        if problems:
            raise ConfigError(problems)

    def _query_problems(self) -> list[str]:
        problems = []
        try:
            parse_host_port(self.query_grpc_listen)
        except ValueError as exc:
            problems.append(f"query_grpc_listen: {exc}")
        for name in ("query_max_rows", "query_threads", "query_max_concurrent"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1")
        if self.query_statement_timeout <= 0:
            problems.append("query_statement_timeout: must be greater than 0")
        if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", self.query_memory_limit):
            problems.append(f"query_memory_limit: {self.query_memory_limit!r} is not a size such as 512MiB or 2GB")
        if self.llm_base_url and not re.match(r"^https?://[^/]+", self.llm_base_url):
            problems.append(f"llm_base_url: {self.llm_base_url!r} must be an http:// or https:// URL")
        if self.llm_base_url and not self.llm_model:
            problems.append("llm_model: required when llm_base_url is set")
        return problems

    def name_for(self, kind: str) -> str:
        return self.agent_name or default_agent_name(kind)

    def api_address(self, kind: str) -> tuple[str, int]:
        return parse_host_port(self.api_listen) if self.api_listen else ("127.0.0.1", DEFAULT_API_PORTS[kind])

    def store_url(self, which: str) -> str:
        """The configured store for ``intake`` (``object_store``), ``processed`` or ``parquet``,
        or its embedded default: one directory per store under ``DATA_DIR/objects``, shared by
        every agent on the host."""
        configured = {"intake": self.object_store, "processed": self.processed_store, "parquet": self.parquet_store}
        return configured[which] or str(self.data_dir / "objects" / which)

    def read_api_key(self) -> str:
        if self.api_key:
            return self.api_key
        assert self.api_key_file is not None
        try:
            return self.api_key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError([f"api_key_file: cannot read {self.api_key_file} ({exc.strerror})"]) from exc
