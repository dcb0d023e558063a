"""A minimal blocking SQL session on a sandbox node (PyMySQL), errors as :class:`SandboxError`."""

from __future__ import annotations

import socket
from pathlib import Path
from types import TracebackType
from typing import Any

import pymysql
import pymysql.cursors

from orchestrator_cli.sandbox.config import HOST
from orchestrator_shared.errors import SandboxError

Row = tuple[Any, ...]


class NodeSession:
    """One autocommit connection, over the node's unix socket or TCP on 127.0.0.1."""

    def __init__(
        self,
        key: str,
        *,
        unix_socket: Path | None = None,
        port: int | None = None,
        user: str = "root",
        password: str = "",
        connect_timeout: float = 2.0,
        read_timeout: float | None = 30.0,
    ) -> None:
        self.key = key
        self._params: dict[str, Any] = {
            "user": user,
            "password": password,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "write_timeout": read_timeout,
            "autocommit": True,
        }
        self._unix_socket = unix_socket
        if unix_socket is None:
            self._params["host"] = HOST
            self._params["port"] = port
        self._connection: Any = None

    def __enter__(self) -> NodeSession:
        # PyMySQL leaks the socket when connecting to a unix socket fails (a node starting up),
        # so connect that socket here and hand it over.
        sock: socket.socket | None = None
        try:
            if self._unix_socket is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self._params["connect_timeout"])
                sock.connect(str(self._unix_socket))
            connection = pymysql.connect(**self._params, defer_connect=True)
            connection.connect(sock)
        except (pymysql.MySQLError, OSError) as exc:
            if sock is not None:
                sock.close()
            raise SandboxError(f"{self.key}: cannot connect: {_describe(exc)}") from exc
        self._connection = connection
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except (pymysql.MySQLError, OSError):
                connection._force_close()

    def rows(self, sql: str) -> list[Row]:
        """Run one statement; its rows as tuples (empty when it returns none)."""
        return [tuple(row) for row in self._execute(sql, pymysql.cursors.Cursor)]

    def dicts(self, sql: str) -> list[dict[str, Any]]:
        """Run one statement; its rows as column-name dicts."""
        return [dict(row) for row in self._execute(sql, pymysql.cursors.DictCursor)]

    def value(self, sql: str) -> Any:
        """The first column of the first row, or None."""
        rows = self.rows(sql)
        return rows[0][0] if rows else None

    def _execute(self, sql: str, cursor_class: Any) -> list[Any]:
        if self._connection is None:
            raise SandboxError(f"{self.key}: session is not open")
        try:
            with self._connection.cursor(cursor_class) as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        except (pymysql.MySQLError, OSError) as exc:
            raise SandboxError(f"{self.key}: {_describe(exc)} (in: {sql[:80]})") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pymysql.MySQLError) and len(exc.args) == 2:
        return f"{exc.args[0]} {exc.args[1]}"
    return str(exc) or type(exc).__name__
