#!/bin/bash
# The official mariadb image's entrypoint, reduced to what the parity tier uses: as root, own the
# data directory and drop to mysql; as mysql, install the system tables into an empty data
# directory (mariadb-install-db) with a root account reachable from anywhere, then exec the server.
set -Eeo pipefail
DATADIR=/var/lib/mysql
if [ "$1" = mariadbd ]; then
	if [ "$(id -u)" = 0 ]; then
		find "$DATADIR" \! -user mysql -exec chown mysql: '{}' +
		exec gosu mysql "$BASH_SOURCE" "$@"
	fi
	if [ ! -d "$DATADIR/mysql" ]; then
		mariadb-install-db --datadir="$DATADIR" --skip-test-db --auth-root-authentication-method=normal \
			--skip-name-resolve --default-time-zone=SYSTEM >/dev/null
		init=/run/mysqld/init.sql
		# one statement a line: the server runs --init-file line by line
		printf "CREATE USER 'root'@'%%' IDENTIFIED BY '%s';\nGRANT ALL ON *.* TO 'root'@'%%' WITH GRANT OPTION;\nSET PASSWORD FOR 'root'@'localhost' = PASSWORD('%s');\n" \
			"$MARIADB_ROOT_PASSWORD" "$MARIADB_ROOT_PASSWORD" > "$init"
		echo 'MariaDB init process done. Ready for start up.'
		exec "$@" --skip-name-resolve --init-file="$init"
	fi
	exec "$@" --skip-name-resolve
fi
exec "$@"
