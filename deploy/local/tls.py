"""The local endpoint's self-signed TLS certificate: created on first start, reused afterwards.

The certificate (`cert.pem`, also the CA bundle clients pass as `verify=`) and its key (`key.pem`, mode
0600) live in `default_tls_dir()`: `$NCF_LOCAL_TLS_DIR`, else `$XDG_CACHE_HOME/ncf-sagemaker/local-endpoint`
(`~/.cache/...`). It is valid for `127.0.0.1`, `::1` and `localhost`, and is replaced when missing,
unreadable or within a day of expiring. Importing this module needs no TensorFlow (the `invoke`
command uses `default_cert_path()` to trust the local endpoint).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
_HOSTS = ("127.0.0.1", "::1", "localhost")
_VALID_DAYS = 365


def default_tls_dir() -> Path:
    """Where the certificate lives unless `--tls-dir` says otherwise."""
    if os.environ.get("NCF_LOCAL_TLS_DIR"):
        return Path(os.environ["NCF_LOCAL_TLS_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ncf-sagemaker" / "local-endpoint"


def default_cert_path() -> Path:
    """The certificate a client should trust (`verify=`) for the local endpoint."""
    return default_tls_dir() / CERT_FILE


def _still_valid(cert_path: Path, key_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.timedelta(days=1) > dt.datetime.now(dt.UTC)


def _build(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ncf-sagemaker local endpoint")])
    now = dt.datetime.now(dt.UTC)
    alt_names = [x509.IPAddress(ipaddress.ip_address(h)) for h in _HOSTS[:2]] + [x509.DNSName(_HOSTS[2])]
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / KEY_FILE
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_certificate(directory: Path) -> tuple[Path, Path, bool]:
    """`(cert_path, key_path, created)`: reuse a valid pair in `directory`, else write a new one."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if _still_valid(cert_path, key_path):
        return cert_path, key_path, False
    _build(directory)
    return cert_path, key_path, True


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context
