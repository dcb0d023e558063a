"""A throwaway CA and a server certificate for a sandbox (``orchestrator up --sandbox-tls``).

The CA signs one certificate, for ``127.0.0.1``, and its private key is then dropped (never
written): nothing else can ever be signed by it, so trusting ``ca.pem`` trusts this sandbox's
nodes only. The files live in the sandbox directory and are made again with each new sandbox.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orchestrator_cli.sandbox.config import HOST, SandboxTLS
from orchestrator_shared.errors import SandboxError

VALID_DAYS = 365  # a kept sandbox (`--keep-sandbox`) may live long; the CA key is gone anyway


def make_throwaway_tls(directory: Path) -> SandboxTLS:
    """``ca.pem``, ``server.pem`` and ``server.key`` (owner-only) in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("orchestrator sandbox throwaway CA")
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        _builder(_name(f"orchestrator sandbox {HOST}"), ca_name, server_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = SandboxTLS(
        ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key"
    )
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        tls.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        tls.key.unlink(missing_ok=True)
        descriptor = os.open(tls.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as key_file:
            key_file.write(key_pem)
    except OSError as exc:
        raise SandboxError(f"cannot write the sandbox's TLS files to {directory}: {exc}") from None
    return tls


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a little clock skew
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
