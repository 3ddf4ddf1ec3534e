"""Who may talk to a protocol endpoint: loopback by default, TLS with client certificates elsewhere.

Every endpoint binds to 127.0.0.1 unless told otherwise. Binding to any other
address (or, for a client, talking to a server that is not on loopback)
requires mutual TLS: a certificate and key of our own and a CA that the peer's
certificate must chain to (``--cert``, ``--key``, ``--ca``). The same
certificate and key sign OpenADR messages (XML signatures), and the peer
checks them against the fingerprint of the certificate it saw in the TLS
handshake. :func:`check_security` runs before any work and raises
:class:`SecurityError` with a message naming the option at fault, which the CLI
turns into exit code 2.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["SecurityError", "TLSFiles", "check_security", "is_loopback", "fingerprint"]


class SecurityError(ValueError):
    """A security setting that cannot work (missing TLS files, an expired certificate ...)."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of one endpoint: its certificate and key (TLS and XML signatures) and the CA it trusts."""

    cert: Path
    key: Path
    ca: Path


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is a loopback address."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def _load_cert(path: Path, option: str):
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecurityError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise SecurityError(f"{option} {path}: not a PEM X.509 certificate") from None


def _check_validity(cert, path: Path, option: str, now: datetime) -> None:
    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    if now > not_after:
        raise SecurityError(f"{option} {path}: the certificate expired on {not_after.isoformat()} "
                            f"(now {now.replace(microsecond=0).isoformat()}); give a valid certificate")
    if now < not_before:
        raise SecurityError(f"{option} {path}: the certificate is not valid before {not_before.isoformat()}")


def check_security(host: str, cert: Path | None, key: Path | None, ca: Path | None, *, role: str = "bind to",
                   now: datetime | None = None) -> TLSFiles | None:
    """The endpoint's TLS files, or None on loopback without them; :class:`SecurityError` when unusable.

    ``host`` is the address bound to (a server) or the server's host (a
    client, ``role="connect to"``). Off loopback all three files are
    required. Given files are checked: readable, PEM, the certificate and the
    CA within their validity period, the key a PEM private key.
    """
    given = {"--cert": cert, "--key": key, "--ca": ca}
    missing = [name for name, p in given.items() if p is None]
    if missing and len(missing) < 3:
        raise SecurityError(f"TLS needs --cert, --key and --ca together; missing {', '.join(missing)}")
    if missing:
        if not is_loopback(host):
            raise SecurityError(
                f"--host {host}: to {role} an address other than loopback (127.0.0.1), give TLS with client "
                "certificates: --cert, --key and --ca (they also sign OpenADR messages); without them only "
                "127.0.0.1 is allowed"
            )
        return None
    now = now or datetime.now(timezone.utc)
    _check_validity(_load_cert(Path(cert), "--cert"), Path(cert), "--cert", now)
    _check_validity(_load_cert(Path(ca), "--ca"), Path(ca), "--ca", now)
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(Path(key).read_bytes(), password=None)
    except OSError as exc:
        raise SecurityError(f"--key {key}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, TypeError):
        raise SecurityError(f"--key {key}: not an unencrypted PEM private key") from None
    return TLSFiles(Path(cert), Path(key), Path(ca))


def fingerprint(cert: Path) -> str:
    """OpenADR's fingerprint of a PEM certificate (the last 20 bytes of its SHA-256, as openleadr prints it)."""
    from openleadr.utils import certificate_fingerprint

    return certificate_fingerprint(Path(cert).read_bytes())
