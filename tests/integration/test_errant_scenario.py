"""orchestrator's ``gtid-errant`` system test (reference §10.3) in our form, through the whole
stack (real sandbox, discovery, topology-api, recovery workers, the CLI):

* a write on a replica is an errant GTID, shown by the API (``GtidErrant``) and found in its
  binary logs (``locate-gtid-errant``); ``gtid-errant-reset-master`` clears it;
* a replica below an errant one inherits the transaction: orchestrator moves it below the
  master anyway and then shows it errant too; we refuse that move, naming the transaction
  (the replica would carry, and break on, a transaction the master never had);
* ``gtid-errant-inject-empty`` makes the master have it: nothing is errant any more, and the
  move goes through.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

from orchestrator_cli.client import run_client
from tests.integration.stack_support import Stack, StackFactory
from tests.integration.test_recovery_stack import api_get, wait_listed, wait_until

pytestmark = pytest.mark.integration


def cli(stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run_client([*argv, "--api", stack.api], out=out, environ={})
    return code, out.getvalue(), capsys.readouterr().err


def errant(stack: Stack, key: str) -> str | None:
    found: Any = api_get(stack, f"/api/instance/{key.replace(':', '/')}")
    return None if found is None else str(found["GtidErrant"])


def test_errant_found_inherited_refused_and_cleared(
    make_stack: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_stack()
    sandbox = stack.sandbox
    zero, one, two, three = (sandbox.node(i).key for i in range(4))
    wait_listed(stack, zero)
    time.sleep(1.5)  # a recovery worker leads
    # a write on replica 1 (root writes through read_only; an id the master never reaches, so
    # that the master's later rows do not collide with it)
    sandbox.execute(1, "INSERT INTO sandbox.t (id, note) VALUES (1000001, 'errant on 1')")
    shown = wait_until(lambda: errant(stack, one), timeout=15, what="errant GTID on 1")
    assert shown.startswith("0-2-"), shown  # domain 0, server_id 2
    code, out, err = cli(stack, capsys, "-c", "locate-gtid-errant", "-i", one)
    assert code == 0 and out.strip(), (code, out, err)
    assert cli(stack, capsys, "-c", "gtid-errant-reset-master", "-i", one)[:2] == (0, f"{one}\n")
    wait_until(lambda: errant(stack, one) == "", timeout=15, what="no errant GTID on 1")
    # 3 below 2; a write on 2: errant on 2, and 3 has it too
    assert cli(stack, capsys, "-c", "relocate", "-i", three, "-d", two)[:2] == (
        0,
        f"{three}<{two}\n",
    )
    sandbox.execute(2, "INSERT INTO sandbox.t (id, note) VALUES (1000002, 'errant on 2')")
    wait_until(lambda: errant(stack, two), timeout=15, what="errant GTID on 2")
    code, out, err = cli(stack, capsys, "-c", "relocate", "-i", three, "-d", zero)
    assert (code, out) == (1, ""), (code, out, err)
    assert "0-3-" in err and "1236" in err, err  # the transaction named, and why
    # the master takes the errant transaction (empty): nothing errant, and the move goes
    assert cli(stack, capsys, "-c", "gtid-errant-inject-empty", "-i", two)[0] == 0
    wait_until(lambda: errant(stack, two) == "", timeout=15, what="no errant GTID on 2")
    assert cli(stack, capsys, "-c", "relocate", "-i", three, "-d", zero)[:2] == (
        0,
        f"{three}<{zero}\n",
    )
    wait_until(lambda: errant(stack, three) == "", timeout=15, what="no errant GTID on 3")
    # everyone still replicates (the errant rows themselves stay where they were written:
    # clearing the bookkeeping does not make the data the same, orchestrator's neither)
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('after the errant ones')")
    for index in (1, 2, 3):
        wait_until(
            lambda index=index: (
                sandbox.execute(
                    index, "SELECT COUNT(*) FROM sandbox.t WHERE note = 'after the errant ones'"
                )[0][0]
                == 1
            ),
            timeout=10,
            what=f"node {index} replicates the master's write",
        )
