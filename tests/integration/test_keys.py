"""floe.v1.KeyService against a real control plane: secrets shown once, keys that work, filters
and pages, revocation and rotation that take effect at once (or when a grace period ends),
expiry, validation and who may grant what."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from floe import Client
from floe.v1 import keys_pb2
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
    client_for,
    create_key_expiring,
    expect_error,
    fails_with,
    violation_fields,
)

SERVICE = keys_pb2.KEY_KIND_SERVICE
USER = keys_pb2.KEY_KIND_USER
SECRETS = SecretLedger()


def _whoami(target: str, secret: str) -> str:
    with client_for(target, secret) as c:
        return str(c.auth.whoami().principal)


def test_create_returns_secret_once_and_key_works(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    key, secret = admin.keys.create(EDITOR, display_name="ci editor")
    SECRETS.add(secret)
    key_id = key.name.removeprefix("keys/")
    assert key.name.startswith("keys/") and key_id
    assert key.prefix == f"floe_u_{key_id}"
    assert secret.startswith(key.prefix + "_")
    assert len(secret) > len(key.prefix) + 32
    assert key.kind == USER and key.role == EDITOR and key.tenant == ""
    assert key.HasField("create_time") and not key.HasField("revoke_time")
    assert key.etag

    # The secret never comes back: not from Get, not from List, in no field and no bytes.
    suffix = secret.split("_", 3)[3]
    got = admin.keys.get(key.name)
    assert got.name == key.name and got.prefix == key.prefix and got.display_name == "ci editor"
    listed = [k for k in admin.keys.list() if k.name == key.name]
    assert len(listed) == 1
    for msg in (got, listed[0]):
        raw = msg.SerializeToString()
        assert suffix.encode() not in raw and secret.encode() not in raw
    assert "secret" not in {f.name for f in keys_pb2.ApiKey.DESCRIPTOR.fields}

    # The new key authenticates as itself, with its role.
    with client_for(control_plane.grpc, secret) as c:
        me = c.auth.whoami()
        assert me.principal == key.name and me.role == EDITOR and me.tenant == ""
        assert c.tenants.list() is not None

    # A caller-chosen id names the key; agent keys default to the service kind.
    wanted = uid("k")
    agent_key, agent_secret = admin.keys.create(AGENT, key_id=wanted)
    SECRETS.add(agent_secret)
    assert agent_key.name == f"keys/{wanted}"
    assert agent_key.kind == SERVICE and agent_secret.startswith(f"floe_s_{wanted}_")
    err = expect_error(admin.keys.create, VIEWER, key_id=wanted, code=grpc.StatusCode.ALREADY_EXISTS)
    assert wanted in err.message


def test_list_filters_and_pagination(admin: Client, uid: Callable[[str], str]) -> None:
    tenant = uid("keys")
    other = uid("keys")
    admin.tenants.create(tenant)
    admin.tenants.create(other)
    viewers = [admin.keys.create(VIEWER, tenant=tenant, display_name=f"v{i}")[0] for i in range(3)]
    agent, agent_secret = admin.keys.create(AGENT, tenant=tenant)
    revoked, revoked_secret = admin.keys.create(EDITOR, tenant=tenant)
    elsewhere, elsewhere_secret = admin.keys.create(VIEWER, tenant=other)
    SECRETS.add(agent_secret, revoked_secret, elsewhere_secret)
    admin.keys.revoke(revoked.name)

    active = {k.name for k in [*viewers, agent]}
    assert {k.name for k in admin.keys.list(tenant=tenant)} == active
    assert {k.name for k in admin.keys.list(tenant=tenant, show_revoked=True)} == active | {revoked.name}
    assert [k.name for k in admin.keys.list(tenant=tenant, kind=SERVICE)] == [agent.name]
    assert {k.name for k in admin.keys.list(tenant=tenant, kind=USER)} == {k.name for k in viewers}
    assert [k.name for k in admin.keys.list(tenant=other)] == [elsewhere.name]
    everything = {k.name for k in admin.keys.list()}
    assert active | {elsewhere.name} <= everything
    assert revoked.name not in everything
    assert revoked.name in {k.name for k in admin.keys.list(show_revoked=True)}
    listed_revoked = [k for k in admin.keys.list(tenant=tenant, show_revoked=True) if k.name == revoked.name]
    assert len(listed_revoked) == 1 and listed_revoked[0].HasField("revoke_time")

    # Pages of two: every key once, in name order, the last page without a token.
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = admin.keys.list_page(tenant=tenant, show_revoked=True, page_size=2, page_token=token)
        pages += 1
        assert len(page.api_keys) <= 2
        seen += [k.name for k in page.api_keys]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == sorted(active | {revoked.name})

    # A token is bound to its query; a negative page size is refused.
    first = admin.keys.list_page(tenant=tenant, page_size=2)
    assert first.next_page_token
    err = expect_error(
        admin.keys.list_page, tenant=other, page_size=2, page_token=first.next_page_token, code=INVALID_ARGUMENT
    )
    assert violation_fields(err) == {"page_token"}
    err = expect_error(admin.keys.list_page, page_token="garbage!", code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"page_token"}
    err = expect_error(admin.keys.list_page, page_size=-1, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"page_size"}


def test_revoke_takes_effect_on_the_next_call(admin: Client, control_plane: ControlPlaneProcess) -> None:
    key, secret = admin.keys.create(EDITOR)
    SECRETS.add(secret)
    with client_for(control_plane.grpc, secret) as c:
        # Two successful calls: the second is served from the verified-key cache.
        assert c.auth.whoami().principal == key.name
        assert c.auth.whoami().principal == key.name
        revoked = admin.keys.revoke(key.name)
        assert revoked.HasField("revoke_time")
        err = expect_error(c.auth.whoami, code=UNAUTHENTICATED, reason="KEY_REVOKED")
        assert key.prefix in err.message and secret not in err.message
        expect_error(c.tenants.list, code=UNAUTHENTICATED, reason="KEY_REVOKED")
    # A fresh connection fails the same way; the key stays readable and revoking again is harmless.
    with client_for(control_plane.grpc, secret) as c:
        expect_error(c.auth.whoami, code=UNAUTHENTICATED, reason="KEY_REVOKED")
    assert admin.keys.get(key.name).revoke_time == revoked.revoke_time
    assert admin.keys.revoke(key.name).revoke_time == revoked.revoke_time
    assert key.name not in {k.name for k in admin.keys.list()}


def test_revoke_while_first_use_is_being_verified(admin: Client, control_plane: ControlPlaneProcess) -> None:
    """A key revoked while its first call is in argon2 verification must not be cached as valid.

    The first call may succeed or fail depending on the interleaving; every call after the
    revocation has returned must fail, whatever the interleaving.
    """
    for delay in (0.0, 0.04):
        key, secret = admin.keys.create(VIEWER)
        SECRETS.add(secret)
        with client_for(control_plane.grpc, secret) as c, ThreadPoolExecutor(1) as pool:
            first = pool.submit(fails_with, c.auth.whoami, UNAUTHENTICATED)
            time.sleep(delay)  # shifts the revocation within the ~100 ms verification; not a wait
            admin.keys.revoke(key.name)
            first.result(timeout=10)
            err = expect_error(c.auth.whoami, code=UNAUTHENTICATED)
            assert err.reason == "KEY_REVOKED", f"revoked at +{delay}s, yet: {err}"


def test_rotate_without_grace_replaces_the_key_at_once(admin: Client, control_plane: ControlPlaneProcess) -> None:
    key, secret = admin.keys.create(VIEWER, display_name="rotating")
    SECRETS.add(secret)
    with client_for(control_plane.grpc, secret) as old:
        assert old.auth.whoami().principal == key.name  # cached from here on
        rotated = admin.keys.rotate(key.name)
        SECRETS.add(rotated.secret)
        new_key = rotated.api_key
        assert new_key.name != key.name
        assert new_key.rotated_from == key.name
        assert (new_key.role, new_key.kind, new_key.tenant, new_key.display_name) == (VIEWER, USER, "", "rotating")
        assert rotated.secret.startswith(new_key.prefix + "_") and rotated.secret != secret
        assert rotated.previous.name == key.name and rotated.previous.HasField("revoke_time")
        expect_error(old.auth.whoami, code=UNAUTHENTICATED, reason="KEY_REVOKED")
    assert _whoami(control_plane.grpc, rotated.secret) == new_key.name
    # A revoked key cannot be rotated again.
    err = expect_error(admin.keys.rotate, key.name, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"name"}


def test_rotate_with_grace_keeps_the_old_key_until_it_ends(admin: Client, control_plane: ControlPlaneProcess) -> None:
    key, secret = admin.keys.create(VIEWER)
    SECRETS.add(secret)
    grace = 2
    with client_for(control_plane.grpc, secret) as old:
        assert old.auth.whoami().principal == key.name
        before = time.time()
        rotated = admin.keys.rotate(key.name, grace_seconds=grace)
        SECRETS.add(rotated.secret)
        ends = rotated.previous.revoke_time.ToNanoseconds() / 1e9
        assert before + grace - 1 <= ends <= time.time() + grace + 1
        # Within the grace period both keys work.
        if time.time() < ends - 0.5:
            assert old.auth.whoami().principal == key.name
        assert _whoami(control_plane.grpc, rotated.secret) == rotated.api_key.name
        # Listed as active until the grace period ends.
        if time.time() < ends - 0.5:
            assert key.name in {k.name for k in admin.keys.list()}

        eventually(lambda: fails_with(old.auth.whoami, UNAUTHENTICATED, "KEY_REVOKED"), timeout=grace + 10)
        assert time.time() >= ends - 0.05
    assert _whoami(control_plane.grpc, rotated.secret) == rotated.api_key.name


def test_rotate_grace_over_seven_days_is_refused(admin: Client) -> None:
    key, secret = admin.keys.create(VIEWER)
    SECRETS.add(secret)
    err = expect_error(admin.keys.rotate, key.name, grace_seconds=8 * 86400, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"grace_period"}
    assert not admin.keys.get(key.name).HasField("revoke_time")


def test_expired_key_stops_working(admin: Client, control_plane: ControlPlaneProcess) -> None:
    expires = time.time() + 2.5
    key, secret = create_key_expiring(admin, expires, role=VIEWER, display_name="short-lived")
    SECRETS.add(secret)
    assert abs(key.expire_time.ToNanoseconds() / 1e9 - expires) < 0.01
    with client_for(control_plane.grpc, secret) as c:
        if time.time() < expires - 0.5:
            assert c.auth.whoami().principal == key.name

        eventually(lambda: fails_with(c.auth.whoami, UNAUTHENTICATED, "KEY_REVOKED"), timeout=15)
        assert time.time() >= expires - 0.05
    # An expiry in the past is bad input.
    err = expect_error(create_key_expiring, admin, time.time() - 60, role=VIEWER, code=INVALID_ARGUMENT)
    assert violation_fields(err) == {"api_key.expire_time"}


def test_invalid_create_requests_name_the_field(admin: Client, uid: Callable[[str], str]) -> None:
    tenant = uid("inv")
    admin.tenants.create(tenant)
    cases: list[tuple[dict[str, object], str]] = [
        ({"role": 0}, "api_key.role"),
        ({"role": ADMIN, "tenant": tenant}, "api_key.tenant"),
        ({"role": VIEWER, "key_id": "Not_An_Id"}, "api_key_id"),
        ({"role": VIEWER, "display_name": "x" * 201}, "api_key.display_name"),
        ({"role": VIEWER, "tenant": "tenants/Bad_Tenant"}, "api_key.tenant"),
    ]
    for fields, field in cases:
        role = fields.pop("role")
        err = expect_error(admin.keys.create, role, **fields, code=INVALID_ARGUMENT, reason="INVALID_ARGUMENT")
        assert field in violation_fields(err), err
        assert field in err.message
    # A well-formed tenant that does not exist.
    expect_error(admin.keys.create, VIEWER, tenant=uid("missing"), code=NOT_FOUND)
    # Malformed names on Get/Revoke/Rotate.
    for call in (admin.keys.get, admin.keys.revoke, admin.keys.rotate):
        err = expect_error(call, "keys/Bad_Name", code=INVALID_ARGUMENT)
        assert violation_fields(err) == {"name"}
    expect_error(admin.keys.get, f"keys/{uid('nokey')}", code=NOT_FOUND)


def test_who_may_grant_what(admin: Client, control_plane: ControlPlaneProcess) -> None:
    _, editor_secret = admin.keys.create(EDITOR)
    _, viewer_secret = admin.keys.create(VIEWER)
    SECRETS.add(editor_secret, viewer_secret)
    bootstrap = admin.auth.whoami().principal
    with client_for(control_plane.grpc, editor_secret) as editor:
        err = expect_error(editor.keys.create, ADMIN, code=PERMISSION_DENIED)
        assert "ROLE_ADMIN" in err.message
        # An editor may hand out its own role or less, and manage those keys.
        made, made_secret = editor.keys.create(VIEWER)
        SECRETS.add(made_secret)
        assert made.role == VIEWER
        peer, peer_secret = editor.keys.create(EDITOR)
        SECRETS.add(peer_secret)
        # Agent keys for every tenant are for admins only.
        expect_error(editor.keys.create, AGENT, code=PERMISSION_DENIED)
        # It cannot revoke or rotate an admin key.
        expect_error(editor.keys.revoke, bootstrap, code=PERMISSION_DENIED)
        expect_error(editor.keys.rotate, bootstrap, code=PERMISSION_DENIED)
        editor.keys.revoke(peer.name)
        editor.keys.revoke(made.name)
    with client_for(control_plane.grpc, viewer_secret) as viewer:
        # A viewer reads keys but writes none: creating a key is a write, even a viewer key.
        assert viewer.keys.list()
        expect_error(viewer.keys.create, VIEWER, code=PERMISSION_DENIED)
        expect_error(viewer.keys.create, ADMIN, code=PERMISSION_DENIED)
        expect_error(viewer.keys.revoke, made.name, code=PERMISSION_DENIED)
    assert _whoami(control_plane.grpc, control_plane.admin_key) == bootstrap


def test_tenant_bound_editor_creates_keys_only_for_its_tenant(
    admin: Client, control_plane: ControlPlaneProcess, uid: Callable[[str], str]
) -> None:
    mine, theirs = uid("own"), uid("other")
    admin.tenants.create(mine)
    admin.tenants.create(theirs)
    their_key, their_secret = admin.keys.create(VIEWER, tenant=theirs)
    bound, bound_secret = admin.keys.create(EDITOR, tenant=mine)
    SECRETS.add(their_secret, bound_secret)
    assert bound.tenant == f"tenants/{mine}"
    with client_for(control_plane.grpc, bound_secret) as editor:
        # Without a tenant the new key is bound to the caller's tenant.
        implicit, s1 = editor.keys.create(VIEWER)
        explicit, s2 = editor.keys.create(EDITOR, tenant=mine)
        agent, s3 = editor.keys.create(AGENT, tenant=mine)
        SECRETS.add(s1, s2, s3)
        assert implicit.tenant == explicit.tenant == agent.tenant == f"tenants/{mine}"
        assert _whoami(control_plane.grpc, s1) == implicit.name

        err = expect_error(editor.keys.create, VIEWER, tenant=theirs, code=PERMISSION_DENIED)
        assert mine in err.message
        expect_error(editor.keys.create, ADMIN, code=PERMISSION_DENIED)

        # It sees only its tenant's keys; others' answer NOT_FOUND as if absent.
        listed = {k.name for k in editor.keys.list()}
        assert listed == {bound.name, implicit.name, explicit.name, agent.name}
        expect_error(editor.keys.list, tenant=theirs, code=NOT_FOUND)
        for name in (their_key.name, admin.auth.whoami().principal):
            for call in (editor.keys.get, editor.keys.revoke, editor.keys.rotate):
                err = expect_error(call, name, code=NOT_FOUND)
                assert err.message == f"{name} does not exist."
        editor.keys.revoke(implicit.name)
    assert not admin.keys.get(their_key.name).HasField("revoke_time")


def test_zz_no_secret_in_control_plane_log(control_plane: ControlPlaneProcess) -> None:
    """Runs last in this module: nothing above may have logged a secret."""
    SECRETS.add(control_plane.admin_key)
    log = control_plane.log()
    assert "API key created" in log
    SECRETS.assert_not_in(log)
