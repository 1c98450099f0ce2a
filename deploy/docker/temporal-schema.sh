#!/bin/sh
# Temporal's two PostgreSQL databases, created on the first start and brought to the schema of
# this admin-tools image on every start (run by the temporal-schema service of
# docker-compose.yml). Needs SQL_HOST, SQL_USER and SQL_PASSWORD (read by temporal-sql-tool).
set -eu

for db in temporal temporal_visibility; do
    case "$db" in
        temporal) schema=temporal ;;
        *) schema=visibility ;;
    esac
    set -- --plugin postgres12 --ep "$SQL_HOST" -p 5432 -u "$SQL_USER" --db "$db"
    # `create` fails once the database exists, i.e. on every start after the first; the two
    # schema steps are idempotent and do fail when the database is really unreachable.
    temporal-sql-tool "$@" create 2>/dev/null || echo "database $db already exists"
    temporal-sql-tool "$@" setup-schema -v 0.0
    temporal-sql-tool "$@" update-schema -d "/etc/temporal/schema/postgresql/v12/$schema/versioned"
done
echo "Temporal schemas are up to date"
