"""Throw-away certificates for the protocol tests, generated at run time (cryptography).

One CA signs a server certificate for 127.0.0.1 / localhost and client
certificates; :func:`make_pki` can also make an expired client certificate.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    ca: Path
    server: Pair
    client: Pair
    expired: Pair  # a client certificate that expired yesterday
    stranger: Pair  # a client certificate from another CA


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert, key) -> Pair:
    cp, kp = path.with_suffix(".crt"), path.with_suffix(".key")
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return Pair(cp, kp)


def _cert(name: str, key, issuer_name, issuer_key, *, ca=False, days=(-1, 30), server=False):
    now = datetime.now(timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now + timedelta(days=days[0]))
         .not_valid_after(now + timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(where: Path) -> PKI:
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpp test CA")])
    ca_cert = _cert("vpp test CA", ca_key, ca_name, ca_key, ca=True, days=(-2, 30))
    ca = _write(where / "ca", ca_cert, ca_key)
    out = {}
    for name, days, server in (("server", (-1, 30), True), ("client", (-1, 30), False),
                               ("expired", (-10, -1), False)):
        k = _key()
        out[name] = _write(where / name, _cert(name, k, ca_name, ca_key, days=days, server=server), k)
    other_key = _key()
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other CA")])
    k = _key()
    stranger = _write(where / "stranger", _cert("stranger", k, other_name, other_key), k)
    return PKI(ca.cert, out["server"], out["client"], out["expired"], stranger)
