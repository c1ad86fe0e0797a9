#!/bin/sh
# Runs once, when the postgres container initializes an empty data directory: creates the
# read-only role that Grafana's SQL panels log in with (password: $GRAFANA_DB_PASSWORD).
# An existing volume is not touched: change the password there with ALTER ROLE.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$GRAFANA_DB_PASSWORD" -v db="$POSTGRES_DB" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'pw' IN ROLE pg_read_all_data;
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
ALTER ROLE grafana_reader SET statement_timeout = '30s';
GRANT CONNECT ON DATABASE :"db" TO grafana_reader;
SQL
