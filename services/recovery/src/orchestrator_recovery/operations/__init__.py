"""Operator commands, answered by the active worker on ``orchestrator.v1.command.<name>``.

:mod:`.commands` verifies and dispatches each request (and answers the recovery commands:
``recover``, ``ack``, global switches); :mod:`.base` is what every changing operation shares
(lease guard before each statement, undo on failure, one audit entry). By family:
:mod:`.instance` (start/stop replica, read-only, semi-sync flags...), :mod:`.control`,
:mod:`.binlog`, :mod:`.gtid`, :mod:`.errant`, the moves (:mod:`.moves`, :mod:`.moves_co_master`,
:mod:`.moves_many`), :mod:`.takeover` (graceful master takeover), :mod:`.maintenance` and the UI's
read-only :mod:`.drop_checks`. Each ``*_sql`` module holds its family's statements and pure row
readers.
"""
