"""Test certificates made with the ``openssl`` command: a CA and the certificates it issues
(EC P-256 keys, valid for a day), for the TLS tests of etcd, MariaDB and the API."""

from __future__ import annotations

import subprocess
from pathlib import Path

_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)


class TestAuthority:
    """A certificate authority ``<name>.pem`` / ``<name>.key`` in ``directory``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        _openssl(directory, "req", "-x509", *_EC_KEY, "-keyout", f"{name}.key",
                 "-out", f"{name}.pem", "-days", "1",
                 "-subj", f"/CN=orchestrator-test-{name}")  # fmt: skip

    @property
    def certificate(self) -> Path:
        return self.directory / f"{self.name}.pem"

    def issue(
        self,
        name: str,
        *,
        usage: str = "serverAuth",
        subject: str = "",
        alt_names: str = "IP:127.0.0.1,DNS:localhost",
    ) -> tuple[Path, Path]:
        """``<name>.pem`` signed by this CA and its key ``<name>.key``. ``usage``:
        ``serverAuth`` or ``clientAuth``; ``subject`` (default ``/CN=<name>``), e.g.
        ``/OU=dba/CN=alice``."""
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={alt_names}\nextendedKeyUsage={usage}\n")
        _openssl(self.directory, "req", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject or f"/CN={name}")  # fmt: skip
        _openssl(self.directory, "x509", "-req", "-in", f"{name}.csr", "-CA", self.certificate.name,
                 "-CAkey", f"{self.name}.key", "-CAcreateserial", "-out", f"{name}.pem",
                 "-days", "1", "-extfile", extensions.name)  # fmt: skip
        return self.directory / f"{name}.pem", self.directory / f"{name}.key"


def encrypted_copy(key: Path, passphrase: str) -> Path:
    """``key`` encrypted with ``passphrase`` (AES-256), as ``<key stem>.encrypted.key``."""
    target = key.with_name(f"{key.stem}.encrypted.key")
    _openssl(key.parent, "pkey", "-in", key.name, "-aes256", "-passout", f"pass:{passphrase}",
             "-out", target.name)  # fmt: skip
    return target


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, by file name."""
    authority = TestAuthority(directory)
    authority.issue("server", usage="serverAuth", alt_names="IP:127.0.0.1")
    authority.issue("client", usage="clientAuth", alt_names="IP:127.0.0.1")
    return {
        name: directory / name
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }
