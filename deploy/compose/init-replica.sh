# Sourced by the MariaDB image's entrypoint on a replica (db2, db3) after init-users.sh:
# replicate from db1 with GTID, over TLS with db1's certificate checked against the CA.
secrets=${ORCHESTRATOR_SECRETS:-/run/orchestrator}
master_host=${ORCHESTRATOR_MASTER_HOST:-db1}
master_port=${ORCHESTRATOR_MASTER_PORT:-3306}
repl_password=$(cat "$secrets/repl-password")

docker_process_sql <<SQL
CHANGE MASTER TO master_host='$master_host', master_port=$master_port, master_user='repl',
  master_password='$repl_password', master_use_gtid=slave_pos, master_connect_retry=1,
  master_ssl=1, master_ssl_ca='$secrets/ca.pem', master_ssl_verify_server_cert=1;
START SLAVE;
SQL
