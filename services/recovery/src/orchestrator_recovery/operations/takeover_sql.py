"""The statements and pure decisions of a graceful master takeover (no I/O here).

:mod:`orchestrator_recovery.operations.takeover` runs them; unit tests feed them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator_recovery.sql import Dialect, Positions, missing_on_master, quote, text_value
from orchestrator_shared.instance_key import InstanceKey

# the TLS columns of SHOW SLAVE STATUS (after Master_SSL_ / Source_SSL_) and the CHANGE MASTER
# options (after master_ssl_ / SOURCE_SSL_) that set them
_TLS_FILES = (
    ("CA_File", "ca"),
    ("CA_Path", "capath"),
    ("Cert", "cert"),
    ("Key", "key"),
    ("Cipher", "cipher"),
    ("Crl", "crl"),
    ("Crlpath", "crlpath"),
)


def replication_tls(
    dialect: Dialect, rows: Iterable[Mapping[str, Any]], master: InstanceKey
) -> tuple[str, ...]:
    """The TLS options of the successor's replication from ``master`` (its replica status
    ``rows``), as ``CHANGE MASTER`` options for the demoted master's link the other way: TLS
    on, the same CA, client certificate and key (paths as on the successor: the servers of
    one cluster are set up alike) and the same check of the server's certificate. Without
    them a replication user that must use TLS could never replicate again. () when that link
    does not use TLS."""
    prefix = "master_ssl" if dialect.is_mariadb else "SOURCE_SSL"
    for row in rows:

        def column(name: str, row: Mapping[str, Any] = row) -> str:
            return text_value(row.get(f"Master_{name}", row.get(f"Source_{name}")))

        if (column("Host"), column("Port")) != (master.host, str(master.port)):
            continue
        if column("SSL_Allowed").lower() != "yes":
            return ()
        parts = [f"{prefix}=1"]
        for name, option in _TLS_FILES:
            if value := column(f"SSL_{name}"):
                suffix = option if dialect.is_mariadb else option.upper()
                parts.append(f"{prefix}_{suffix}={quote(value)}")
        if column("SSL_Verify_Server_Cert").lower() == "yes":
            suffix = "verify_server_cert" if dialect.is_mariadb else "VERIFY_SERVER_CERT"
            parts.append(f"{prefix}_{suffix}=1")
        return tuple(parts)
    return ()


def demoted_master_sql(
    dialect: Dialect,
    successor: InstanceKey,
    *,
    user: str | None = None,
    password: str | None = None,
    tls: tuple[str, ...] = (),
) -> str:
    """Point the demoted (stopped, never or no longer replicating) master at ``successor``;
    ``tls``: the options of :func:`replication_tls`.

    MariaDB: ``master_use_gtid=current_pos``. The old master's ``gtid_slave_pos`` is stale
    or empty (it took writes, it did not replicate them); ``current_pos`` starts from what it
    logged itself, which is exactly what the successor applied before it was promoted.
    """
    if not dialect.is_mariadb:
        return dialect.change_master_sql(successor, user=user, password=password, extra=tls)
    parts = [f"master_host={quote(successor.host)}", f"master_port={int(successor.port)}"]
    if user is not None:
        parts += [f"master_user={quote(user)}", f"master_password={quote(password or '')}"]
    parts += tls
    parts.append("master_use_gtid=current_pos")
    return "CHANGE MASTER TO " + ", ".join(parts)


def not_applied(dialect: Dialect, master: Positions, successor: Positions) -> str | None:
    """What of the master's log the successor has not applied yet (None: it has all of it).

    The successor logs what it applies (``log_slave_updates`` is required of it), so its own
    log position holding the master's means every one of the master's transactions is in.
    """
    return missing_on_master(
        dialect, replica=Positions(binlog=master.binlog), master=Positions(binlog=successor.binlog)
    )


def parse_credentials(rows: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The first two columns of ``ReplicationCredentialsQuery``'s first row: user, password
    (None when the query answered nothing or an empty user)."""
    for row in rows:
        values = list(row.values())
        if len(values) < 2 or not values[0]:
            return None
        return _text(values[0]), _text(values[1])
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return str(value)
