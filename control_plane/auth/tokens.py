"""Access tokens: EdDSA (Ed25519) JWTs signed with a key kept in a PEM file that persists
across restarts (created with mode 0600 on first start)."""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from floe.files import write_private_file

__all__ = ["TokenClaims", "TokenSigner", "load_or_create_signing_key"]

ISSUER = "floe-control-plane"
AUDIENCE = "floe"


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_file(path, pem)
    return key


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    role: int
    tenant: str | None
    expire_time: float


class TokenSigner:
    """Issues and verifies access tokens."""

    def __init__(self, key: Ed25519PrivateKey, ttl_seconds: float) -> None:
        self._key = key
        self._public: Ed25519PublicKey = key.public_key()
        self.ttl = ttl_seconds

    def issue(self, subject: str, role: int, tenant: str | None) -> tuple[str, float]:
        now = time.time()
        # JWT times are whole seconds: round the expiry up so a token never lives shorter than
        # the configured TTL (rounding down gave a 1 s token anywhere from 0 to 1 s).
        exp = math.ceil(now + self.ttl)
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": int(now),
            "nbf": int(now) - 5,
            "exp": exp,
            "jti": secrets.token_hex(8),
            "role": role,
            "typ": "access",
        }
        if tenant:
            payload["tenant"] = tenant
        return jwt.encode(payload, self._key, algorithm="EdDSA"), float(exp)

    def verify(self, token: str) -> TokenClaims:
        """Raise ``jwt.InvalidTokenError`` (expired, tampered, wrong issuer...) or return the claims."""
        data = jwt.decode(
            token,
            self._public,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iat"]},
        )
        if data.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        return TokenClaims(str(data["sub"]), int(data["role"]), data.get("tenant"), float(data["exp"]))
