"""The automated path: a failure analysed, verified and recovered with no operator involved.

:mod:`.worker` decides (gates, verification, anti-flapping, the returning old master) and
:mod:`.recovering` runs one recovery through its phases (:mod:`.gates` decides whether it may
start, :mod:`.returning` fences an old master that comes back, :mod:`.analysis_events` tells what
the analysis found); :mod:`.executor` carries out a promotion plan on the servers, step by step
(:mod:`.steps`, :mod:`.catch_up`, bounded by :mod:`.timeouts`), :mod:`.semi_sync` a semi-sync plan;
:mod:`.outcome` is what they report and :mod:`.aftermath` what is left to do once a master
failover completed. Nothing here imports :mod:`orchestrator_recovery.operations`: the operator
commands stand on this path, never the reverse.
"""
