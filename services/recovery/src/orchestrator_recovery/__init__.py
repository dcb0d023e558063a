"""Recovery service: the workers that analyse the fleet, recover failures and answer operator
commands (docs/recovery.md).

- :mod:`.failover` — the automated path (worker loop, one recovery's phases, the executor);
- :mod:`.operations` — operator commands, which stand on the failover path;
- :mod:`.fleet` (the warm picture of the fleet from the bus), :mod:`.mysql` (bounded connections
  and statements), :mod:`.sql` (statements and row readers), :mod:`.hooks`, :mod:`.publisher`,
  :mod:`.ports` (what the worker is given) and :mod:`.wiring` (the ports filled in);
- :mod:`.main` — ``orchestrator-recovery``.
"""
