"""Typed client for the Floe control plane.

``AsyncClient`` is the client; ``Client`` is a blocking facade that runs it on a private event
loop thread. Both retry UNAVAILABLE with jittered backoff, apply a per-call deadline, and raise
``floe.errors.RpcError``::

    async with AsyncClient("127.0.0.1:9090", api_key=key) as c:
        tenant = await c.tenants.create("acme", display_name="ACME")

    with Client(api_key=key) as c:
        for t in c.tenants.list():
            print(t.name)
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from floe.backoff import Backoff
from floe.errors import RpcError, from_grpc_error
from floe.v1 import (
    agent_pb2,
    common_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    tenants_pb2,
    tenants_pb2_grpc,
    transforms_pb2,
    users_pb2,
    users_pb2_grpc,
    work_pb2,
    work_pb2_grpc,
)

__all__ = ["DEFAULT_TARGET", "AsyncClient", "Client", "channel_credentials", "open_channel"]

DEFAULT_TARGET = "127.0.0.1:9090"
R = TypeVar("R")
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE}


def _name(value: str, collection: str) -> str:
    """Accept ``acme`` or ``tenants/acme``."""
    return value if value.startswith(f"{collection}/") else f"{collection}/{value}"


def _mask(paths: list[str] | None) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=paths or [])


async def _collect(fetch: Callable[[str], Awaitable[Any]], field: str) -> list[Any]:
    """Follow next_page_token until the last page; ``fetch(token)`` returns one page."""
    out: list[Any] = []
    token = ""
    while True:
        page = await fetch(token)
        out.extend(getattr(page, field))
        token = page.next_page_token
        if not token:
            return out


def channel_credentials(
    ca_file: str | Path | None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials: verify the server with ``ca_file`` (system roots when None) and present
    ``cert_file``/``key_file`` for mutual TLS."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together (mutual TLS)")
    return grpc.ssl_channel_credentials(
        Path(ca_file).read_bytes() if ca_file else None,
        Path(key_file).read_bytes() if key_file else None,
        Path(cert_file).read_bytes() if cert_file else None,
    )


def open_channel(api: Any, target: str, credentials: grpc.ChannelCredentials | None, options: Any) -> Any:
    """A channel from ``api`` (``grpc`` or ``grpc.aio``) to ``target``: over TLS with
    ``credentials``, plaintext when they are None."""
    if credentials is None:
        return api.insecure_channel(target, options=options)
    return api.secure_channel(target, credentials, options=options)


class _Api:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    def blocking(self, loop: _Loop) -> Any:
        """This API for the blocking ``Client``: by default each coroutine method runs on ``loop``."""
        return _Blocking(self, loop)


class TenantsApi(_Api):
    async def create(
        self,
        tenant_id: str,
        *,
        display_name: str = "",
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> tenants_pb2.Tenant:
        tenant = tenants_pb2.Tenant(display_name=display_name, description=description, labels=labels or {})
        req = tenants_pb2.CreateTenantRequest(tenant_id=tenant_id, tenant=tenant)
        return (await self._c.call(self._c.stubs.tenants.CreateTenant, req)).tenant

    async def get(self, name: str) -> tenants_pb2.Tenant:
        req = tenants_pb2.GetTenantRequest(name=_name(name, "tenants"))
        return (await self._c.call(self._c.stubs.tenants.GetTenant, req)).tenant

    async def list_page(self, page_size: int = 0, page_token: str = "") -> tenants_pb2.ListTenantsResponse:
        req = tenants_pb2.ListTenantsRequest(page_size=page_size, page_token=page_token)
        return await self._c.call(self._c.stubs.tenants.ListTenants, req)

    async def list(self) -> builtins.list[tenants_pb2.Tenant]:
        """Every visible tenant, following page tokens."""
        return await _collect(lambda token: self.list_page(page_size=500, page_token=token), "tenants")

    async def update(self, tenant: tenants_pb2.Tenant, paths: builtins.list[str] | None = None) -> tenants_pb2.Tenant:
        req = tenants_pb2.UpdateTenantRequest(tenant=tenant, update_mask=_mask(paths))
        return (await self._c.call(self._c.stubs.tenants.UpdateTenant, req)).tenant

    async def delete(self, name: str, *, force: bool = False, etag: str = "") -> None:
        req = tenants_pb2.DeleteTenantRequest(name=_name(name, "tenants"), force=force, etag=etag)
        await self._c.call(self._c.stubs.tenants.DeleteTenant, req)


class DatasetsApi(_Api):
    async def create(
        self, parent: str, dataset_id: str, dataset: datasets_pb2.Dataset, *, validate_only: bool = False
    ) -> datasets_pb2.Dataset:
        req = datasets_pb2.CreateDatasetRequest(
            parent=_name(parent, "tenants"),
            dataset_id=dataset_id,
            dataset=dataset,
            validate_only=validate_only,
        )
        return (await self._c.call(self._c.stubs.datasets.CreateDataset, req)).dataset

    async def get(self, name: str) -> datasets_pb2.Dataset:
        req = datasets_pb2.GetDatasetRequest(name=name)
        return (await self._c.call(self._c.stubs.datasets.GetDataset, req)).dataset

    async def list_page(
        self, parent: str = "tenants/-", page_size: int = 0, page_token: str = ""
    ) -> datasets_pb2.ListDatasetsResponse:
        req = datasets_pb2.ListDatasetsRequest(
            parent=_name(parent, "tenants"), page_size=page_size, page_token=page_token
        )
        return await self._c.call(self._c.stubs.datasets.ListDatasets, req)

    async def list(self, parent: str = "tenants/-") -> builtins.list[datasets_pb2.Dataset]:
        return await _collect(lambda token: self.list_page(parent, page_size=500, page_token=token), "datasets")

    async def update(
        self, dataset: datasets_pb2.Dataset, paths: builtins.list[str] | None = None, *, validate_only: bool = False
    ) -> datasets_pb2.Dataset:
        req = datasets_pb2.UpdateDatasetRequest(dataset=dataset, update_mask=_mask(paths), validate_only=validate_only)
        return (await self._c.call(self._c.stubs.datasets.UpdateDataset, req)).dataset

    async def delete(self, name: str, *, etag: str = "") -> None:
        await self._c.call(
            self._c.stubs.datasets.DeleteDataset, datasets_pb2.DeleteDatasetRequest(name=name, etag=etag)
        )

    async def preview(
        self,
        dataset: str,
        transformations: Sequence[transforms_pb2.Transformation],
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        text: str = "",
        data_hint: str = "",
    ) -> datasets_pb2.PreviewTransformationsResponse:
        """Run ``transformations`` on sample ``records`` (JSON objects) or raw ``text`` parsed by
        ``data_hint``, as pipers would; nothing is saved. ``dataset`` is its full name."""
        req = datasets_pb2.PreviewTransformationsRequest(dataset=dataset, transformations=transformations)
        if records is not None:
            for record in records:
                req.records.records.add().update(dict(record))
        else:
            req.text.data_hint = data_hint
            req.text.text = text
        return await self._c.call(self._c.stubs.datasets.PreviewTransformations, req)

    async def fields(self, dataset: str) -> datasets_pb2.DatasetFields:
        """The fields pipers have seen in ``dataset`` (its full name)."""
        req = datasets_pb2.GetDatasetFieldsRequest(name=f"{dataset}/fields")
        return (await self._c.call(self._c.stubs.datasets.GetDatasetFields, req)).fields

    async def report_fields(self, fields: datasets_pb2.DatasetFields) -> None:
        """Add a piper's field counts (agent credentials)."""
        req = datasets_pb2.ReportDatasetFieldsRequest(fields=fields)
        await self._c.call(self._c.stubs.datasets.ReportDatasetFields, req)


