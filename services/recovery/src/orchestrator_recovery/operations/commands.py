"""Operations topology-api forwards on ``orchestrator.v1.command.<operation>`` (DESIGN.md §2).

Every worker subscribes; only the leader answers (a standby stays silent, so with no leader the
API's request finds nobody and it answers 503). Each request gets one :class:`CommandReply`:
``ok`` with a message and orchestrator's ``Details``, or a one-line ``error``.

Operations here (the recovery issue): ``recover`` (``instance``, optional ``destination`` = the
replica to promote), ``force-master-failover`` (``instance`` = the cluster's master),
``disable-global-recoveries``, ``enable-global-recoveries``, ``check-global-recoveries``,
``ack-cluster-recoveries`` (``cluster``), ``ack-all-recoveries``. Any other operation is
answered with an error naming it.

Before anything runs, ``verifier`` (:mod:`orchestrator_shared.command_signing`) checks that the
body's operation is the subject's, and the request's signature, expiry and nonce; then
``hosts`` (``DiscoveryAllowedHostnameFilters``) that every instance the request names may be
contacted. A refused request is answered ``command refused: <why>`` and audited
(``command-refused``).

With ``locks`` (:mod:`orchestrator_recovery.operations.maintenance`), every handler given as
``operations``
runs only while it holds its instances' transient locks and no one else's maintenance lock holds
them, and ``begin-maintenance``, ``end-maintenance``, ``in-maintenance``, ``maintenance`` are
answered too; the recovery operations above are not locked, nor are the read-only
``queries`` (the web UI's drop checks, :mod:`orchestrator_recovery.operations.drop_checks`), which
change nothing and may ask about every instance of a cluster at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import ValidationError

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.failover.worker import RecoveryWorker
from orchestrator_recovery.ports import Handler
from orchestrator_shared.analysis import Analysis, AnalysisCode
from orchestrator_shared.bus import CommandFailure, CommandReply, CommandRequest, Subjects
from orchestrator_shared.command_signing import CommandVerifier
from orchestrator_shared.dead_letters import one_line
from orchestrator_shared.errors import InvalidInstanceKey, LeaseLost, OrchestratorError
from orchestrator_shared.etcd.recovery import RecoveryControl
from orchestrator_shared.events import AuditEvent, RecoveryPhase
from orchestrator_shared.host_policy import HostPolicy
from orchestrator_shared.instance_key import InstanceKey

log = logging.getLogger(__name__)


MAX_COMMANDS_IN_PROGRESS = 256  # commands one worker handles at once (docs/bus.md)


class OperationLocks(Protocol):
    """Maintenance locks (:class:`orchestrator_recovery.operations.maintenance.MaintenanceLocks`):
    every handler given as ``operations`` runs through ``guarded`` (it refuses an instance another
    operation or someone else's maintenance holds), and ``operations()`` adds
    begin-/end-/in-maintenance and the list."""

    def guarded(self, handler: Handler) -> Handler: ...
    def operations(self) -> Mapping[str, Handler]: ...


class Leadership:
    """What the responder needs of the election: am I the leader, my guard and token."""

    def __init__(self, is_leader: Callable[[], bool], guard: Guard, token: Callable[[], int]):
        self.is_leader = is_leader
        self.guard = guard
        self.token = token


class CommandResponder:
    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        worker: RecoveryWorker,
        control: RecoveryControl,
        leadership: Leadership,
        *,
        operations: Mapping[str, Handler] | None = None,
        locks: OperationLocks | None = None,
        queries: Mapping[str, Handler] | None = None,
        verifier: CommandVerifier,
        audit: Callable[[AuditEvent], Awaitable[bool]] | None = None,
        hosts: HostPolicy | None = None,
        max_in_progress: int = MAX_COMMANDS_IN_PROGRESS,
    ) -> None:
        """``hosts``: the allow-list (``DiscoveryAllowedHostnameFilters``); a command naming
        an instance it refuses is refused and audited before any handler runs.
        ``max_in_progress``: commands handled at once; past it a command is answered "busy"
        at once (never left to the caller's timeout), counted in ``busy_refusals``."""
        self._max_in_progress = max_in_progress
        self.busy_refusals = 0
        self._busy_logged = False
        self._nc = nc
        self._verifier = verifier
        self._hosts = hosts or HostPolicy()
        self._audit = audit
        self._subjects = subjects
        self._worker = worker
        self._control = control
        self._leadership = leadership
        self._answering: set[asyncio.Task[None]] = set()
        self.internal_errors = 0
        """Commands that failed with an unexpected exception (each still got a reply)."""
        self.answered: collections.Counter[tuple[str, str]] = collections.Counter()
        """Replies sent, by operation (``other``: one this worker does not know) and result:
        ``ok`` or the failure's kind (``refused``, ``failed``, ``busy``, ``unavailable``)."""
        self._handlers: dict[str, Handler] = {
            "recover": self._recover,
            "force-master-failover": self._force_master_failover,
            "force-master-takeover": self._force_master_failover,
            "disable-global-recoveries": self._disable,
            "enable-global-recoveries": self._enable,
            "check-global-recoveries": self._check,
            "ack-cluster-recoveries": self._ack_cluster,
            "ack-all-recoveries": self._ack_all,
            **{
                name: handler if locks is None else locks.guarded(handler)
                for name, handler in (operations or {}).items()
            },
            **(locks.operations() if locks is not None else {}),
            **(queries or {}),  # read-only: never locked
        }

    async def run(self) -> None:
        subscription = await self._nc.subscribe(self._subjects.command("*"), cb=self._on_request)
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        if not self._leadership.is_leader() or not msg.reply:
            # a standby never answers, but remembers the nonces it would accept: a request
            # replayed after a change of leader is refused by the new one too
            with contextlib.suppress(ValidationError):
                self._verifier.refusal(msg.subject, CommandRequest.model_validate_json(msg.data))
            return
        if len(self._answering) >= self._max_in_progress:
            await self._refuse_busy(msg)
            return
        self._busy_logged = False
        task = asyncio.create_task(self._answer(msg))
        self._answering.add(task)  # the loop keeps tasks weakly: hold it until it is done
        task.add_done_callback(self._answering.discard)

    async def _refuse_busy(self, msg: Msg) -> None:
        """The bound on commands in progress is reached: answer at once, log once per spell."""
        self.busy_refusals += 1
        if not self._busy_logged:
            self._busy_logged = True
            log.error(
                "%d commands in progress, the most this worker handles at once: refusing "
                "new ones until some finish",
                self._max_in_progress,
            )
        operation = msg.subject.rsplit(".", 1)[-1]
        busy = CommandReply(
            ok=False,
            operation=operation,
            error=(
                f"active recovery worker is busy: {self._max_in_progress} commands in "
                "progress; try again"
            ),
            kind=CommandFailure.BUSY,
        )
        await self._respond(msg, busy)

    async def _answer(self, msg: Msg) -> None:
        """Answer one request, whatever happens: a reply, a refusal, or (an unexpected
        exception: a bug) a one-line failure, logged at ERROR and counted, so the caller never
        waits for its timeout."""
        operation = msg.subject.rsplit(".", 1)[-1]
        try:
            request = CommandRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            # one line, without the values sent (the caller may show it as it is)
            error = f"bad request: {one_line(exc)}"
            refused = CommandReply(
                ok=False, operation=operation, error=error, kind=CommandFailure.REFUSED
            )
            await self._respond(msg, refused)
            return
        try:
            reply = await self._decide(msg, request)
        except asyncio.CancelledError:
            # leadership lost (the worker cancels what it runs on a cluster) or shutdown:
            # say so rather than leave the caller waiting for its timeout
            await self._respond(
                msg,
                _refused(
                    request,
                    "active recovery worker did not finish: it stopped leading mid-way; what "
                    "was done is in the audit",
                    kind=CommandFailure.UNAVAILABLE,
                ),
            )
            raise
        except Exception as exc:
            self.internal_errors += 1
            log.error("command %s failed unexpectedly: %r", request.operation, exc, exc_info=exc)
            reply = _refused(
                request,
                f"{request.operation} failed in the recovery worker ({type(exc).__name__}); "
                "what was done is in the audit, the cause in the worker's log",
                kind=CommandFailure.FAILED,
            )
        await self._respond(msg, reply)

    async def _respond(self, msg: Msg, reply: CommandReply) -> None:
        """Send ``reply``, counted in :attr:`answered`."""
        operation = reply.operation if reply.operation in self._handlers else "other"
        self.answered[operation, _result(reply)] += 1
        with contextlib.suppress(NatsError):
            await msg.respond(reply.model_dump_json(by_alias=True).encode())

    async def _decide(self, msg: Msg, request: CommandRequest) -> CommandReply:
        refusal = self._verifier.refusal(msg.subject, request) or self._host_refusal(request)
        if refusal is not None:
            await self._audit_refusal(msg.subject, request, refusal)
            return _refused(request, f"command refused: {refusal}")
        return await self.handle(request)

    def _host_refusal(self, request: CommandRequest) -> str | None:
        """Why the allow-list refuses an instance the command names, if it does (the
        instances found in arguments such as a drop check's targets are refused one by one,
        when the executor would connect to them)."""
        for key in request_keys(request):
            refusal = self._hosts.refusal(key)
            if refusal:
                return f"{key}: {refusal}"
        return None

    async def _audit_refusal(self, subject: str, request: CommandRequest, refusal: str) -> None:
        """A refused command, in the audit: what it asked, who it claims to come from (not
        verified), never its signature."""
        log.warning("refused a command on %s: %s", subject, refusal)
        if self._audit is None:
            return
        await self._audit(
            AuditEvent(
                type="command-refused",
                message=f"{request.operation} refused: {refusal}",
                key=request.instance,
                cluster=request.cluster,
                user=f"unverified:{request.requested_by}" if request.requested_by else "",
                at=datetime.now(UTC),
                ok=False,
                details={
                    "subject": subject,
                    "operation": request.operation,
                    "destination": request.destination,
                    "nonce": request.nonce,
                    "expires_at": request.expires_at.isoformat() if request.expires_at else "",
                    "signed": bool(request.signature),
                },
            )
        )

    async def handle(self, request: CommandRequest) -> CommandReply:
        handler = self._handlers.get(request.operation)
        if handler is None:
            return _refused(request, f"operation {request.operation} is not available yet")
        try:
            return await handler(request)
        except LeaseLost as exc:
            return _refused(
                request,
                f"active recovery worker did not finish: {exc}",
                kind=CommandFailure.UNAVAILABLE,
            )
        except (OrchestratorError, ValueError) as exc:
            return _refused(request, str(exc))

    # --- recoveries ---------------------------------------------------------------------------
    async def _recover(self, request: CommandRequest) -> CommandReply:
        key = _key(request.instance, "instance")
        candidate = _key(request.destination, "candidate") if request.destination else None
        ignored = self._worker.ignoring(key)
        if ignored is not None:
            return _refused(
                request,
                f"{key} matches RecoveryIgnoreHostnameFilters ({ignored!r}): it has no analysis, "
                "so there is nothing to recover (as in orchestrator); use force-master-failover "
                "for a master, or relocate its replicas",
            )
        analysis = self._worker.analysis_of(key)
        if analysis is None:
            return _refused(request, f"{key} is not known to the recovery worker")
        if not self._worker.recoverable(analysis):
            return _refused(
                request,
                f"{key} is not analysed as failed ({analysis.code}); nothing to recover",
            )
        return await self._run(request, analysis, candidate=candidate, verify=True)

    async def _force_master_failover(self, request: CommandRequest) -> CommandReply:
        """``force-master-failover``, and ``force-master-takeover`` (``destination`` = the
        direct replica of the writable master to promote)."""
        key = _key(request.instance, "instance")
        analysis = self._worker.analysis_of(key)
        if analysis is None or not analysis.is_master:
            return _refused(request, f"{key} is not the master of a known cluster")
        candidate = None
        if request.operation == "force-master-takeover":
            candidate = _key(request.destination, "destination")
            if candidate not in analysis.replicas:
                return _refused(
                    request, f"{candidate} must be directly replicating from the master {key}"
                )
            if analysis.is_read_only:
                return _refused(request, f"{key} is not a writeable master")
        forced = replace(analysis, code=AnalysisCode.DEAD_MASTER)
        return await self._run(request, forced, candidate=candidate, verify=False)

    async def _run(
        self,
        request: CommandRequest,
        analysis: Analysis,
        *,
        candidate: InstanceKey | None,
        verify: bool,
    ) -> CommandReply:
        outcome = await self._worker.recover(
            analysis,
            self._leadership.guard,
            self._leadership.token(),
            forced=True,
            requested=candidate,
            requested_by=request.requested_by,
            verify=verify,
            command=request.operation,
        )
        if outcome is None:
            return _refused(request, f"the failure of {analysis.key} was not confirmed")
        data = outcome.data
        if outcome.phase is not RecoveryPhase.COMPLETED:
            return _refused(request, data.reason or f"recovery {outcome.phase}")
        details = {
            "Id": data.recovery_id,
            "SuccessorKey": _key_json(data.successor),
            "LostReplicas": [_key_json(key) for key in sorted(data.lost)],
            "FencingToken": data.fencing_token,
        }
        message = f"Recovered {data.failed}; successor: {data.successor or 'none'}"
        return CommandReply(ok=True, operation=request.operation, message=message, details=details)

    # --- the global switch and acknowledgements ----------------------------------------------
    async def _disable(self, request: CommandRequest) -> CommandReply:
        await self._control.disable(by=request.requested_by, at=datetime.now(UTC))
        return _done(request, "Globally disabled recoveries", "disabled")

    async def _enable(self, request: CommandRequest) -> CommandReply:
        await self._control.enable()
        return _done(request, "Globally enabled recoveries", "enabled")

    async def _check(self, request: CommandRequest) -> CommandReply:
        switch = await self._control.global_switch()
        state = "disabled" if switch.disabled else "enabled"
        return _done(request, f"Global recoveries {state}", state)

    async def _ack_cluster(self, request: CommandRequest) -> CommandReply:
        if not request.cluster:
            return _refused(request, "no cluster given")
        lifted = await self._control.acknowledge(request.cluster, by=request.requested_by)
        return _done(request, f"Acknowledged {request.cluster} recoveries", int(lifted))

    async def _ack_all(self, request: CommandRequest) -> CommandReply:
        count = 0
        for cluster in sorted(await self._control.unacknowledged_clusters()):
            count += await self._control.acknowledge(cluster, by=request.requested_by)
        return _done(request, "Acknowledged all recoveries", count)


def _key(text: str, what: str) -> InstanceKey:
    try:
        return InstanceKey.parse(text)
    except InvalidInstanceKey as exc:
        raise ValueError(f"bad {what}: {exc}") from None


def _key_json(text: str) -> dict[str, object] | None:
    if not text:
        return None
    key = InstanceKey.parse(text)
    return {"Hostname": key.host, "Port": key.port}


def _done(request: CommandRequest, message: str, details: object) -> CommandReply:
    return CommandReply(ok=True, operation=request.operation, message=message, details=details)


def request_keys(request: CommandRequest) -> list[InstanceKey]:
    """The instances an operation touches (``instance``, ``destination``, and the replicas
    or siblings a move of many names in its arguments), each once, in a fixed order; a
    missing or malformed key is left to the handler to refuse."""
    found: set[InstanceKey] = set()
    listed = [
        text.strip()
        for name in ("replicas", "siblings")
        for text in request.arguments.get(name, "").split(",")
    ]
    for text in (request.instance, request.destination, *listed):
        with contextlib.suppress(InvalidInstanceKey):
            if text:
                found.add(InstanceKey.parse(text))
    return sorted(found, key=str)


def _result(reply: CommandReply) -> str:
    """``ok``, or the kind of failure (every failure this worker sends has one; a reply
    without it would be a refusal, as the API reads it: docs/bus.md)."""
    if reply.ok:
        return "ok"
    return str(reply.kind or CommandFailure.REFUSED)


def _refused(
    request: CommandRequest, error: str, *, kind: CommandFailure = CommandFailure.REFUSED
) -> CommandReply:
    """A reply that says the operation was not done, and what kind of not (the API's status)."""
    return CommandReply(ok=False, operation=request.operation, error=error, kind=kind)
