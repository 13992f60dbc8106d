#!/bin/bash
# The official postgres image's entrypoint, reduced to what the parity tier uses: as root, own
# PGDATA and drop to postgres; as postgres, initialise an empty PGDATA (initdb, password, host
# access from anywhere), then exec the server.
set -Eeo pipefail
if [ "$1" = postgres ]; then
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$PGDATA"
		chmod 00700 "$PGDATA" || :
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		exec gosu postgres "$BASH_SOURCE" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		initdb --username=postgres --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --auth-local=trust --auth-host=scram-sha-256
		printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
		printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
		echo 'PostgreSQL init process complete; ready for start up.'
	fi
fi
exec "$@"
