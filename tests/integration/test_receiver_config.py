"""What a receiver learns over the control stream: the tenant/dataset table and the ingest
credentials (public prefix + argon2 hash), kept current as keys are created and revoked."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from argon2 import PasswordHasher

from floe import AsyncClient
from floe.v1 import agent_pb2, agent_pb2_grpc, common_pb2, datasets_pb2, keys_pb2
from tests.helpers import ControlPlaneProcess


async def _updates(cp: ControlPlaneProcess, agent_key: str, name: str) -> AsyncGenerator[agent_pb2.ConfigUpdate, None]:
    """Connect as a receiver, ack every update, and yield them."""
    outbound: asyncio.Queue[agent_pb2.ConnectRequest] = asyncio.Queue()
    seq = 0

    def send(msg: agent_pb2.ConnectRequest) -> None:
        nonlocal seq
        seq += 1
        msg.sequence = seq
        outbound.put_nowait(msg)

    async def requests() -> AsyncIterator[agent_pb2.ConnectRequest]:
        while True:
            yield await outbound.get()

    hello = agent_pb2.AgentHello(
        kind=agent_pb2.AGENT_KIND_RECEIVER, agent_name=name, instance_id=secrets.token_hex(4), version="test"
    )
    send(agent_pb2.ConnectRequest(hello=hello))
    async with AsyncClient(cp.grpc, api_key=agent_key) as client:
        call = agent_pb2_grpc.AgentServiceStub(client.channel).Connect(requests(), metadata=client.metadata)
        async for msg in call:
            if msg.WhichOneof("message") == "config_update":
                u = msg.config_update
                ack = agent_pb2.ConfigAck(
                    config_type=u.config_type, version=u.version, nonce=u.nonce, status=agent_pb2.CONFIG_STATUS_APPLIED
                )
                send(agent_pb2.ConnectRequest(config_ack=ack))
                yield u


def test_receiver_gets_tenants_and_ingest_credentials(start_control_plane: Callable[..., ControlPlaneProcess]) -> None:
    cp = start_control_plane()

    async def scenario() -> None:
        async with AsyncClient(cp.grpc, api_key=cp.admin_key) as admin:
            await admin.tenants.create("acme")
            await admin.tenants.create("globex")
            ds = datasets_pb2.Dataset(source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_HTTP, port=8443))
            await admin.datasets.create("acme", "web", ds)
            _, agent_secret = await admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
            editor, editor_secret = await admin.keys.create(common_pb2.ROLE_EDITOR, tenant="acme")
            viewer, _ = await admin.keys.create(common_pb2.ROLE_VIEWER, tenant="acme")

            stream = _updates(cp, agent_secret, "recv-1")
            first = await asyncio.wait_for(anext(stream), 10)
            assert first.config_type == "tenants"
            routes = {t.tenant: t for t in first.tenants.tenants}
            assert set(routes) == {"tenants/acme", "tenants/globex"}
            assert [d.dataset for d in routes["tenants/acme"].datasets] == ["tenants/acme/datasets/web"]
            creds = {c.key: c for c in first.tenants.credentials}
            assert viewer.name not in creds  # viewers cannot write
            cred = creds[editor.name]
            assert cred.prefix == editor.prefix and cred.tenant == "tenants/acme"
            # The hash verifies the secret, and nothing in the config is the secret itself.
            assert PasswordHasher().verify(cred.argon2_hash, editor_secret)
            assert editor_secret.encode() not in first.SerializeToString()

            await admin.keys.revoke(editor.name)
            second = await asyncio.wait_for(anext(stream), 10)
            assert editor.name not in {c.key for c in second.tenants.credentials}
            assert second.version != first.version
            await stream.aclose()

    asyncio.run(scenario())
