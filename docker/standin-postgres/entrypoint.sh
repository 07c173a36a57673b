#!/bin/sh
# The official postgres image's first start, as far as docker/compose.yaml relies on it: as root,
# hand the data directory to the postgres user and start again as that user; on an empty data
# directory, create the cluster (UTF-8) with POSTGRES_USER as superuser and POSTGRES_PASSWORD as its
# password, open it to the network with password authentication, create POSTGRES_DB; then run
# the command (postgres).
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown -R postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?is required, as by the official image}"
    user=${POSTGRES_USER:-postgres}
    database=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "stand-in postgres: created the cluster, user $user, database $database"
fi
exec "$@"
