"""The pure parts of fencing statements by the lease (issue 13 §3) and of telling a NATS
handler's bug from routine network errors (§2)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from nats.errors import ConnectionClosedError

from orchestrator_adapters.nats_client import callback_failed
from orchestrator_recovery.mysql import bounded_statement, lease_left

pytestmark = pytest.mark.unit


@dataclass
class Approval:
    valid_until: float


def test_the_server_side_limit_is_rounded_down_to_the_millisecond_and_never_zero() -> None:
    assert bounded_statement("STOP SLAVE", 1.23456) == (
        "SET STATEMENT max_statement_time=1.234 FOR STOP SLAVE"
    )
    # 0 would mean "no limit" to MariaDB
    assert bounded_statement("STOP SLAVE", 0.0001) == (
        "SET STATEMENT max_statement_time=0.001 FOR STOP SLAVE"
    )
    # SET STATEMENT does not nest: a statement carrying one is sent as it is
    already = "set statement sql_log_bin=0 FOR FLUSH HOSTS"
    assert bounded_statement(already, 2.0) == already


def test_the_lease_left_comes_from_the_approval_when_it_has_one() -> None:
    left = lease_left(Approval(valid_until=time.monotonic() + 2.0))
    assert left is not None and 1.9 < left <= 2.0
    assert lease_left(None) is None  # a guard without an approval sets no bound


def test_only_a_handlers_own_exception_counts_as_a_failed_callback() -> None:
    assert callback_failed(KeyError("a bug"))
    assert callback_failed(ValueError("a bug"))
    assert not callback_failed(ConnectionClosedError())
    assert not callback_failed(ConnectionResetError())
    assert not callback_failed(TimeoutError())
