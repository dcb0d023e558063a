"""Infrastructure adapters that more than one service stands on.

- :mod:`.nats_client` — the NATS connection (auth, TLS, reconnects, errors translated);
- :mod:`.etcd` — the etcd client (endpoints, TLS, auth, fail-over between endpoints);
- :mod:`.election` — the leader lease, its fencing token and the guard every destructive step
  calls (the recovery workers run it; the coordinator observes it);
- :mod:`.probe` (with :mod:`.probe_sql` and :mod:`.mysql_fast`) — the MySQL/MariaDB prober that
  discovery crawls with and recovery verifies failures with;
- :mod:`.mysql_client` — MySQL connections with the cleartext guard and one-line errors;
- :mod:`.tls` — the HTTPS server and client contexts (topology-api and the ``orchestrator``
  command);
- :mod:`.entrypoint` — how every service process starts and stops (settings, logging, signals,
  exit codes);
- :mod:`.ports` — the callables the services hand each other's building blocks (``Guard``,
  ``Audit``).

Nothing here knows a service: services import this package, never the reverse.
"""
