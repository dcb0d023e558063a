"""A throwaway ``nats-server`` with JetStream (file storage in its work directory)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import ManagedProcess, find_binary, http_get, tcp_accepts

BINARY = "nats-server"


class NatsServer(ManagedProcess):
    """``nats-server -js`` on loopback; ``url`` for clients, ``monitor_port`` for /healthz;
    ``config_file`` a server configuration (accounts, permissions) read with the flags.

    JetStream state lives in ``workdir/jetstream``, so streams survive ``kill()`` + ``restart()``.
    """

    def __init__(
        self,
        *,
        binary: Path | None = None,
        port: int | None = None,
        monitor_port: int | None = None,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        found = binary or find_binary(BINARY)
        if found is None:
            raise FileNotFoundError(f"{BINARY} not found on PATH or in /usr/sbin")
        super().__init__(name="nats")
        self.binary = found
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.config_file = config_file  # users, permissions, TLS (flags below win over it)
        self.env = dict(env or {})  # variables the config file reads ($NAME)

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.workdir / "jetstream"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--addr", LOOPBACK,
            "--port", str(self.port),
            "--http_port", str(self.monitor_port),
            "--server_name", f"harness-{self.port}",
            "--jetstream",
            "--store_dir", str(self.store_dir),
            *(["--config", str(self.config_file)] if self.config_file else []),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **self.env}

    def probe(self) -> bool:
        answer = http_get(f"http://{LOOPBACK}:{self.monitor_port}/healthz?js-enabled-only=true")
        return answer is not None and answer[0] == 200 and tcp_accepts(LOOPBACK, self.port)
