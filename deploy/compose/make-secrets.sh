#!/bin/sh
# Makes every secret the compose stack needs, once, into DIR (the "secrets" volume):
# a private CA, TLS certificates for NATS, etcd, the MariaDB servers, PostgreSQL and the API,
# client certificates for etcd, one NATS password per service, the MariaDB passwords, the
# PostgreSQL password (and the API's DSN holding it), the API's admin password and the key
# topology-api signs commands with.
#
# Each service gets a directory of its own holding only what it needs (mounted read-only as
# /run/orchestrator through the volume's subpath), owned by the user the service runs as:
#   ca/             the CA's key: never mounted anywhere
#   nats/ etcd/     server certificate and key (+ NATS: passwords.env, the variables
#                   deploy/nats/nats-server.conf reads)
#   db/             server certificate and key, root/repl/topology passwords (mysql, uid 999)
#   postgres/       server certificate and key, the store user's password (postgres, uid 999)
#   discovery/ topology-api/ recovery/ coordinator/   CA, NATS password, etcd client
#                   certificate, topology password, signing key, the store's DSN...
#                   (orchestrator, uid 10001)
#   operator/       the CA and the API's admin password, for you (docs/deploy.md)
# A second run changes nothing (restarts keep their secrets); delete the volume to rotate all.
#
# usage: make-secrets.sh DIR      (needs openssl; runs as root in compose to set owners)
set -eu
out=${1:?usage: make-secrets.sh DIR}
days=825
umask 077

if [ -f "$out/.complete" ]; then
    echo "make-secrets: $out already holds the stack's secrets"
    exit 0
fi
mkdir -p "$out"
for dir in ca nats etcd db postgres discovery topology-api recovery coordinator operator; do
    mkdir -p "$out/$dir"
done

random() {  # $1 bytes of randomness as hex, prefixed with a letter (nats-server reads a
    # variable as a config token: one starting with a digit would be taken for a number)
    printf 'pw%s' "$(openssl rand -hex "$1")"
}

# the CA
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$out/ca/ca.key" -out "$out/ca/ca.pem" -days 3650 \
    -subj "/CN=orchestrator compose CA" 2>/dev/null

issue() {  # issue DIR NAME USAGE SUBJECT_ALT_NAMES
    dir=$out/$1 name=$2
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$4" "$3" > "$dir/$name.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$out/ca/ca.pem" -CAkey "$out/ca/ca.key" \
        -CAcreateserial -CAserial "$out/ca/ca.srl" -out "$dir/$name.pem" -days "$days" \
        -extfile "$dir/$name.ext" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

# servers: the compose service names and Kubernetes' (the members of a StatefulSet are
# <pod>.<headless service>), plus loopback for checks from the host. NATS and etcd members dial
# each other with their server certificate: it must be a client's too.
local_names="DNS:localhost,IP:127.0.0.1"
issue nats server serverAuth,clientAuth "DNS:nats,DNS:*.nats-cluster,$local_names"
issue etcd server serverAuth,clientAuth "DNS:etcd,DNS:*.etcd-peer,$local_names"
issue db server serverAuth "DNS:db1,DNS:db2,DNS:db3,$local_names"
issue postgres server serverAuth "DNS:postgres,$local_names"
issue topology-api server serverAuth \
    "DNS:topology-api,DNS:topology-api-1,DNS:topology-api-2,$local_names"
# etcd clients: etcd requires a certificate signed by the CA from everyone
for service in topology-api recovery coordinator; do
    issue "$service" etcd-client clientAuth "DNS:$service"
done

for dir in nats etcd db postgres discovery topology-api recovery coordinator operator; do
    cp "$out/ca/ca.pem" "$out/$dir/ca.pem"
done

# NATS: one user per service (deploy/nats/nats-server.conf reads these variables)
: > "$out/nats/passwords.env"
for pair in discovery:DISCOVERY topology-api:API recovery:RECOVERY coordinator:COORDINATOR; do
    service=${pair%%:*} variable=${pair#*:}
    password=$(random 24)
    printf '%s' "$password" > "$out/$service/nats-password"
    printf 'ORCHESTRATOR_NATS_%s_PASSWORD=%s\n' "$variable" "$password" >> "$out/nats/passwords.env"
done

# MariaDB: root, the replication user, the topology user (the services log in as it)
random 24 > "$out/db/root-password"
random 24 > "$out/db/repl-password"
random 24 > "$out/db/topology-password"
for service in discovery topology-api recovery; do
    cp "$out/db/topology-password" "$out/$service/topology-password"
done

# PostgreSQL, topology-api's store: the password of its user, and the DSN the API reads
# (ORCHESTRATOR_PostgreSQLDSN_FILE) holding it: TLS, the server's certificate checked
random 24 > "$out/postgres/password"
printf 'postgresql://orchestrator:%s@postgres:5432/orchestrator?sslmode=verify-full&sslrootcert=%s\n' \
    "$(cat "$out/postgres/password")" /run/orchestrator/ca.pem > "$out/topology-api/postgres-dsn"

# the API: its admin password (basic auth) and the key it signs commands with
random 24 > "$out/topology-api/http-password"
cp "$out/topology-api/http-password" "$out/operator/http-password"
openssl rand -hex 32 > "$out/topology-api/command-signing-key"
cp "$out/topology-api/command-signing-key" "$out/recovery/command-signing-key"

# owners: the orchestrator image runs as 10001, the MariaDB image as mysql (999), the
# PostgreSQL image as postgres (999); NATS and etcd read theirs as root
if [ "$(id -u)" = 0 ]; then
    chown -R 999:999 "$out/db" "$out/postgres"
    for dir in discovery topology-api recovery coordinator; do
        chown -R 10001:10001 "$out/$dir"
    done
fi
chmod 0711 "$out"
touch "$out/.complete"
echo "make-secrets: wrote the stack's secrets to $out"
