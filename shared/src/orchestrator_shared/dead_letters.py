"""Dead letters: a message a service could not handle is kept, with the reason, instead of
being redelivered forever or dropped without a trace.

A consumer that meets a message it cannot parse or apply (a bad instance key, a value its
database cannot hold, a bug) terminates it on its own stream, so it never comes back, and
hands it here: the original bytes go to ``<root>.deadletter.<service>``, kept by the
``ORCHESTRATOR_DEADLETTERS`` stream (bounded: a week, 64 MiB, the oldest dropped first), with
headers saying where it came from and why. Read them with
``nats stream view ORCHESTRATOR_DEADLETTERS`` (docs/reliability.md).

Keeping a dead letter is best-effort: if the bus refuses it, the message is still terminated
and the log line and the counter remain.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from orchestrator_shared.bus import Subjects

log = logging.getLogger(__name__)

DEAD_LETTERS_STREAM = "ORCHESTRATOR_DEADLETTERS"
MAX_AGE = timedelta(days=7)
MAX_BYTES = 64 * 1024 * 1024
MAX_REASON = 1000  # characters of the reason kept in the header
MAX_DATA = 256 * 1024  # bytes of the message kept (a snapshot is a few KiB)

# the headers of a dead letter
SUBJECT_HEADER = "Orchestrator-Subject"
REASON_HEADER = "Orchestrator-Reason"
SERVICE_HEADER = "Orchestrator-Service"


def dead_letters_stream_config(subjects: Subjects, *, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=DEAD_LETTERS_STREAM,
        subjects=[subjects.all_dead_letters],
        retention=RetentionPolicy.LIMITS,
        max_age=MAX_AGE.total_seconds(),
        max_bytes=MAX_BYTES,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def ensure_dead_letters_stream(nc: Client, subjects: Subjects, *, replicas: int = 1) -> None:
    """Create the stream when the server has none (best-effort: a warning otherwise)."""
    js = nc.jetstream(timeout=2.0)
    try:
        try:
            await js.stream_info(DEAD_LETTERS_STREAM)
        except NotFoundError:
            await js.add_stream(dead_letters_stream_config(subjects, replicas=replicas))
    except (NatsError, JetStreamError, TimeoutError) as exc:
        log.warning("dead letters: cannot set up %s: %s", DEAD_LETTERS_STREAM, exc)


def one_line(problem: BaseException | str) -> str:
    """The reason as one bounded line (the type name when the text is empty); for a
    validation error, the first field in error and what is wrong with it (never its value)."""
    if isinstance(problem, ValidationError):
        errors = problem.errors(include_input=False)
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"]) or "the message"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"not a valid {problem.title}: {where}: {first['msg']}{more}"[:MAX_REASON]
    text = str(problem).strip().splitlines()[0] if str(problem).strip() else ""
    if isinstance(problem, BaseException):
        text = f"{type(problem).__name__}: {text}" if text else type(problem).__name__
    return text[:MAX_REASON]


async def keep_dead_letter(
    nc: Client | None,
    subjects: Subjects,
    *,
    service: str,
    subject: str,
    data: bytes,
    reason: str,
) -> bool:
    """Publish the message to the dead letters; whether the bus took it."""
    if nc is None or not nc.is_connected:
        return False
    headers = {SUBJECT_HEADER: subject, REASON_HEADER: reason, SERVICE_HEADER: service}
    try:
        await nc.publish(subjects.dead_letter(service), data[:MAX_DATA], headers=headers)
    except NatsError as exc:
        log.warning("dead letter from %s not kept: %s", subject, exc)
        return False
    return True
