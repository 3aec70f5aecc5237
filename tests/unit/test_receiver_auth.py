"""Ingest key checks from the tenants config: argon2 once per key, then the keyed cache; removed,
expired and other-tenant keys; the per-peer failure limit."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from argon2 import PasswordHasher

from agents.receiver.auth import AuthError, IngestAuth
from floe.ratelimit import FailureLimiter
from floe.v1 import agent_pb2

NOW = 1_800_000_000 * 10**9


def make_key(key_id: str) -> str:
    return f"floe_s_{key_id}_{secrets.token_urlsafe(32)}"


def credential(key: str, *, tenant: str = "", expire_ns: int = 0) -> agent_pb2.IngestCredential:
    prefix = "_".join(key.split("_", 3)[:3])
    cred = agent_pb2.IngestCredential(
        prefix=prefix, tenant=tenant, argon2_hash=PasswordHasher().hash(key), key=f"keys/{prefix}"
    )
    if expire_ns:
        cred.expire_time.FromNanoseconds(expire_ns)
    return cred


async def code_of(auth: IngestAuth, header: str, tenant: str = "acme") -> str:
    try:
        await auth.check(header, tenant)
    except AuthError as exc:
        return exc.code
    return "ok"


def test_a_key_is_verified_once_and_then_served_from_the_cache() -> None:
    key = make_key("k1")

    async def scenario() -> None:
        auth = IngestAuth(clock=lambda: NOW)
        auth.update([credential(key)])
        # Concurrent first requests share one argon2 verification.
        codes = await asyncio.gather(*(code_of(auth, f"Bearer {key}") for _ in range(8)))
        assert codes == ["ok"] * 8 and auth.verifications == 1
        assert await code_of(auth, f"bearer {key}", "globex") == "ok"
        assert auth.verifications == 1
        # A wrong secret with a known prefix costs one verification, then is refused from the cache.
        wrong = "_".join(key.split("_", 3)[:3]) + "_" + "A" * 43
        assert [await code_of(auth, f"Bearer {wrong}") for _ in range(3)] == ["invalid_key"] * 3
        assert auth.verifications == 2
        auth.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("", "missing_credentials"),
        ("Basic abc", "missing_credentials"),
        ("Bearer ", "missing_credentials"),
        ("Bearer not-a-key", "invalid_key"),
        ("Bearer floe_s_unknown_" + "x" * 43, "invalid_key"),
    ],
)
def test_malformed_and_unknown_keys(header: str, code: str) -> None:
    async def scenario() -> None:
        auth = IngestAuth()
        auth.update([credential(make_key("k2"))])
        assert await code_of(auth, header) == code
        assert auth.verifications == 0  # no argon2 work for what cannot match
        auth.close()

    asyncio.run(scenario())


def test_removed_expired_and_other_tenant_keys_are_refused() -> None:
    revoked, expiring, scoped = make_key("rv"), make_key("ex"), make_key("sc")
    now = [NOW]

    async def scenario() -> None:
        auth = IngestAuth(clock=lambda: now[0])
        creds = [
            credential(revoked),
            credential(expiring, expire_ns=NOW + 10),
            credential(scoped, tenant="tenants/acme"),
        ]
        auth.update(creds)
        assert await code_of(auth, f"Bearer {revoked}") == "ok"
        assert await code_of(auth, f"Bearer {expiring}") == "ok"
        assert await code_of(auth, f"Bearer {scoped}", "acme") == "ok"
        assert await code_of(auth, f"Bearer {scoped}", "globex") == "wrong_tenant"
        # Revocation: the next config lacks the key; the cached success no longer counts.
        auth.update(creds[1:])
        assert await code_of(auth, f"Bearer {revoked}") == "invalid_key"
        now[0] = NOW + 10
        assert await code_of(auth, f"Bearer {expiring}") == "expired_key"
        auth.close()

    asyncio.run(scenario())


def test_failure_limiter_refuses_a_peer_over_its_budget_then_refills() -> None:
    t = [0.0]
    limiter = FailureLimiter(burst=3, rate=0.5, clock=lambda: t[0])
    assert limiter.retry_after("10.0.0.1") == 0
    for _ in range(3):
        limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(2.0)
    assert limiter.retry_after("10.0.0.2") == 0  # other peers are unaffected
    t[0] = 2.0
    assert limiter.retry_after("10.0.0.1") == 0
