"""The etcd key layout every service agrees on (docs/coordinator.md, docs/recovery.md).

- :mod:`.leadership` — the coordinator's election keys: the leader, the members, the fencing
  token;
- :mod:`.recovery` — what recovery remembers (global switch, active and last recoveries) and what
  operators register through topology-api (downtime, promotion rules), read and written through
  a small key-value protocol that the etcd adapter fills.
"""
