# Sourced by the MariaDB image's entrypoint when a server's data directory is first made
# (/docker-entrypoint-initdb.d): the replication and topology users, both over TLS only,
# with passwords from the secrets volume (make-secrets.sh). Not written to the binary log:
# every server creates its own, so a replica starts from an empty GTID position.
secrets=${ORCHESTRATOR_SECRETS:-/run/orchestrator}
repl_password=$(cat "$secrets/repl-password")
topology_password=$(cat "$secrets/topology-password")

docker_process_sql <<SQL
SET SESSION sql_log_bin = 0;
CREATE USER 'repl'@'%' IDENTIFIED BY '$repl_password' REQUIRE SSL;
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'orchestrator'@'%' IDENTIFIED BY '$topology_password' REQUIRE SSL;
-- what discovery and recovery need (docs/sandbox.md: the sandbox's topology user)
GRANT SUPER, PROCESS, RELOAD, REPLICATION SLAVE, BINLOG MONITOR, BINLOG ADMIN,
      REPLICATION MASTER ADMIN, REPLICA MONITOR, REPLICATION SLAVE ADMIN, READ_ONLY ADMIN,
      CONNECTION ADMIN, SELECT ON *.* TO 'orchestrator'@'%';
SQL
