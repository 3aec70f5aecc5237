"""The query role: the engine over the Parquet store and its gRPC port, wired to the agent runtime.

It follows the ``datasets`` config (only listed datasets are served) and advertises its gRPC
address (``query_advertise``, see ``agents/runtime/tls.py``), whether it serves TLS, and its
forwarding secret to the control plane in the hello (``endpoints``), so the control plane can
forward ``QueryService`` calls to it. Health component ``query``: queries (events_in),
rows returned (events_out), Parquet bytes scanned (bytes_in), failures (errors), refusals by
reason (dropped).
"""

from __future__ import annotations

import logging

import grpc

from agents.query.engine import Engine
from agents.query.forwarding import Verifier, new_secret
from agents.query.llm import QuestionWriter
from agents.query.server import QueryServicer, start_server
from agents.query.session import Limits
from agents.runtime.health import HealthBoard
from agents.runtime.objectstore import ObjectStore, open_object_store
from agents.runtime.settings import AgentSettings
from agents.runtime.subscriber import SubscriberRole
from agents.runtime.tls import advertised_address, grpc_server_credentials
from floe.v1 import agent_pb2

__all__ = ["QueryRole", "limits_from"]

log = logging.getLogger(__name__)


def limits_from(s: AgentSettings) -> Limits:
    return Limits(
        max_time_range=s.query_max_time_range,
        max_rows=s.query_max_rows,
        allow_order_by=s.query_allow_order_by,
        statement_timeout=s.query_statement_timeout,
        memory_limit=s.query_memory_limit.replace(" ", ""),
        threads=s.query_threads,
        max_concurrent=s.query_max_concurrent,
    )


class QueryRole(SubscriberRole):
    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(agent_pb2.AGENT_KIND_QUERY)
        self.settings = settings
        self._secret = new_secret()
        self.store: ObjectStore | None = None
        self.engine: Engine | None = None
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self, health: HealthBoard) -> None:
        await super().start(health)
        s = self.settings
        self.store = await open_object_store(s.store_url("parquet"))
        writer = None
        if s.llm_base_url:
            writer = QuestionWriter(s.llm_base_url, s.llm_model, s.llm_api_key, s.llm_timeout)
        spill = s.data_dir / s.name_for("query") / "query-spill"
        self.engine = Engine(self.store, limits_from(s), spill, writer, health.component("query", "query"))
        servicer = QueryServicer(
            self.engine, Verifier(self._secret), lambda: {ds.name for ds in self.datasets}, writer is not None
        )
        try:
            self.server, self.address = await start_server(servicer, s.query_grpc_listen, grpc_server_credentials(s))
        except BaseException:
            await self.engine.close()
            await self.store.close()
            raise
        log.info(
            "Query service started",
            extra={"grpc": self.address, "store": repr(self.store), "questions": writer is not None},
        )

    def endpoints(self) -> dict[str, str]:
        """Sent in the hello: where the control plane forwards to (over TLS when ``query_tls``)
        and the secret it signs with."""
        if not self.address:
            return {}
        s = self.settings
        out = {
            "query_grpc": advertised_address(self.address, s.query_advertise, s.control_url),
            "query_auth": self._secret,
        }
        if s.listen_tls_cert_file is not None:
            out["query_tls"] = "1"
        return out

    def addresses(self) -> dict[str, str]:
        """Extra listening addresses for ``agent.json`` (never the secret)."""
        return {"query_grpc": self.address} if self.address else {}

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(5.0)
            self.server = None
        if self.engine is not None:
            await self.engine.close()
        if self.store is not None:
            await self.store.close()
