"""How a query agent tells calls from its control plane: one-shot forwarding signatures and
reusable query grants, each for exactly one method/dataset and only until it expires."""

from __future__ import annotations

import time

import grpc
import pytest

from agents.query.errors import QueryError
from agents.query.forwarding import GRANT_HEADER, MAX_GRANT_SECONDS, Verifier, grant, new_secret, sign

QUERY = "/floe.v1.QueryService/ExecuteQuery"
DATASET = "tenants/a/datasets/fw"


def _refused(verifier: Verifier, metadata: list[tuple[str, str]], method: str = QUERY, scope: str = DATASET) -> str:
    with pytest.raises(QueryError) as info:
        verifier.verify(metadata, method, scope)
    assert info.value.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    return info.value.reason


def test_a_forwarding_signature_is_good_once_for_its_method_and_dataset() -> None:
    secret = new_secret()
    verifier = Verifier(secret)
    metadata = sign(secret, QUERY, DATASET, "keys/k1")
    assert verifier.verify(metadata, QUERY, DATASET) == "keys/k1"
    assert _refused(verifier, metadata) == "FORWARD_SIGNATURE_INVALID"  # replayed
    assert _refused(verifier, sign(secret, QUERY, DATASET, "keys/k1"), scope="tenants/b/datasets/fw")
    assert _refused(Verifier(new_secret()), sign(secret, QUERY, DATASET, "keys/k1"))
    old = sign(secret, QUERY, DATASET, "keys/k1", now=time.time() - 120)
    assert _refused(verifier, old) == "FORWARD_SIGNATURE_INVALID"


def test_a_grant_is_good_many_times_for_queries_on_its_dataset_until_it_expires() -> None:
    secret = new_secret()
    verifier = Verifier(secret)
    token = grant(secret, DATASET, "users/ann.o'neil", int(time.time()) + 300)
    for _ in range(3):
        assert verifier.verify([(GRANT_HEADER, token)], QUERY, DATASET) == "users/ann.o'neil"
    assert _refused(verifier, [(GRANT_HEADER, token)], scope="tenants/a/datasets/other") == "QUERY_GRANT_INVALID"
    assert _refused(verifier, [(GRANT_HEADER, token)], "/floe.v1.QueryService/GetSchema") == "QUERY_GRANT_SCOPE"
    assert _refused(Verifier(new_secret()), [(GRANT_HEADER, token)]) == "QUERY_GRANT_INVALID"
    expired = grant(secret, DATASET, "keys/k1", int(time.time()) - 60)
    assert _refused(verifier, [(GRANT_HEADER, expired)]) == "QUERY_GRANT_EXPIRED"
    # A grant for longer than any control plane issues is refused whatever its signature.
    forever = grant(secret, DATASET, "keys/k1", int(time.time()) + MAX_GRANT_SECONDS + 600)
    assert _refused(verifier, [(GRANT_HEADER, forever)]) == "QUERY_GRANT_EXPIRED"
    for malformed in ("", "g1", "g1.x.y.z", "g1.1.!!.z", "v1.1.a.b", token + ".x"):
        assert _refused(verifier, [(GRANT_HEADER, malformed)]) == "QUERY_GRANT_INVALID", malformed


def test_without_either_the_call_is_unauthenticated() -> None:
    verifier = Verifier(new_secret())
    assert _refused(verifier, []) == "FORWARD_SIGNATURE_INVALID"
    assert _refused(verifier, [("authorization", "Bearer floe_admin_x")]) == "FORWARD_SIGNATURE_INVALID"
