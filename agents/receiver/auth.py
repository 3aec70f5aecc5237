"""Checking ingest keys without a control-plane round trip, and limiting peers that keep failing.

The ``tenants`` config carries each ingest key's public prefix and argon2id hash. A presented key
is verified against its hash once, off the event loop (argon2 costs tens of milliseconds by
design); the outcome is then cached under an HMAC of the key with a per-process random pepper, so
neither the key nor a fast hash of it is ever held in memory. Each cached outcome remembers the
hash it was checked against, and every request looks the credential up in the current config
first: a key that disappears from the config (revoked, expired, rotated out) stops working with
the config update that removes it, whatever the cache holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from floe.apikeys import parse_key
from floe.v1 import agent_pb2

__all__ = ["AuthError", "IngestAuth"]


class AuthError(Exception):
    """Raised by ``IngestAuth.check`` when a request may not write; ``code`` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Credential:
    key: str  # keys/{id}, for logs
    tenant: str  # tenant id, or "" for any tenant
    argon2_hash: str
    expire_ns: int  # 0: never


_INVALID = (
    "The bearer token is not a valid ingest key for this receiver (a key created a moment ago reaches "
    "receivers within about a second; a revoked or viewer key never works)."
)


class IngestAuth:
    """Credentials of the current config plus a bounded cache of verification outcomes."""

    def __init__(self, *, cache_size: int = 10_000, clock: Callable[[], int] = time.time_ns) -> None:
        self._pepper = secrets.token_bytes(32)
        self._by_prefix: dict[str, _Credential] = {}
        # HMAC(key) -> (argon2 hash checked against, outcome), least recently used first.
        self._outcomes: OrderedDict[bytes, tuple[str, bool]] = OrderedDict()
        self._inflight: dict[tuple[bytes, str], asyncio.Future[bool]] = {}
        self._cache_size = cache_size
        self._clock = clock
        self._hasher = PasswordHasher()
        # Two threads at most: a flood of unknown keys must not starve the spool's reads.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="floe-argon2")
        self.verifications = 0

    def update(self, credentials: Iterable[agent_pb2.IngestCredential]) -> None:
        """Switch to the credentials of a new config; removed ones stop working at once."""
        by_prefix = {}
        for c in credentials:
            expire = c.expire_time.ToNanoseconds() if c.HasField("expire_time") else 0
            tenant = c.tenant.removeprefix("tenants/")
            by_prefix[c.prefix] = _Credential(c.key, tenant, c.argon2_hash, expire)
        self._by_prefix = by_prefix
        hashes = {c.argon2_hash for c in by_prefix.values()}
        for digest in [d for d, (h, _) in self._outcomes.items() if h not in hashes]:
            del self._outcomes[digest]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def check(self, authorization: str, tenant: str) -> str:
        """The key name (``keys/ID``) of a bearer token that may write to ``tenant``; else ``AuthError``."""
        scheme, _, token = authorization.partition(" ")
        if not authorization:
            raise AuthError("missing_credentials", "Send an ingest key as 'Authorization: Bearer <key>'.")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing_credentials", "The Authorization header must be 'Bearer <key>'.")
        parsed = parse_key(token)
        cred = self._by_prefix.get(parsed.prefix) if parsed is not None else None
        if parsed is None or cred is None:
            raise AuthError("invalid_key", _INVALID)
        if not await self._verified(token, cred.argon2_hash) or self._by_prefix.get(parsed.prefix) is not cred:
            # (or the config changed during the check and no longer holds this credential)
            raise AuthError("invalid_key", _INVALID)
        # Only a holder of the key learns that it expired or belongs elsewhere.
        if cred.expire_ns and self._clock() >= cred.expire_ns:
            raise AuthError("expired_key", "The ingest key has expired or was rotated; use its replacement.")
        if cred.tenant and cred.tenant != tenant:
            raise AuthError("wrong_tenant", f"The ingest key may not write to tenant {tenant!r}.")
        return cred.key

    async def _verified(self, token: str, argon2_hash: str) -> bool:
        digest = hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()
        cached = self._outcomes.get(digest)
        if cached is not None and cached[0] == argon2_hash:
            self._outcomes.move_to_end(digest)
            return cached[1]
        # Concurrent first requests with one key share one verification.
        flight = (digest, argon2_hash)
        future = self._inflight.get(flight)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(self._pool, self._verify, argon2_hash, token)
            self._inflight[flight] = future
            try:
                ok = await asyncio.shield(future)
            finally:
                del self._inflight[flight]
            self.verifications += 1
            self._outcomes[digest] = (argon2_hash, ok)
            if len(self._outcomes) > self._cache_size:
                self._outcomes.popitem(last=False)
            return ok
        return await asyncio.shield(future)

    def _verify(self, argon2_hash: str, token: str) -> bool:
        try:
            return bool(self._hasher.verify(argon2_hash, token))
        except (VerificationError, InvalidHashError):
            return False
