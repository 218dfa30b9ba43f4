#!/bin/sh
# First start: initdb with POSTGRES_USER as the superuser, create POSTGRES_DB, run the
# /docker-entrypoint-initdb.d/*.sql scripts on a server that listens on its socket only. Then
# (every start) exec the command, the server in the foreground.
set -eu
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ "$auth" = trust ]; then
        initdb --username="$user" --auth=trust --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA"
    else
        : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust}"
        printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
        initdb --username="$user" --auth="$auth" --pwfile=/tmp/pwfile --encoding=UTF8 \
            --locale=C.UTF-8 -D "$PGDATA"
        rm -f /tmp/pwfile
    fi
    echo "host all all all $auth" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        createdb --username="$user" "$db"
    fi
    for script in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$script" ] || continue
        psql -v ON_ERROR_STOP=1 --username="$user" --dbname="$db" -f "$script"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec "$@"
