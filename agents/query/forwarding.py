"""How a query agent knows a call comes from its control plane (both sides of the handshake).

The agent draws a random secret at start and sends it in its hello (``endpoints["query_auth"]``)
over the control stream — the channel it already trusts with its own API key, so only the
control plane it is connected to learns the secret. The secret itself never travels again: the
control plane signs each forwarded call with HMAC-SHA256 over the method, the resource the call
is about (dataset or tenant) and the caller, with a short expiry and a nonce. The agent accepts a
call only with a valid, unexpired, unseen signature for exactly that method and resource, so a
signature captured on the wire cannot be replayed or pointed at another tenant's dataset, and a
process without the secret (anyone calling the agent's port directly) is refused.

Grants (``IssueQueryGrant``) let a client skip the control plane for ExecuteQuery: the control
plane, having authorized the caller for one dataset, signs the same way a token naming that
dataset, the caller and an expiry, and hands it to the caller with the agent's address. The agent
accepts it for ExecuteQuery on exactly that dataset until it expires (at most
``MAX_GRANT_SECONDS`` ahead), many times over; a token for one agent is worthless at another
(each has its own secret) and at the same agent after it restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Iterable

import grpc

from agents.query.errors import QueryError
from floe.query_direct import GRANT_HEADER

__all__ = ["CALLER_HEADER", "GRANT_HEADER", "SIGNATURE_HEADER", "Verifier", "grant", "new_secret", "sign"]

SIGNATURE_HEADER = "x-floe-forward-signature"
CALLER_HEADER = "x-floe-forward-caller"
#: How long a signature is good for; generous for clock steps, short for replays.
TTL_SECONDS = 60
_SKEW = 5
#: The longest a grant may be issued for (``query_grant_ttl`` is at most this).
MAX_GRANT_SECONDS = 3600
#: What a grant allows: running queries, nothing else.
_GRANT_METHODS = frozenset({"/floe.v1.QueryService/ExecuteQuery"})


def new_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def _mac(secret: str, *fields: str) -> str:
    message = "\n".join(("v1", *fields)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, scope: str, caller: str, now: float | None = None) -> list[tuple[str, str]]:
    """The metadata the control plane adds to a forwarded call."""
    expires = int((time.time() if now is None else now) + TTL_SECONDS)
    nonce = secrets.token_hex(12)
    value = f"v1.{expires}.{nonce}.{_mac(secret, method, scope, caller, str(expires), nonce)}"
    return [(SIGNATURE_HEADER, value), (CALLER_HEADER, caller)]


def grant(secret: str, dataset: str, caller: str, expires: int) -> str:
    """A grant token for ExecuteQuery on ``dataset`` by ``caller`` until ``expires`` (Unix s)."""
    who = base64.urlsafe_b64encode(caller.encode()).decode().rstrip("=")
    return f"g1.{expires}.{who}.{_mac(secret, 'grant', dataset, caller, str(expires))}"


def _unauthenticated(why: str, reason: str = "FORWARD_SIGNATURE_INVALID") -> QueryError:
    return QueryError(
        grpc.StatusCode.UNAUTHENTICATED,
        "This query agent serves only calls forwarded by its control plane or carrying a query grant it "
        f"issued ({why}); call the control plane.",
        reason,
    )


class Verifier:
    """Checks forwarded calls against this process's secret; remembers nonces until they expire."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._seen: set[str] = set()
        #: (expires, nonce) in arrival order, which is expiry order give or take clock skew.
        self._expiry: deque[tuple[int, str]] = deque()

    def verify(self, metadata: Iterable[tuple[str, str | bytes]], method: str, scope: str) -> str:
        """Return the caller named by the control plane, or raise UNAUTHENTICATED."""
        values = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in metadata}
        signature = values.get(SIGNATURE_HEADER, "")
        caller = values.get(CALLER_HEADER, "")
        if not signature:
            if GRANT_HEADER in values:
                return self._granted(values[GRANT_HEADER], method, scope)
            raise _unauthenticated("no forwarding signature or query grant")
        parts = signature.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
            raise _unauthenticated("malformed forwarding signature")
        _, expires_text, nonce, mac = parts
        expires = int(expires_text)
        now = time.time()
        if expires < now - _SKEW or expires > now + TTL_SECONDS + _SKEW:
            raise _unauthenticated("expired forwarding signature")
        expected = _mac(self.secret, method, scope, caller, str(expires), nonce)
        if not hmac.compare_digest(expected, mac):
            raise _unauthenticated("forwarding signature does not match this call")
        self._forget(now)
        if nonce in self._seen:
            raise _unauthenticated("forwarding signature already used")
        self._seen.add(nonce)
        self._expiry.append((expires, nonce))
        return caller

    def _granted(self, token: str, method: str, scope: str) -> str:
        """The caller a grant was issued to, if it is valid for ``method`` on ``scope``."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "g1" or not parts[1].isdigit():
            raise _unauthenticated("malformed query grant", "QUERY_GRANT_INVALID")
        _, expires_text, who, mac = parts
        try:
            caller = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
        except ValueError:
            raise _unauthenticated("malformed query grant", "QUERY_GRANT_INVALID") from None
        expected = _mac(self.secret, "grant", scope, caller, expires_text)
        if not hmac.compare_digest(expected, mac):
            raise _unauthenticated("query grant not issued for this dataset by this agent's control plane",
                                   "QUERY_GRANT_INVALID")  # fmt: skip
        now = time.time()
        expires = int(expires_text)
        if expires < now - _SKEW or expires > now + MAX_GRANT_SECONDS + _SKEW:
            raise _unauthenticated("query grant expired; ask the control plane for a new one", "QUERY_GRANT_EXPIRED")
        if method not in _GRANT_METHODS:
            raise QueryError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"A query grant allows ExecuteQuery only, not {method.rsplit('/', 1)[-1]}; call the control plane.",
                "QUERY_GRANT_SCOPE",
            )
        return caller

    def _forget(self, now: float) -> None:
        """Drop nonces whose signatures have expired (those are refused as expired anyway); a
        few calls at a time, never a pass over all of them."""
        expiry = self._expiry
        while expiry and expiry[0][0] < now - _SKEW:
            self._seen.discard(expiry.popleft()[1])
