"""The etcd adapter: the handful of etcd calls the election needs, and nothing else.

Built on aetcd's generated gRPC stubs (``aetcd.rpc``) rather than ``aetcd.Client``, because the
election needs what that client lacks: several endpoints with fail-over, TLS, fractional
per-request deadlines, and one-shot watches whose creation is itself bounded in time.

Endpoints: one gRPC channel per endpoint, made on first use. Calls go to the *current*
endpoint; when it refuses (UNAVAILABLE: stopped member, member without quorum) or does not
answer in time, the next endpoint becomes current. A refusal is retried at once on the next
endpoint while the request's deadline allows; a time-out is not (the deadline is spent).

Authentication: with a user, each channel authenticates once and sends the token with every
call; an expired or unknown token (a restarted member forgets simple tokens) authenticates again
and retries once.

Errors::

    OrchestratorError
    └── EtcdError            etcd refused a request (bad credentials, permission, bad argument)
        └── EtcdUnavailable  no endpoint answered in time (down, hung, no quorum)

gRPC errors never leave this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

# grpcio's fork handlers are on by default; a child forked (by another thread) while a call is in
# flight can crash in them before it execs. Workers fork for hooks and tests fork servers, and no
# child ever uses gRPC, so they stay off unless the operator turns them on. Must precede the
# first import of grpc (here, or through aetcd).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
from aetcd import rpc

from orchestrator_shared.config import Settings
from orchestrator_shared.errors import OrchestratorError

log = logging.getLogger(__name__)

T = TypeVar("T")

# A channel whose endpoint went away retries its connection quickly (gRPC's default backoff
# grows to 2 minutes, far longer than a lease).
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
)
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)


class EtcdError(OrchestratorError):
    """etcd refused a request (credentials, permissions, a bad argument)."""


class EtcdUnavailable(EtcdError):
    """No etcd endpoint answered in time: members down or hung, or no quorum."""


@dataclass(frozen=True, slots=True)
class EtcdOptions:
    """How to reach etcd. ``request_timeout`` bounds every call unless it says otherwise."""

    endpoints: tuple[str, ...]
    request_timeout: float = 1.0
    user: str = ""
    password: str = field(default="", repr=False)
    ca_cert_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> EtcdOptions:
        return cls(
            endpoints=tuple(settings.etcd_endpoints_or_local),
            request_timeout=settings.EtcdRequestTimeoutSeconds,
            user=settings.EtcdUser,
            password=settings.EtcdPassword,
            ca_cert_file=settings.EtcdCACertFile,
            cert_file=settings.EtcdCertFile,
            key_file=settings.EtcdKeyFile,
        )


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def from_rpc(cls, kv: Any) -> KeyValue:
        return cls(
            key=bytes(kv.key),
            value=bytes(kv.value),
            create_revision=int(kv.create_revision),
            mod_revision=int(kv.mod_revision),
            lease=int(kv.lease),
        )


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: Literal["put", "delete"]
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchResult:
    """What one bounded watch saw; continue from ``next_revision``."""

    events: tuple[WatchEvent, ...]
    next_revision: int


@dataclass(frozen=True, slots=True)
class CreateResult:
    """Outcome of a create-if-absent: whether we created it, and the key as it is now."""

    created: bool
    current: KeyValue | None
    revision: int


def prefix_range_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range or watch cover every key starting with ``prefix``."""
    end = bytearray(prefix)
    for index in range(len(end) - 1, -1, -1):
        if end[index] < 0xFF:
            end[index] += 1
            return bytes(end[: index + 1])
    return b"\0"


class _Connection:
    """One endpoint's channel, its stubs and (with auth) its token."""

    def __init__(self, endpoint: str, channel: grpc.aio.Channel) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.kv = rpc.KVStub(channel)
        self.lease = rpc.LeaseStub(channel)
        self.watch = rpc.WatchStub(channel)
        self.auth = rpc.AuthStub(channel)
        self.token: str | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("token", self.token),) if self.token else None


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EtcdError(f"{setting}: cannot read {path}: {exc.strerror}") from None


