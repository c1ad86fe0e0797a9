#!/bin/sh
# Runs once, when the postgres container initializes an empty data directory: creates the role the
# indexer logs in with (password: $INDEXER_DB_PASSWORD) and makes it the owner of the database.
# It is not a superuser: it owns the indexer's tables, views and writer locks, and may create the
# cluster-wide `analyst` role and set that role's statement_timeout (CREATEROLE), nothing more.
# An existing volume is not touched: there, run these statements as the superuser once.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$INDEXER_DB_PASSWORD" -v db="$POSTGRES_DB" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE xstock_indexer LOGIN CREATEROLE NOSUPERUSER NOCREATEDB PASSWORD :'pw';
ALTER DATABASE :"db" OWNER TO xstock_indexer;
ALTER SCHEMA public OWNER TO xstock_indexer;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
