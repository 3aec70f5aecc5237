"""Turns the ``authorization`` metadata of a call into a Principal.

API keys are stored as argon2 hashes, which take ~100 ms of CPU to verify by design. To keep
that cost off every request, a key verified once is remembered in memory as an HMAC of its
secret under a random per-process pepper (never persisted): later calls compare HMACs in
constant time and cost microseconds. The cache is dropped for a key the moment it is revoked
on this replica, and each entry is re-checked against the store every ``recheck_seconds``
(no argon2: a point read) so revocation on another replica also takes effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import jwt

from control_plane.auth.principal import Principal
from control_plane.auth.ratelimit import FailureLimiter, peer_host
from control_plane.auth.secrets import parse_key, verify_secret
from control_plane.auth.tokens import TokenSigner
from control_plane.core.errors import ResourceExhausted, Unauthenticated
from control_plane.core.keys import key_ends_ns
from control_plane.store import Store
from floe.v1 import keys_pb2

__all__ = ["Authenticator"]

log = logging.getLogger(__name__)
T = TypeVar("T")
TOUCH_INTERVAL_NS = 60 * 1_000_000_000


@dataclass
class _Verified:
    digest: bytes
    principal: Principal
    #: Unix seconds after which the key is not valid (revocation with grace, or expiry); inf if none.
    valid_until: float
    checked_at: float
    touched_at: int


class Authenticator:
    """Authenticates bearer credentials; call ``invalidate`` when a key is revoked."""

    def __init__(
        self,
        store: Store,
        signer: TokenSigner,
        limiter: FailureLimiter,
        *,
        recheck_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._signer = signer
        self.limiter = limiter
        self._recheck = recheck_seconds
        self._pepper = secrets.token_bytes(32)
        self._cache: dict[str, _Verified] = {}
        #: Bumped whenever a key is forgotten, so a verification that was in flight meanwhile
        #: re-reads its record instead of caching what it read before the revocation.
        self._epoch = 0
        self._inflight: dict[tuple[str, bytes], asyncio.Future[Principal]] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Called with a key name (``keys/{id}``) when it stops being valid on this replica.
        self.on_revoke: list[Callable[[str], None]] = []

    def forget(self, key_name: str) -> None:
        """Drop a key's cache entry so the next call re-reads its record (e.g. a new revoke_time)."""
        self._epoch += 1
        self._cache.pop(key_name.removeprefix("keys/"), None)

    def invalidate(self, key_name: str) -> None:
        """A key stopped being valid: forget it and tell listeners (open streams end)."""
        self.forget(key_name)
        for callback in self.on_revoke:
            callback(key_name)

    async def guard(self, peer: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a credential check for ``peer`` under the per-address failure limit.

        Refused at once (RESOURCE_EXHAUSTED with a retry delay) while the address is over the
        limit; an UNAUTHENTICATED outcome counts against it. Every credential check goes through
        here: API keys and tokens on each call, passwords and refresh tokens at sign-in.
        """
        host = peer_host(peer)
        wait = self.limiter.retry_after(host)
        if wait > 0:
            raise ResourceExhausted(
                f"Too many failed authentications from {host}; try again in {wait:.1f}s.",
                reason="AUTH_RATE_LIMITED",
                retry_after=wait,
            )
        try:
            return await attempt()
        except Unauthenticated:
            self.limiter.record_failure(host)
            raise

    async def authenticate(self, authorization: str | None, peer: str) -> Principal:
        return await self.guard(peer, lambda: self._authenticate(authorization))

    async def _authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated(
                "Missing credential: send metadata 'authorization: Bearer <api key or access token>'.",
                reason="CREDENTIAL_MISSING",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "Malformed authorization metadata: expected 'Bearer <api key or access token>'.",
                reason="CREDENTIAL_MALFORMED",
            )
        if token.startswith("floe_"):
            return await self._authenticate_key(token)
        return self._authenticate_jwt(token)

    def _authenticate_jwt(self, token: str) -> Principal:
        try:
            claims = self._signer.verify(token)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("Access token expired: refresh it or sign in again.", reason="TOKEN_EXPIRED") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("Access token is not valid.", reason="TOKEN_INVALID") from exc
        return Principal(claims.subject, claims.role, claims.tenant)

    async def _authenticate_key(self, token: str) -> Principal:
        parsed = parse_key(token)
        if parsed is None:
            raise Unauthenticated("API key is malformed.", reason="KEY_INVALID")
        digest = hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()
        now = time.time()
        entry = self._cache.get(parsed.key_id)
        if entry is not None and hmac.compare_digest(entry.digest, digest):
            if now >= entry.valid_until:
                self._cache.pop(parsed.key_id, None)
                raise Unauthenticated(f"API key {parsed.prefix} is revoked or expired.", reason="KEY_REVOKED")
            if now - entry.checked_at < self._recheck:
                self._maybe_touch(entry)
                return entry.principal
        flight_key = (parsed.key_id, digest)
        pending = self._inflight.get(flight_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._inflight[flight_key] = future
        try:
            principal = await self._load_key(parsed.key_id, parsed.prefix, token, digest, entry)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters may be none
            raise
        else:
            future.set_result(principal)
            return principal
        finally:
            del self._inflight[flight_key]

    async def _load_key(
        self, key_id: str, prefix: str, token: str, digest: bytes, entry: _Verified | None
    ) -> Principal:
        unknown = Unauthenticated(f"API key {prefix} is not valid.", reason="KEY_INVALID")
        # The digest matched a verified entry: the secret is right, only the record needed a look.
        verified = entry is not None and hmac.compare_digest(entry.digest, digest)
        while True:
            epoch = self._epoch
            found = await self._store.get_with_credential(f"keys/{key_id}")
            if found is None:
                self._cache.pop(key_id, None)
                raise unknown
            record, hashed = found
            key = keys_pb2.ApiKey.FromString(record.body)
            now = time.time()
            ends = key_ends_ns(key)
            valid_until = float("inf") if ends is None else ends / 1e9
            if now >= valid_until:
                self._cache.pop(key_id, None)
                raise Unauthenticated(f"API key {prefix} is revoked or expired.", reason="KEY_REVOKED")
            if not verified and not await verify_secret(hashed, token):
                raise unknown
            verified = True
            if self._epoch == epoch:
                break
            # A key was revoked or rotated while this one was being read or verified (argon2 takes
            # ~100 ms): the record above may predate that, so read it again (no second argon2).
        principal = Principal(f"keys/{key_id}", key.role, key.tenant.removeprefix("tenants/") or None)
        fresh = _Verified(digest, principal, valid_until, now, record.last_used_time)
        self._cache[key_id] = fresh
        self._maybe_touch(fresh)
        return principal

    def _maybe_touch(self, entry: _Verified) -> None:
        now = time.time_ns()
        if now - entry.touched_at < TOUCH_INTERVAL_NS:
            return
        entry.touched_at = now
        task = asyncio.get_running_loop().create_task(self._touch(entry.principal.name, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _touch(self, name: str, when: int) -> None:
        try:
            await self._store.touch(name, when)
        except Exception:
            log.warning("Could not record key use", extra={"key": name}, exc_info=True)
