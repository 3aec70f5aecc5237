"""A throwaway PKI for the TLS tests (``pki`` fixture in ``tests/conftest.py``)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["issue_pki"]


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _issue(
    ca_key: ec.EllipticCurvePrivateKey | None, ca_name: x509.Name | None, cn: str, *, ca: bool, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(ca_key or key, hashes.SHA256())
    return key, cert


def issue_pki(d: Path) -> dict[str, Path]:
    """A test CA and a server (``localhost``, ``127.0.0.1``) and a client certificate it signed, as
    PEM files in ``d``: ``ca``, ``server_cert``/``server_key``, ``client_cert``/``client_key``."""
    ca_key, ca_cert = _issue(None, None, "floe test CA", ca=True, server=False)
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for name, server in (("server", True), ("client", False)):
        key, cert = _issue(ca_key, ca_cert.subject, f"floe {name}", ca=False, server=server)
        out[f"{name}_cert"] = d / f"{name}.pem"
        out[f"{name}_key"] = d / f"{name}-key.pem"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, out[f"{name}_key"])
    return out
