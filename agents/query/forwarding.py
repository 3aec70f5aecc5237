"""How a query agent knows a call comes from its control plane (both sides of the handshake).

The agent draws a random secret at start and sends it in its hello (``endpoints["query_auth"]``)
over the control stream — the channel it already trusts with its own API key, so only the
control plane it is connected to learns the secret. The secret itself never travels again: the
control plane signs each forwarded call with HMAC-SHA256 over the method, the resource the call
is about (dataset or tenant) and the caller, with a short expiry and a nonce. The agent accepts a
call only with a valid, unexpired, unseen signature for exactly that method and resource, so a
signature captured on the wire cannot be replayed or pointed at another tenant's dataset, and a
process without the secret (anyone calling the agent's port directly) is refused.
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

__all__ = ["CALLER_HEADER", "SIGNATURE_HEADER", "Verifier", "new_secret", "sign"]

SIGNATURE_HEADER = "x-floe-forward-signature"
CALLER_HEADER = "x-floe-forward-caller"
#: How long a signature is good for; generous for clock steps, short for replays.
TTL_SECONDS = 60
_SKEW = 5


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


def _unauthenticated(why: str) -> QueryError:
    return QueryError(
        grpc.StatusCode.UNAUTHENTICATED,
        f"This query agent serves only calls forwarded by its control plane ({why}); call the control plane.",
        "FORWARD_SIGNATURE_INVALID",
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
            raise _unauthenticated("no forwarding signature")
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

    def _forget(self, now: float) -> None:
        """Drop nonces whose signatures have expired (those are refused as expired anyway); a
        few calls at a time, never a pass over all of them."""
        expiry = self._expiry
        while expiry and expiry[0][0] < now - _SKEW:
            self._seen.discard(expiry.popleft()[1])
