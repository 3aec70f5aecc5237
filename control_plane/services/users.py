"""floe.v1.UserService and floe.v1.AuthService: people, passwords and sign-in."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from control_plane.auth.authenticator import Authenticator
from control_plane.auth.principal import Principal
from control_plane.auth.ratelimit import client_peer, peer_host
from control_plane.auth.secrets import hash_secret, sha256_hex, verify_secret
from control_plane.auth.tokens import TokenSigner
from control_plane.core.errors import (
    FieldViolation,
    NotFound,
    Unauthenticated,
)
from control_plane.core.fieldmask import apply_update_mask
from control_plane.core.names import check_id, parse_name, parse_tenant_name
from control_plane.core.pagination import page_request
from control_plane.core.resources import check_etag, from_record, timestamp, to_body
from control_plane.services.common import existing, fetch_page, principal, require
from control_plane.services.keys import check_grant
from control_plane.store import Record, Session, Store
from floe.v1 import common_pb2, users_pb2, users_pb2_grpc

__all__ = ["AuthServicer", "UserServicer"]

log = logging.getLogger(__name__)
User = users_pb2.User
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
UPDATABLE = ("display_name", "role", "tenant", "disabled")
# Verified against when the username is unknown, so both failures take the same time.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$sQTgxBP4AFJE/vG/2vqy2g$3zZZmnAdB7V/zbPVeemTjbvAzVS0bu+Y5N8x0Kc34Do"


def _password_violation(password: str, field: str = "password") -> FieldViolation | None:
    if len(password) < MIN_PASSWORD:
        return FieldViolation(field, f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        return FieldViolation(field, f"must be at most {MAX_PASSWORD} characters")
    return None


def _user(record: Record) -> User:
    user = from_record(record, User)
    if record.last_used_time:
        user.last_login_time.CopyFrom(timestamp(record.last_used_time))
    return user


def _validate(caller: Principal, user: User) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if len(user.display_name) > 200:
        out.append(FieldViolation("user.display_name", "must be at most 200 characters"))
    if user.role == common_pb2.ROLE_AGENT:
        out.append(FieldViolation("user.role", "ROLE_AGENT is for service keys, not users"))
        return out
    tenant = parse_tenant_name(user.tenant, "user.tenant") if user.tenant else None
    out += check_grant(caller, user.role, tenant, "user")
    return out


class UserServicer(users_pb2_grpc.UserServiceServicer):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _get(self, name: str) -> Record:
        record = await existing(self._store, name)
        return record

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: Any) -> Any:
        caller = principal()
        caller.require_global("Managing users")
        user = User()
        user.CopyFrom(request.user)
        require(
            [
                check_id(request.user_id, "user_id", user=True),
                _password_violation(request.password),
                *_validate(caller, user),
            ]
        )
        if user.tenant and await self._store.get(user.tenant) is None:
            raise NotFound(f"{user.tenant} does not exist.")
        hashed = await hash_secret(request.password)
        async with self._store.transaction() as tx:
            record = await tx.create(f"users/{request.user_id}", "users", user.tenant, to_body(user), credential=hashed)
        log.info("User created", extra={"user": record.name, "by": caller.name})
        return users_pb2.CreateUserResponse(user=_user(record))

    async def GetUser(self, request: users_pb2.GetUserRequest, context: Any) -> Any:
        parse_name(request.name, "users", user=True)
        caller = principal()
        if caller.name != request.name:
            caller.require_global("Reading other users")
        return users_pb2.GetUserResponse(user=_user(await self._get(request.name)))

    async def ListUsers(self, request: users_pb2.ListUsersRequest, context: Any) -> Any:
        principal().require_global("Listing users")
        page = page_request(request.page_size, request.page_token, "users")
        records, token = await fetch_page(self._store, "users", page, parent=None)
        return users_pb2.ListUsersResponse(users=[_user(r) for r in records], next_page_token=token)

    async def UpdateUser(self, request: users_pb2.UpdateUserRequest, context: Any) -> Any:
        caller = principal()
        caller.require_global("Managing users")
        name = request.user.name
        parse_name(name, "users", "user.name", user=True)
        async with self._store.transaction() as tx:
            record = await existing(tx, name)
            check_etag(record, request.user.etag, "user.etag")
            user = from_record(record, User)
            apply_update_mask(user, request.user, request.update_mask, UPDATABLE, prefix="user")
            require(_validate(caller, user))
            if user.tenant and await tx.get(user.tenant) is None:
                raise NotFound(f"{user.tenant} does not exist.")
            updated = await tx.update(name, to_body(user), expected_revision=record.revision, parent=user.tenant)
        if user.disabled:
            await self._store.revoke_user_sessions(name, time.time_ns())
        return users_pb2.UpdateUserResponse(user=_user(updated))

    async def DeleteUser(self, request: users_pb2.DeleteUserRequest, context: Any) -> Any:
        principal().require_global("Managing users")
        parse_name(request.name, "users", user=True)
        async with self._store.transaction() as tx:
            record = await existing(tx, request.name)
            check_etag(record, request.etag)
            await tx.delete(request.name, expected_revision=record.revision)
        await self._store.revoke_user_sessions(request.name, time.time_ns())
        return users_pb2.DeleteUserResponse()

    async def SetPassword(self, request: users_pb2.SetPasswordRequest, context: Any) -> Any:
        parse_name(request.name, "users", user=True)
        caller = principal()
        if caller.name != request.name:
            caller.require_global("Setting another user's password")
        require([_password_violation(request.password)])
        await self._get(request.name)
        hashed = await hash_secret(request.password)
        async with self._store.transaction() as tx:
            if await tx.get(request.name) is None:
                raise NotFound(f"{request.name} does not exist.")
            await tx.set_credential(request.name, hashed)
        # A new password ends every session signed in with the old one.
        await self._store.revoke_user_sessions(request.name, time.time_ns())
        return users_pb2.SetPasswordResponse()


class AuthServicer(users_pb2_grpc.AuthServiceServicer):
    def __init__(
        self, store: Store, signer: TokenSigner, authenticator: Authenticator, refresh_ttl_seconds: float
    ) -> None:
        self._store = store
        self._signer = signer
        self._auth = authenticator
        self._refresh_ttl_ns = int(refresh_ttl_seconds * 1e9)

    async def Login(self, request: users_pb2.LoginRequest, context: Any) -> Any:
        peer = client_peer(context)
        return await self._auth.guard(peer, lambda: self._login(request, peer))

    async def _login(self, request: users_pb2.LoginRequest, peer: str) -> users_pb2.LoginResponse:
        failure = Unauthenticated("Username or password is incorrect.", reason="LOGIN_FAILED")
        found = None
        if check_id(request.username, "username", user=True) is None:
            found = await self._store.get_with_credential(f"users/{request.username}")
        ok = await verify_secret(found[1] if found else _DUMMY_HASH, request.password)
        if found is None or not ok:
            raise failure
        record = found[0]
        user = _user(record)
        if user.disabled:
            raise Unauthenticated("This user is disabled; ask an admin.", reason="USER_DISABLED")
        tenant = user.tenant.removeprefix("tenants/") or None
        access, access_exp = self._signer.issue(record.name, user.role, tenant)
        now = time.time_ns()
        session_id = secrets.token_hex(12)
        refresh = f"{session_id}.{secrets.token_urlsafe(32)}"
        session = Session(session_id, record.name, sha256_hex(refresh), now, now + self._refresh_ttl_ns, 0)
        await self._store.create_session(session)
        await self._store.touch(record.name, now)
        log.info("User signed in", extra={"user": record.name, "peer": peer_host(peer)})
        return users_pb2.LoginResponse(
            access_token=access,
            access_token_expire_time=timestamp(int(access_exp * 1e9)),
            refresh_token=refresh,
            refresh_token_expire_time=timestamp(session.expire_time),
            user=user,
        )

    async def _session(self, token: str) -> Session:
        session_id, _, _ = token.partition(".")
        invalid = Unauthenticated("Refresh token is not valid; sign in again.", reason="REFRESH_TOKEN_INVALID")
        if not session_id or len(token) > 200:
            raise invalid
        session = await self._store.get_session(session_id)
        if session is None or not secrets.compare_digest(session.token_hash, sha256_hex(token)):
            raise invalid
        if session.revoke_time or session.expire_time <= time.time_ns():
            raise Unauthenticated("Session has ended; sign in again.", reason="SESSION_ENDED")
        return session

    async def RefreshToken(self, request: users_pb2.RefreshTokenRequest, context: Any) -> Any:
        session = await self._auth.guard(client_peer(context), lambda: self._session(request.refresh_token))
        record = await self._store.get(session.user)
        if record is None:
            raise Unauthenticated("This user no longer exists.", reason="SESSION_ENDED")
        user = User.FromString(record.body)
        if user.disabled:
            raise Unauthenticated("This user is disabled; ask an admin.", reason="USER_DISABLED")
        # Role and tenant come from the user as it is now, not as it was at sign-in.
        access, exp = self._signer.issue(record.name, user.role, user.tenant.removeprefix("tenants/") or None)
        return users_pb2.RefreshTokenResponse(access_token=access, access_token_expire_time=timestamp(int(exp * 1e9)))

    async def Logout(self, request: users_pb2.LogoutRequest, context: Any) -> Any:
        session = await self._session(request.refresh_token)
        await self._store.revoke_session(session.id, time.time_ns())
        return users_pb2.LogoutResponse()

    async def WhoAmI(self, request: users_pb2.WhoAmIRequest, context: Any) -> Any:
        caller = principal()
        return users_pb2.WhoAmIResponse(
            principal=caller.name,
            role=common_pb2.Role.ValueType(caller.role),
            tenant=f"tenants/{caller.tenant}" if caller.tenant else "",
        )
