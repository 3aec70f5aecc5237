"""Authentication and authorization against a real control plane: missing, malformed, wrong
and revoked credentials; tenant isolation; roles; users, sign-in and JWT access tokens;
the failed-authentication limiter; and which methods need no credential."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2 as grpc_health_pb2

from floe import Client
from floe.v1 import datasets_pb2, health_pb2, tenants_pb2, users_pb2
from tests.helpers import ControlPlaneProcess, eventually
from tests.integration.authkit import (
    ADMIN,
    AGENT,
    EDITOR,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
    VIEWER,
    SecretLedger,
    b64url_decode,
    b64url_encode,
    client_for,
    expect_error,
    fails_with,
    flip_char,
    jwt_claims,
    jwt_segments,
    list_tenants_raw,
    raw_call,
    violation_fields,
)

SECRETS = SecretLedger()
PASSWORD = "correct horse battery"


def _nats_dataset(subject: str) -> datasets_pb2.Dataset:
    return datasets_pb2.Dataset(
        display_name="events",
        source=datasets_pb2.Source(type=datasets_pb2.SOURCE_TYPE_NATS, options={"subject": subject}),
    )


# --- credentials -------------------------------------------------------------------------------


def test_missing_credential(control_plane: ControlPlaneProcess) -> None:
    with client_for(control_plane.grpc) as anonymous:
        err = expect_error(anonymous.tenants.list, code=UNAUTHENTICATED, reason="CREDENTIAL_MISSING")
        assert "authorization: Bearer" in err.message
        for call in (anonymous.keys.list, anonymous.datasets.list, anonymous.auth.whoami, anonymous.health.get):
            expect_error(call, code=UNAUTHENTICATED, reason="CREDENTIAL_MISSING")
    expect_error(list_tenants_raw, control_plane.grpc, code=UNAUTHENTICATED, reason="CREDENTIAL_MISSING")


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token floe_u_x_y", "bearer:"])
def test_malformed_authorization_metadata(control_plane: ControlPlaneProcess, value: str) -> None:
    err = expect_error(
        list_tenants_raw,
        control_plane.grpc,
        (("authorization", value),),
        code=UNAUTHENTICATED,
        reason="CREDENTIAL_MALFORMED",
    )
    assert "Bearer" in err.message


def test_wrong_and_garbage_keys(admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]) -> None:
    real = control_plane.admin_key
    prefix = "_".join(real.split("_", 3)[:3])
    secret_part = real.split("_", 3)[3]
    wrong_secret = prefix + "_" + ("x" * len(secret_part))
    unknown_id = f"floe_u_{uid('nokey').replace('-', '')}_" + "y" * 43
    cases = {
        wrong_secret: "KEY_INVALID",  # a real key id with the wrong secret
        unknown_id: "KEY_INVALID",  # well-formed, no such key
        "floe_u_short": "KEY_INVALID",  # shaped like a key, but not one
        "floe_" + "z" * 60: "KEY_INVALID",
        "not-a-key-at-all": "TOKEN_INVALID",  # neither a key nor a JWT
        "a.b.c": "TOKEN_INVALID",
    }
    for credential, reason in cases.items():
        with client_for(control_plane.grpc, credential) as c:
            err = expect_error(c.tenants.list, code=UNAUTHENTICATED, reason=reason)
            # The secret half of what was presented is never echoed back.
            assert "x" * 20 not in err.message and "y" * 20 not in err.message
    # The real key still works after all of that (the session server's limiter is generous).
    assert admin.tenants.list() is not None


def test_revoked_key_is_refused_everywhere(admin: Client, control_plane: ControlPlaneProcess) -> None:
    key, secret = admin.keys.create(EDITOR)
    SECRETS.add(secret)
    with client_for(control_plane.grpc, secret) as c:
        c.tenants.list()
        c.datasets.list()
        admin.keys.revoke(key.name)
        for call in (c.tenants.list, c.datasets.list, c.keys.list, c.auth.whoami, c.health.get):
            expect_error(call, code=UNAUTHENTICATED, reason="KEY_REVOKED")


# --- authorization -----------------------------------------------------------------------------


def test_tenant_bound_key_sees_only_its_tenant(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    mine, theirs = uid("iso-a"), uid("iso-b")
    admin.tenants.create(mine, display_name="Mine")
    admin.tenants.create(theirs, display_name="Theirs")
    my_ds = admin.datasets.create(mine, "events", _nats_dataset(uid("subj")))
    their_ds = admin.datasets.create(theirs, "events", _nats_dataset(uid("subj")))
    their_key, their_secret = admin.keys.create(VIEWER, tenant=theirs)
    _, secret = admin.keys.create(EDITOR, tenant=mine)
    SECRETS.add(their_secret, secret)

    with client_for(control_plane.grpc, secret) as c:
        assert [t.name for t in c.tenants.list()] == [f"tenants/{mine}"]
        assert c.tenants.get(mine).display_name == "Mine"
        assert [d.name for d in c.datasets.list()] == [my_ds.name]
        assert [d.name for d in c.datasets.list(mine)] == [my_ds.name]
        assert c.datasets.get(my_ds.name).name == my_ds.name

        # Another tenant's resources answer exactly like resources that do not exist.
        ghost_tenant = uid("ghost")
        ghost_ds = f"tenants/{theirs}/datasets/{uid('ghost')}"
        for tenant in (f"tenants/{theirs}", f"tenants/{ghost_tenant}"):
            errs = [
                expect_error(c.tenants.get, tenant, code=NOT_FOUND),
                expect_error(
                    c.tenants.update,
                    tenants_pb2.Tenant(name=tenant, display_name="pwned"),
                    ["display_name"],
                    code=NOT_FOUND,
                ),
                expect_error(c.tenants.delete, tenant, code=NOT_FOUND),
                expect_error(c.tenants.delete, tenant, force=True, code=NOT_FOUND),
                expect_error(c.datasets.list, tenant, code=NOT_FOUND),
                expect_error(c.keys.list, tenant=tenant, code=NOT_FOUND),
                expect_error(c.datasets.create, tenant, "x-ds", _nats_dataset("s"), code=NOT_FOUND),
            ]
            for err in errs:
                assert err.message == f"{tenant} does not exist.", err
                assert err.reason == "RESOURCE_NOT_FOUND"
        for ds in (their_ds.name, ghost_ds):
            errs = [
                expect_error(c.datasets.get, ds, code=NOT_FOUND),
                expect_error(
                    c.datasets.update,
                    datasets_pb2.Dataset(name=ds, display_name="pwned"),
                    ["display_name"],
                    code=NOT_FOUND,
                ),
                expect_error(c.datasets.delete, ds, code=NOT_FOUND),
            ]
            for err in errs:
                assert err.message == f"{ds} does not exist.", err
        for key in (their_key.name, f"keys/{uid('ghost')}"):
            for call in (c.keys.get, c.keys.revoke, c.keys.rotate):
                err = expect_error(call, key, code=NOT_FOUND)
                assert err.message == f"{key} does not exist."
        # Tenants are created by unbound credentials only.
        expect_error(c.tenants.create, uid("new"), code=PERMISSION_DENIED)

    # Nothing of the other tenant changed.
    assert admin.tenants.get(theirs).display_name == "Theirs"
    assert admin.datasets.get(their_ds.name).display_name == "events"
    assert not admin.keys.get(their_key.name).HasField("revoke_time")


def test_viewer_reads_but_cannot_write(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    tenant = uid("view")
    admin.tenants.create(tenant, display_name="Viewed")
    ds = admin.datasets.create(tenant, "logs", _nats_dataset(uid("subj")))
    key, secret = admin.keys.create(EDITOR, tenant=tenant)
    _, global_viewer = admin.keys.create(VIEWER)
    _, bound_viewer = admin.keys.create(VIEWER, tenant=tenant)
    SECRETS.add(secret, global_viewer, bound_viewer)
    for credential in (global_viewer, bound_viewer):
        with client_for(control_plane.grpc, credential) as v:
            assert tenant in {t.name.removeprefix("tenants/") for t in v.tenants.list()}
            assert v.tenants.get(tenant).display_name == "Viewed"
            assert ds.name in {d.name for d in v.datasets.list(tenant)}
            assert v.datasets.get(ds.name).name == ds.name
            assert v.keys.get(key.name).name == key.name
            assert v.auth.whoami().role == VIEWER
            writes: list[tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = [
                (v.tenants.create, (uid("nope"),), {}),
                (
                    v.tenants.update,
                    (tenants_pb2.Tenant(name=f"tenants/{tenant}", display_name="x"), ["display_name"]),
                    {},
                ),
                (v.tenants.delete, (tenant,), {"force": True}),
                (v.datasets.create, (tenant, "nope", _nats_dataset("s")), {}),
                (v.datasets.update, (datasets_pb2.Dataset(name=ds.name, display_name="x"), ["display_name"]), {}),
                (v.datasets.delete, (ds.name,), {}),
                (v.keys.create, (VIEWER,), {}),
                (v.keys.revoke, (key.name,), {}),
                (v.keys.rotate, (key.name,), {}),
            ]
            for call, args, kwargs in writes:
                expect_error(call, *args, **kwargs, code=PERMISSION_DENIED, reason="PERMISSION_DENIED")
    assert admin.tenants.get(tenant).display_name == "Viewed"
    assert admin.datasets.get(ds.name).display_name == "events"
    assert not admin.keys.get(key.name).HasField("revoke_time")


def test_agent_key_cannot_use_management_apis(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    tenant = uid("agt")
    admin.tenants.create(tenant)
    ds = admin.datasets.create(tenant, "flows", _nats_dataset(uid("subj")))
    global_key, global_agent = admin.keys.create(AGENT)
    bound_key, bound_agent = admin.keys.create(AGENT, tenant=tenant)
    SECRETS.add(global_agent, bound_agent)
    for own, credential in ((global_key, global_agent), (bound_key, bound_agent)):
        with client_for(control_plane.grpc, credential) as a:
            assert a.auth.whoami().role == AGENT  # authenticated, just not allowed below
            calls: list[tuple[Callable[..., object], tuple[object, ...]]] = [
                (a.tenants.list, ()),
                (a.tenants.get, (tenant,)),
                (a.tenants.create, (uid("nope"),)),
                (a.tenants.update, (tenants_pb2.Tenant(name=f"tenants/{tenant}", display_name="x"), ["display_name"])),
                (a.tenants.delete, (tenant,)),
                (a.datasets.list, ()),
                (a.datasets.list, (tenant,)),
                (a.datasets.get, (ds.name,)),
                (a.keys.list, ()),
                (a.keys.get, (own.name,)),
                (a.keys.rotate, (own.name,)),
                (a.keys.create, (AGENT,)),
                (a.users.list, ()),
            ]
            for call, args in calls:
                expect_error(call, *args, code=PERMISSION_DENIED)


# --- users and access tokens -------------------------------------------------------------------


def test_user_login_and_access_token(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    tenant = uid("ut")
    admin.tenants.create(tenant)
    user_id = uid("alice")
    password = PASSWORD + user_id
    SECRETS.add(password)
    user = admin.users.create(user_id, password, role=EDITOR, tenant=tenant)
    assert user.name == f"users/{user_id}" and user.tenant == f"tenants/{tenant}"

    with client_for(control_plane.grpc) as anonymous:
        login = anonymous.auth.login(user_id, password)
        SECRETS.add(login.access_token, login.refresh_token)
        assert login.user.name == user.name
        assert login.access_token_expire_time.ToNanoseconds() > time.time_ns()
        assert login.refresh_token_expire_time.ToNanoseconds() > login.access_token_expire_time.ToNanoseconds()
        claims = jwt_claims(login.access_token)
        assert claims["sub"] == user.name and claims["tenant"] == tenant
        assert password not in json.dumps(claims)

        # Wrong password and unknown user fail the same way, with the same words.
        wrong = expect_error(anonymous.auth.login, user_id, password + "!", code=UNAUTHENTICATED, reason="LOGIN_FAILED")
        unknown = expect_error(
            anonymous.auth.login, uid("nobody"), password, code=UNAUTHENTICATED, reason="LOGIN_FAILED"
        )
        invalid = expect_error(anonymous.auth.login, "Not A User!", password, code=UNAUTHENTICATED)
        empty = expect_error(anonymous.auth.login, user_id, "", code=UNAUTHENTICATED)
        assert wrong.message == unknown.message == invalid.message == empty.message
        assert invalid.reason == empty.reason == "LOGIN_FAILED"
        assert user_id not in wrong.message

    with client_for(control_plane.grpc, login.access_token, token=True) as me:
        who = me.auth.whoami()
        assert (who.principal, who.role, who.tenant) == (user.name, EDITOR, f"tenants/{tenant}")
        assert [t.name for t in me.tenants.list()] == [f"tenants/{tenant}"]
        # A user reads itself but no one else, and manages no users.
        assert me.users.get(user.name).name == user.name
        expect_error(me.users.list, code=PERMISSION_DENIED)
        expect_error(me.users.get, "users/someone-else", code=PERMISSION_DENIED)
    assert admin.users.get(user.name).HasField("last_login_time")


def test_tampered_access_tokens_are_refused(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    user_id = uid("mallory")
    password = PASSWORD + user_id
    SECRETS.add(password)
    admin.users.create(user_id, password, role=VIEWER)
    with client_for(control_plane.grpc) as anonymous:
        token = anonymous.auth.login(user_id, password).access_token
    SECRETS.add(token)
    header, payload, signature = jwt_segments(token)
    claims = jwt_claims(token)
    escalated = b64url_encode(json.dumps({**claims, "role": ADMIN}).encode())
    forged_key = Ed25519PrivateKey.generate()
    tampered = {
        "signature char": f"{header}.{payload}.{flip_char(signature, len(signature) // 2)}",
        "payload char": f"{header}.{flip_char(payload, len(payload) // 2)}.{signature}",
        "escalated role": f"{header}.{escalated}.{signature}",
        "no signature": f"{header}.{payload}.",
        "alg none": ".".join([b64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()), escalated, ""]),
        "other key": jwt.encode({**claims, "role": ADMIN}, forged_key, algorithm="EdDSA"),
        "truncated": token[:-10],
    }
    assert json.loads(b64url_decode(escalated))["role"] == ADMIN
    with client_for(control_plane.grpc, token, token=True) as ok:
        assert ok.auth.whoami().role == VIEWER
    for what, bad in tampered.items():
        with client_for(control_plane.grpc, bad, token=True) as c:
            err = expect_error(c.auth.whoami, code=UNAUTHENTICATED, reason="TOKEN_INVALID")
            assert err.message == "Access token is not valid.", what
            expect_error(c.tenants.list, code=UNAUTHENTICATED)


def test_refresh_logout_and_password_change_end_sessions(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    user_id = uid("bob")
    password, new_password = PASSWORD + user_id, "another long passphrase " + user_id
    SECRETS.add(password, new_password)
    user = admin.users.create(user_id, password, role=VIEWER)
    with client_for(control_plane.grpc) as anon:
        first = anon.auth.login(user_id, password)
        second = anon.auth.login(user_id, password)
        SECRETS.add(first.access_token, first.refresh_token, second.access_token, second.refresh_token)
        assert first.refresh_token != second.refresh_token

        # Refresh gives a new, working access token.
        refreshed = anon.auth.refresh(first.refresh_token)
        SECRETS.add(refreshed.access_token)
        assert refreshed.access_token != first.access_token
        with client_for(control_plane.grpc, refreshed.access_token, token=True) as me:
            assert me.auth.whoami().principal == user.name

        # A refresh token that is not one.
        expect_error(anon.auth.refresh, "nonsense", code=UNAUTHENTICATED, reason="REFRESH_TOKEN_INVALID")
        expect_error(anon.auth.refresh, first.refresh_token + "x", code=UNAUTHENTICATED)

        # Logout ends that session only.
        anon.auth.logout(first.refresh_token)
        expect_error(anon.auth.refresh, first.refresh_token, code=UNAUTHENTICATED, reason="SESSION_ENDED")
        expect_error(anon.auth.logout, first.refresh_token, code=UNAUTHENTICATED)
        SECRETS.add(anon.auth.refresh(second.refresh_token).access_token)

        # A user sets its own password (with its access token): every session ends, the old
        # password stops working and the new one works.
        with client_for(control_plane.grpc, second.access_token, token=True) as me:
            err = expect_error(me.users.set_password, user.name, "short", code=INVALID_ARGUMENT)
            assert violation_fields(err) == {"password"}
            me.users.set_password(user.name, new_password)
        expect_error(anon.auth.refresh, second.refresh_token, code=UNAUTHENTICATED, reason="SESSION_ENDED")
        expect_error(anon.auth.login, user_id, password, code=UNAUTHENTICATED, reason="LOGIN_FAILED")
        third = anon.auth.login(user_id, new_password)
        SECRETS.add(third.access_token, third.refresh_token)

        # An admin sets it back: that ends the new session too.
        admin.users.set_password(user.name, password)
        expect_error(anon.auth.refresh, third.refresh_token, code=UNAUTHENTICATED, reason="SESSION_ENDED")
        SECRETS.add(anon.auth.login(user_id, password).refresh_token)


def test_disabled_and_deleted_users_cannot_sign_in(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    user_id = uid("carol")
    password = PASSWORD + user_id
    SECRETS.add(password)
    user = admin.users.create(user_id, password, role=VIEWER)
    with client_for(control_plane.grpc) as anon:
        session = anon.auth.login(user_id, password)
        SECRETS.add(session.access_token, session.refresh_token)
        user.disabled = True
        user = admin.users.update(user, ["disabled"])
        assert user.disabled
        expect_error(anon.auth.login, user_id, password, code=UNAUTHENTICATED, reason="USER_DISABLED")
        expect_error(anon.auth.refresh, session.refresh_token, code=UNAUTHENTICATED)
        # The wrong password still says only "incorrect": being disabled is not disclosed.
        expect_error(anon.auth.login, user_id, password + "x", code=UNAUTHENTICATED, reason="LOGIN_FAILED")
        user.disabled = False
        admin.users.update(user, ["disabled"])
        SECRETS.add(anon.auth.login(user_id, password).refresh_token)
        admin.users.delete(user.name)
        expect_error(anon.auth.login, user_id, password, code=UNAUTHENTICATED, reason="LOGIN_FAILED")


def test_user_validation(admin: Client, uid: Callable[[str], str]) -> None:
    err = expect_error(admin.users.create, uid("dave"), "elevenchars", role=VIEWER, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"password"}
    assert "password" in err.message and "12" in err.message
    err = expect_error(admin.users.create, "Bad User", "", role=0, code=INVALID_ARGUMENT)
    assert {"user_id", "password", "user.role"} <= violation_fields(err)
    err = expect_error(admin.users.create, uid("erin"), PASSWORD, role=ADMIN, tenant=uid("t"), code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"user.tenant"}
    err = expect_error(admin.users.create, uid("frank"), PASSWORD, role=AGENT, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"user.role"}
    user_id = uid("gina")
    admin.users.create(user_id, PASSWORD + user_id, role=VIEWER)
    SECRETS.add(PASSWORD + user_id)
    err = expect_error(admin.users.set_password, user_id, "x" * 11, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"password"}


def test_access_token_expires_and_refresh_renews_it(
    start_control_plane: Callable[..., ControlPlaneProcess], uid: Callable[[str], str]
) -> None:
    cp = start_control_plane("--access-token-ttl", "1s")
    ledger = SecretLedger()
    password = PASSWORD + "-expiry"
    ledger.add(cp.admin_key, password)
    with client_for(cp.grpc, cp.admin_key) as admin:
        admin.users.create("expiring", password, role=VIEWER)
    with client_for(cp.grpc) as anon:
        login = anon.auth.login("expiring", password)
        ledger.add(login.access_token, login.refresh_token)
        lifetime = login.access_token_expire_time.ToNanoseconds() / 1e9 - time.time()
        assert 0.5 < lifetime <= 2.0
        with client_for(cp.grpc, login.access_token, token=True) as me:
            assert me.auth.whoami().principal == "users/expiring"
            eventually(lambda: fails_with(me.auth.whoami, UNAUTHENTICATED, "TOKEN_EXPIRED"), timeout=10)
            err = expect_error(me.tenants.list, code=UNAUTHENTICATED, reason="TOKEN_EXPIRED")
            assert "refresh" in err.message
        renewed = anon.auth.refresh(login.refresh_token).access_token
        ledger.add(renewed)
        with client_for(cp.grpc, renewed, token=True) as me:
            assert me.auth.whoami().principal == "users/expiring"
    ledger.assert_not_in(cp.log())


def test_failed_authentications_are_rate_limited(start_control_plane: Callable[..., ControlPlaneProcess]) -> None:
    burst = 3
    cp = start_control_plane("--auth-failure-burst", str(burst), "--auth-failure-rate", "0.5")
    key = cp.admin_key
    with client_for(cp.grpc, key) as good, client_for(cp.grpc, "not-a-valid-credential") as bad:
        assert good.auth.whoami().role == ADMIN
        for _ in range(burst):
            expect_error(bad.tenants.list, code=UNAUTHENTICATED, reason="TOKEN_INVALID")
        # The address is now refused before any credential check, valid or not.
        err = expect_error(good.tenants.list, code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason="AUTH_RATE_LIMITED")
        limited_at = time.monotonic()
        assert err.retry_after is not None and 0 < err.retry_after <= 2.5
        assert "127.0.0.1" in err.message
        expect_error(bad.tenants.list, code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason="AUTH_RATE_LIMITED")
        with client_for(cp.grpc) as anon:
            login = expect_error(
                anon.auth.login,
                "someone",
                PASSWORD,
                code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                reason="AUTH_RATE_LIMITED",
            )
            assert login.retry_after is not None and login.retry_after > 0
            # Public health checks are not credential checks: never limited.
            health = raw_call(
                cp.grpc,
                "/grpc.health.v1.Health/Check",
                grpc_health_pb2.HealthCheckRequest(),
                grpc_health_pb2.HealthCheckResponse,
            )
            assert health.status == grpc_health_pb2.HealthCheckResponse.SERVING
        # Refused calls spent nothing: once the wait is over the valid key works again.
        eventually(lambda: good.auth.whoami().role == ADMIN, timeout=err.retry_after + 10, interval=0.1)
        assert time.monotonic() - limited_at >= err.retry_after - 0.3
    ledger = SecretLedger()
    ledger.add(key)
    ledger.assert_not_in(cp.log())


# --- public methods ----------------------------------------------------------------------------


def test_standard_health_is_public_floe_health_is_not(admin: Client, control_plane: ControlPlaneProcess) -> None:
    for service in ("", "floe.v1.TenantService"):
        resp = raw_call(
            control_plane.grpc,
            "/grpc.health.v1.Health/Check",
            grpc_health_pb2.HealthCheckRequest(service=service),
            grpc_health_pb2.HealthCheckResponse,
        )
        assert resp.status == grpc_health_pb2.HealthCheckResponse.SERVING, service
    err = expect_error(
        raw_call,
        control_plane.grpc,
        "/floe.v1.HealthService/GetHealth",
        health_pb2.GetHealthRequest(),
        health_pb2.GetHealthResponse,
        code=UNAUTHENTICATED,
        reason="CREDENTIAL_MISSING",
    )
    assert err.message
    health = admin.health.get()
    assert health.status == health_pb2.HEALTH_STATUS_HEALTHY
    assert [c.name for c in health.checks] == ["store"]
    # Login is public too: it answers LOGIN_FAILED, not CREDENTIAL_MISSING.
    expect_error(
        raw_call,
        control_plane.grpc,
        "/floe.v1.AuthService/Login",
        users_pb2.LoginRequest(username="nobody", password="whatever-long"),
        users_pb2.LoginResponse,
        code=UNAUTHENTICATED,
        reason="LOGIN_FAILED",
    )


def test_zz_no_secret_in_control_plane_log(control_plane: ControlPlaneProcess) -> None:
    """Runs last in this module: no key, password or token above reached the log."""
    SECRETS.add(control_plane.admin_key)
    log = control_plane.log()
    assert "User signed in" in log
    SECRETS.assert_not_in(log)