class KeysApi(_Api):
    async def create(
        self,
        role: common_pb2.Role.ValueType,
        *,
        tenant: str = "",
        kind: keys_pb2.KeyKind.ValueType = keys_pb2.KEY_KIND_UNSPECIFIED,
        display_name: str = "",
        key_id: str = "",
    ) -> tuple[keys_pb2.ApiKey, str]:
        """Create a key; returns it and its secret (shown this once)."""
        key = keys_pb2.ApiKey(
            role=role, tenant=_name(tenant, "tenants") if tenant else "", kind=kind, display_name=display_name
        )
        resp = await self._c.call(
            self._c.stubs.keys.CreateApiKey, keys_pb2.CreateApiKeyRequest(api_key=key, api_key_id=key_id)
        )
        return resp.api_key, resp.secret

    async def get(self, name: str) -> keys_pb2.ApiKey:
        req = keys_pb2.GetApiKeyRequest(name=_name(name, "keys"))
        return (await self._c.call(self._c.stubs.keys.GetApiKey, req)).api_key

    async def list_page(
        self,
        *,
        tenant: str = "",
        kind: keys_pb2.KeyKind.ValueType = keys_pb2.KEY_KIND_UNSPECIFIED,
        show_revoked: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> keys_pb2.ListApiKeysResponse:
        req = keys_pb2.ListApiKeysRequest(
            tenant=_name(tenant, "tenants") if tenant else "",
            kind=kind,
            show_revoked=show_revoked,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._c.call(self._c.stubs.keys.ListApiKeys, req)

    async def list(
        self,
        *,
        tenant: str = "",
        kind: keys_pb2.KeyKind.ValueType = keys_pb2.KEY_KIND_UNSPECIFIED,
        show_revoked: bool = False,
    ) -> builtins.list[keys_pb2.ApiKey]:
        return await _collect(
            lambda token: self.list_page(
                tenant=tenant, kind=kind, show_revoked=show_revoked, page_size=500, page_token=token
            ),
            "api_keys",
        )

    async def revoke(self, name: str) -> keys_pb2.ApiKey:
        req = keys_pb2.RevokeApiKeyRequest(name=_name(name, "keys"))
        return (await self._c.call(self._c.stubs.keys.RevokeApiKey, req)).api_key

    async def rotate(self, name: str, *, grace_seconds: float = 0) -> keys_pb2.RotateApiKeyResponse:
        req = keys_pb2.RotateApiKeyRequest(name=_name(name, "keys"))
        if grace_seconds:
            req.grace_period.CopyFrom(duration_pb2.Duration(seconds=int(grace_seconds)))
        return await self._c.call(self._c.stubs.keys.RotateApiKey, req)


class UsersApi(_Api):
    async def create(
        self, user_id: str, password: str, *, role: common_pb2.Role.ValueType, tenant: str = "", display_name: str = ""
    ) -> users_pb2.User:
        user = users_pb2.User(role=role, tenant=_name(tenant, "tenants") if tenant else "", display_name=display_name)
        req = users_pb2.CreateUserRequest(user_id=user_id, user=user, password=password)
        return (await self._c.call(self._c.stubs.users.CreateUser, req)).user

    async def get(self, name: str) -> users_pb2.User:
        req = users_pb2.GetUserRequest(name=_name(name, "users"))
        return (await self._c.call(self._c.stubs.users.GetUser, req)).user

    async def list(self) -> builtins.list[users_pb2.User]:
        return await _collect(
            lambda token: self._c.call(
                self._c.stubs.users.ListUsers, users_pb2.ListUsersRequest(page_size=500, page_token=token)
            ),
            "users",
        )

    async def update(self, user: users_pb2.User, paths: builtins.list[str] | None = None) -> users_pb2.User:
        req = users_pb2.UpdateUserRequest(user=user, update_mask=_mask(paths))
        return (await self._c.call(self._c.stubs.users.UpdateUser, req)).user

    async def delete(self, name: str) -> None:
        await self._c.call(self._c.stubs.users.DeleteUser, users_pb2.DeleteUserRequest(name=_name(name, "users")))

    async def set_password(self, name: str, password: str) -> None:
        req = users_pb2.SetPasswordRequest(name=_name(name, "users"), password=password)
        await self._c.call(self._c.stubs.users.SetPassword, req)


class AuthApi(_Api):
    async def login(self, username: str, password: str) -> users_pb2.LoginResponse:
        req = users_pb2.LoginRequest(username=username, password=password)
        return await self._c.call(self._c.stubs.auth.Login, req)

    async def refresh(self, refresh_token: str) -> users_pb2.RefreshTokenResponse:
        req = users_pb2.RefreshTokenRequest(refresh_token=refresh_token)
        return await self._c.call(self._c.stubs.auth.RefreshToken, req)

    async def logout(self, refresh_token: str) -> None:
        await self._c.call(self._c.stubs.auth.Logout, users_pb2.LogoutRequest(refresh_token=refresh_token))

    async def whoami(self) -> users_pb2.WhoAmIResponse:
        return await self._c.call(self._c.stubs.auth.WhoAmI, users_pb2.WhoAmIRequest())


class HealthApi(_Api):
    async def get(self) -> health_pb2.GetHealthResponse:
        return await self._c.call(self._c.stubs.health.GetHealth, health_pb2.GetHealthRequest())


class FleetApi(_Api):
    async def list(
        self, kind: agent_pb2.AgentKind.ValueType = agent_pb2.AGENT_KIND_UNSPECIFIED
    ) -> builtins.list[fleet_pb2.Agent]:
        return await _collect(
            lambda token: self._c.call(
                self._c.stubs.fleet.ListAgents, fleet_pb2.ListAgentsRequest(kind=kind, page_size=500, page_token=token)
            ),
            "agents",
        )

    async def get(self, name: str) -> fleet_pb2.Agent:
        req = fleet_pb2.GetAgentRequest(name=_name(name, "agents"))
        return (await self._c.call(self._c.stubs.fleet.GetAgent, req)).agent

    async def watch(
        self, kind: agent_pb2.AgentKind.ValueType = agent_pb2.AGENT_KIND_UNSPECIFIED
    ) -> AsyncIterator[fleet_pb2.WatchAgentsResponse]:
        """Every agent once (EXISTING), then each change; runs until cancelled."""
        call = self._c.stubs.fleet.WatchAgents(fleet_pb2.WatchAgentsRequest(kind=kind), metadata=self._c.metadata)
        try:
            async for event in call:
                yield event
        except grpc.RpcError as exc:
            raise from_grpc_error(exc) from None
        finally:
            call.cancel()

    async def send_command(
        self, agent: str, command: agent_pb2.Command, *, wait_seconds: float = 30.0
    ) -> agent_pb2.CommandResult:
        req = fleet_pb2.SendCommandRequest(agent=_name(agent, "agents"), command=command)
        req.timeout.FromNanoseconds(int(wait_seconds * 1e9))
        resp = await self._c.call(self._c.stubs.fleet.SendCommand, req, timeout=wait_seconds + 5)
        return resp.result

    async def dlq(
        self, agent: str, *, tenant: str = "", dataset: str = "", limit: int = 0, wait_seconds: float = 30.0
    ) -> builtins.list[agent_pb2.DlqItem]:
        """The dead-lettered items of ``agent`` (a proxy, receiver or connector), oldest first:
        at most ``limit`` (0: 100, at most 1000), of one tenant and/or dataset when given.
        Raises ``RpcError`` (FAILED_PRECONDITION, reason ``COMMAND_FAILED``) when the agent refuses."""
        command = agent_pb2.Command(list_dlq=agent_pb2.ListDlq(tenant=tenant, dataset=dataset, limit=limit))
        return list(self._ok(await self.send_command(agent, command, wait_seconds=wait_seconds)).dlq_items)

    async def retry_dlq(self, agent: str, ids: Sequence[str] | None = None, *, wait_seconds: float = 30.0) -> int:
        """Move dead-lettered items of ``agent`` (``ids``, or all when None) back to its queue;
        returns how many moved (unknown ids are skipped)."""
        if ids is not None and not ids:
            raise ValueError("ids: empty; pass None to retry every item")
        command = agent_pb2.Command(retry_dlq=agent_pb2.RetryDlq(items=ids or []))
        return int(self._ok(await self.send_command(agent, command, wait_seconds=wait_seconds)).details["moved"])

    @staticmethod
    def _ok(result: agent_pb2.CommandResult) -> agent_pb2.CommandResult:
        """``result`` when the agent ran the command; otherwise its refusal as an ``RpcError``."""
        if not result.ok:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, result.message, reason="COMMAND_FAILED")
        return result


class WorkApi(_Api):
    async def claim(
        self, items: builtins.list[str], holder: str, *, ttl_seconds: float = 30.0
    ) -> work_pb2.ClaimWorkResponse:
        req = work_pb2.ClaimWorkRequest(items=items, holder=holder)
        req.ttl.FromNanoseconds(int(ttl_seconds * 1e9))
        return await self._c.call(self._c.stubs.work.ClaimWork, req)

    async def renew(self, lease: work_pb2.Lease, *, ttl_seconds: float = 30.0) -> work_pb2.Lease:
        req = work_pb2.RenewLeaseRequest(item=lease.item, holder=lease.holder, generation=lease.generation)
        req.ttl.FromNanoseconds(int(ttl_seconds * 1e9))
        return (await self._c.call(self._c.stubs.work.RenewLease, req)).lease

    async def complete(self, lease: work_pb2.Lease) -> None:
        req = work_pb2.CompleteWorkRequest(item=lease.item, holder=lease.holder, generation=lease.generation)
        await self._c.call(self._c.stubs.work.CompleteWork, req)

    async def release(self, lease: work_pb2.Lease) -> None:
        req = work_pb2.ReleaseLeaseRequest(item=lease.item, holder=lease.holder, generation=lease.generation)
        await self._c.call(self._c.stubs.work.ReleaseLease, req)


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.tenants = tenants_pb2_grpc.TenantServiceStub(channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(channel)
        self.keys = keys_pb2_grpc.KeyServiceStub(channel)
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.auth = users_pb2_grpc.AuthServiceStub(channel)
        self.health = health_pb2_grpc.HealthServiceStub(channel)
        self.fleet = fleet_pb2_grpc.FleetServiceStub(channel)
        self.work = work_pb2_grpc.WorkServiceStub(channel)


class AsyncClient:
    """Async client. ``api_key`` or ``token`` (a JWT access token) authenticates every call.

    ``timeout`` is the deadline of each attempt; UNAVAILABLE is retried ``retries`` times with
    jittered exponential backoff. TLS is used when ``ca_file`` is given (or ``tls=True`` with the
    system roots); ``cert_file``/``key_file`` add a client certificate (mutual TLS).
    ``direct_queries`` sends ``query.execute``/``stream`` straight to a query agent under a grant
    from the control plane when it can (``floe.query_direct``); False: always the control plane.
    """

    Role = common_pb2.Role

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        tls: bool = False,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        direct_queries: bool = True,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retries = retries
        credential = api_key or token
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {credential}"),) if credential else ()
        #: Channel options and TLS credentials (None: plaintext) of every channel the client opens.
        self.options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        self.credentials = channel_credentials(ca_file, cert_file, key_file) if tls or ca_file or cert_file else None
        self._channel: grpc.aio.Channel = open_channel(grpc.aio, target, self.credentials, self.options)
        self._sync_channel: grpc.Channel | None = None
        self._sync_lock = threading.Lock()
        self.stubs = _Stubs(self._channel)
        self.tenants = TenantsApi(self)
        self.datasets = DatasetsApi(self)
        self.keys = KeysApi(self)
        self.users = UsersApi(self)
        self.auth = AuthApi(self)
        self.health = HealthApi(self)
        self.agents = FleetApi(self)
        self.work = WorkApi(self)
        from floe.exports_api import ExportsApi  # here: that module builds on this one

        self.exports = ExportsApi(self)
        from floe.query_api import QueryApi  # here: that module builds on this one

        self.query = QueryApi(self, direct_queries)

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    def sync_channel(self) -> grpc.Channel:
        """A synchronous channel to the same target with the same credentials, opened on first use
        and closed with the client: blocking calls on it skip the hop into the event loop's thread."""
        with self._sync_lock:
            if self._sync_channel is None:
                self._sync_channel = open_channel(grpc, self.target, self.credentials, self.options)
            return self._sync_channel

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata carrying the credential, for raw stub calls."""
        return self._metadata

    async def call(self, method: Callable[..., Any], request: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - a gRPC deadline, not a cancel scope
        """Invoke a unary stub method with credentials, deadline and retry; raise RpcError."""
        backoff = Backoff(0.1, 5.0)
        for attempt in range(self.retries + 1):
            try:
                return await method(request, metadata=self._metadata, timeout=timeout or self.timeout)
            except grpc.RpcError as exc:
                err = from_grpc_error(exc)
                if err.code not in _RETRYABLE or attempt == self.retries:
                    raise err from None
                await asyncio.sleep(backoff.delay(err.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self.query.routes.close()
        with self._sync_lock:
            if self._sync_channel is not None:
                self._sync_channel.close()
                self._sync_channel = None
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Loop:
    """A private event loop on a daemon thread, for the blocking facade."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="floe-client", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class _Blocking:
    """Wraps an API object so its coroutine methods block and return their result."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run(attr(*a, **k))
        if isinstance(attr, _Api):
            return attr.blocking(self._loop)
        return attr


class Client(_Blocking):
    """Blocking facade over AsyncClient with the same arguments and API objects."""

    def __init__(self, target: str = DEFAULT_TARGET, **kwargs: Any) -> None:
        loop = _Loop()

        async def build() -> AsyncClient:
            return AsyncClient(target, **kwargs)

        super().__init__(loop.run(build()), loop)

    def close(self) -> None:
        self._loop.run(self._target.close())
        self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