class EtcdClient:
    """A connection to an etcd cluster (see the module docstring). Use as an async context
    manager, or call ``close()`` (idempotent)."""

    def __init__(self, options: EtcdOptions) -> None:
        if not options.endpoints:
            raise EtcdError("EtcdEndpoints: no endpoint given")
        self.options = options
        self._targets: list[tuple[str, str, bool]] = []
        for endpoint in options.endpoints:
            parts = urlsplit(endpoint)
            if parts.hostname is None or parts.port is None:
                raise EtcdError(f"EtcdEndpoints: expected http(s)://host:port, got {endpoint!r}")
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            self._targets.append((endpoint, f"{host}:{parts.port}", parts.scheme == "https"))
        self._credentials: grpc.ChannelCredentials | None = None
        if any(secure for _, _, secure in self._targets):
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=(
                    _read(options.ca_cert_file, "EtcdCACertFile") if options.ca_cert_file else None
                ),
                private_key=_read(options.key_file, "EtcdKeyFile") if options.key_file else None,
                certificate_chain=(
                    _read(options.cert_file, "EtcdCertFile") if options.cert_file else None
                ),
            )
        self._connections: dict[int, _Connection] = {}
        self._current = 0
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to now."""
        return self._targets[self._current][0]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            await connection.channel.close(grace=None)

    # --- plumbing ----------------------------------------------------------------------------

    def _connection(self) -> _Connection:
        if self._closed:
            raise EtcdError("the etcd client is closed")
        index = self._current
        connection = self._connections.get(index)
        if connection is None:
            endpoint, target, secure = self._targets[index]
            if secure:
                assert self._credentials is not None
                channel = grpc.aio.secure_channel(target, self._credentials, _CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(target, _CHANNEL_OPTIONS)
            connection = _Connection(endpoint, channel)
            self._connections[index] = connection
        return connection

    def _rotate(self, failed: _Connection) -> None:
        """Make the next endpoint current, unless someone else already moved on."""
        if len(self._targets) > 1 and self._connection_index(failed) == self._current:
            self._current = (self._current + 1) % len(self._targets)
            log.debug("etcd %s failed; now using %s", failed.endpoint, self.endpoint)

    def _connection_index(self, connection: _Connection) -> int | None:
        for index, known in self._connections.items():
            if known is connection:
                return index
        return None

    async def _authenticate(self, connection: _Connection, budget: float) -> None:
        if not self.options.user or connection.token is not None:
            return
        request = rpc.AuthenticateRequest(name=self.options.user, password=self.options.password)
        response = await connection.auth.Authenticate(request, timeout=budget)
        connection.token = str(response.token)

    async def _call(
        self,
        what: str,
        invoke: Callable[[_Connection, float], Awaitable[T]],
        *,
        budget: float | None = None,
    ) -> T:
        """Run ``invoke`` against the current endpoint within ``budget`` seconds (default: the
        request timeout; see the module docstring)."""
        if budget is None:
            budget = self.options.request_timeout
        deadline = time.monotonic() + budget
        attempts = 0
        reauthenticated = False
        while True:
            connection = self._connection()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EtcdUnavailable(
                    f"etcd {what}: no answer from {connection.endpoint} within {budget:g} s"
                )
            try:
                await self._authenticate(connection, remaining)
                return await invoke(connection, max(0.001, deadline - time.monotonic()))
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                details = exc.details() or code.name
                if code is grpc.StatusCode.UNAUTHENTICATED or "invalid auth token" in details:
                    if self.options.user and not reauthenticated:
                        connection.token = None
                        reauthenticated = True
                        continue
                    raise EtcdError(f"etcd {what}: {details}") from None
                if code not in _TRANSIENT:
                    raise EtcdError(f"etcd {what}: {details}") from None
                self._rotate(connection)
                attempts += 1
                timed_out = code is grpc.StatusCode.DEADLINE_EXCEEDED
                if timed_out or attempts >= len(self._targets):
                    raise EtcdUnavailable(
                        f"etcd {what}: {connection.endpoint}: {details}"
                    ) from None
                await asyncio.sleep(0)

    # --- requests ----------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(id, granted TTL in seconds)``."""

        async def invoke(connection: _Connection, remaining: float) -> tuple[int, int]:
            response = await connection.lease.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=remaining, metadata=connection.metadata
            )
            if response.error:
                raise EtcdError(f"etcd lease grant: {response.error}")
            return int(response.ID), int(response.TTL)

        return await self._call("lease grant", invoke)

    async def keep_alive(self, lease_id: int) -> int:
        """Renew the lease once; its TTL from now, or 0 when the lease no longer exists."""

        async def invoke(connection: _Connection, remaining: float) -> int:
            call = connection.lease.LeaseKeepAlive(timeout=remaining, metadata=connection.metadata)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                response = await call.read()
            finally:
                call.cancel()
            if response is grpc.aio.EOF:
                raise EtcdUnavailable("etcd keep-alive: the stream ended without an answer")
            return max(0, int(response.TTL))

        return await self._call("keep-alive", invoke)

    async def revoke_lease(self, lease_id: int) -> None:
        async def invoke(connection: _Connection, remaining: float) -> None:
            try:
                await connection.lease.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease_id),
                    timeout=remaining,
                    metadata=connection.metadata,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.NOT_FOUND:  # already expired: fine
                    raise

        await self._call("lease revoke", invoke)

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Write ``key``; the revision of the write."""

        async def invoke(connection: _Connection, remaining: float) -> int:
            response = await connection.kv.Put(
                rpc.PutRequest(key=key, value=value, lease=lease),
                timeout=remaining,
                metadata=connection.metadata,
            )
            return int(response.header.revision)

        return await self._call("put", invoke)

    async def delete(self, key: bytes) -> bool:
        """Delete ``key``; whether it existed."""

        async def invoke(connection: _Connection, remaining: float) -> bool:
            response = await connection.kv.DeleteRange(
                rpc.DeleteRangeRequest(key=key), timeout=remaining, metadata=connection.metadata
            )
            return int(response.deleted) > 0

        return await self._call("delete", invoke)

    async def get(self, key: bytes) -> tuple[KeyValue | None, int]:
        """The key (or None) and the revision the answer is as of."""

        async def invoke(connection: _Connection, remaining: float) -> tuple[KeyValue | None, int]:
            response = await connection.kv.Range(
                rpc.RangeRequest(key=key), timeout=remaining, metadata=connection.metadata
            )
            found = KeyValue.from_rpc(response.kvs[0]) if response.kvs else None
            return found, int(response.header.revision)

        return await self._call("read", invoke)

    async def get_prefix(self, prefix: bytes) -> tuple[list[KeyValue], int]:
        async def invoke(connection: _Connection, remaining: float) -> tuple[list[KeyValue], int]:
            response = await connection.kv.Range(
                rpc.RangeRequest(key=prefix, range_end=prefix_range_end(prefix)),
                timeout=remaining,
                metadata=connection.metadata,
            )
            return [KeyValue.from_rpc(kv) for kv in response.kvs], int(response.header.revision)

        return await self._call("read", invoke)

    async def create_if_absent(self, key: bytes, value: bytes, *, lease: int) -> CreateResult:
        """One transaction: put ``key`` bound to ``lease`` only if it does not exist; either
        way, the key as it is after the transaction."""
        absent = rpc.Compare(
            key=key,
            target=rpc.Compare.CompareTarget.CREATE,
            result=rpc.Compare.CompareResult.EQUAL,
            create_revision=0,
        )
        request = rpc.TxnRequest(
            compare=[absent],
            success=[
                rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease)),
                rpc.RequestOp(request_range=rpc.RangeRequest(key=key)),
            ],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
        )

        async def invoke(connection: _Connection, remaining: float) -> CreateResult:
            response = await connection.kv.Txn(
                request, timeout=remaining, metadata=connection.metadata
            )
            current: KeyValue | None = None
            for op in response.responses:
                if op.WhichOneof("response") == "response_range" and op.response_range.kvs:
                    current = KeyValue.from_rpc(op.response_range.kvs[0])
            return CreateResult(
                created=bool(response.succeeded),
                current=current,
                revision=int(response.header.revision),
            )

        return await self._call("campaign", invoke)

    async def has_create_revision(
        self, key: bytes, create_revision: int, *, budget: float | None = None
    ) -> bool:
        """One transaction comparing the key's create_revision (a fencing check)."""
        request = rpc.TxnRequest(compare=[_same_create_revision(key, create_revision)])

        async def invoke(connection: _Connection, remaining: float) -> bool:
            response = await connection.kv.Txn(
                request, timeout=remaining, metadata=connection.metadata
            )
            return bool(response.succeeded)

        return await self._call("guard", invoke, budget=budget)

    async def delete_if_create_revision(self, key: bytes, create_revision: int) -> bool:
        """Delete ``key`` only while it still has ``create_revision`` (one transaction)."""
        request = rpc.TxnRequest(
            compare=[_same_create_revision(key, create_revision)],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
        )

        async def invoke(connection: _Connection, remaining: float) -> bool:
            response = await connection.kv.Txn(
                request, timeout=remaining, metadata=connection.metadata
            )
            return bool(response.succeeded)

        return await self._call("resign", invoke)

    async def watch(
        self,
        key: bytes,
        *,
        start_revision: int,
        max_wait: float,
        prefix: bool = False,
    ) -> WatchResult:
        """Events on ``key`` (or under it, with ``prefix``) from ``start_revision``: returns
        with the first batch, or empty after ``max_wait``. Creating the watch must succeed
        within the request timeout, so a hung member shows as :class:`EtcdUnavailable`."""
        create = rpc.WatchCreateRequest(
            key=key,
            range_end=prefix_range_end(key) if prefix else b"",
            start_revision=start_revision,
        )
        connection = self._connection()
        try:
            await self._authenticate(connection, self.options.request_timeout)
            call = connection.watch.Watch(metadata=connection.metadata)
        except grpc.aio.AioRpcError as exc:
            self._rotate(connection)
            raise EtcdUnavailable(f"etcd watch: {connection.endpoint}: {exc.details()}") from None
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await call.write(rpc.WatchRequest(create_request=create))
                created = await call.read()
            if created is grpc.aio.EOF or not created.created:
                raise EtcdUnavailable(f"etcd watch: {connection.endpoint} did not create it")
            if created.compact_revision:
                return WatchResult((), int(created.header.revision) + 1)
            events: tuple[WatchEvent, ...] = ()
            next_revision = start_revision
            if created.events:
                return _watch_result(created, next_revision)
            try:
                async with asyncio.timeout(max_wait):
                    while not events:
                        response = await call.read()
                        if response is grpc.aio.EOF or response.canceled:
                            raise EtcdUnavailable(f"etcd watch: {connection.endpoint} ended it")
                        if response.compact_revision:
                            return WatchResult((), int(response.header.revision) + 1)
                        result = _watch_result(response, next_revision)
                        events, next_revision = result.events, result.next_revision
            except TimeoutError:
                pass
            return WatchResult(events, next_revision)
        except TimeoutError:
            self._rotate(connection)
            raise EtcdUnavailable(
                f"etcd watch: no answer from {connection.endpoint} within "
                f"{self.options.request_timeout:g} s"
            ) from None
        except grpc.aio.AioRpcError as exc:
            self._rotate(connection)
            raise EtcdUnavailable(f"etcd watch: {connection.endpoint}: {exc.details()}") from None
        finally:
            call.cancel()


def _same_create_revision(key: bytes, create_revision: int) -> Any:
    return rpc.Compare(
        key=key,
        target=rpc.Compare.CompareTarget.CREATE,
        result=rpc.Compare.CompareResult.EQUAL,
        create_revision=create_revision,
    )


def _watch_result(response: Any, next_revision: int) -> WatchResult:
    events: list[WatchEvent] = []
    for event in response.events:
        kv = KeyValue.from_rpc(event.kv)
        kind: Literal["put", "delete"] = "delete" if event.type == rpc.Event.DELETE else "put"
        events.append(WatchEvent(kind, kv))
        next_revision = max(next_revision, kv.mod_revision + 1)
    return WatchResult(tuple(events), next_revision)
