"""A database of an earlier release, built from rows the current code indexed: for the tests
that upgrade one in place (tests/test_schema.py from version 1, tests/test_holder_days.py from
version 2)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def copy_into_release(source: str, target: str, schema_sql: str, tables: Sequence[str],
                            version: int | None = None) -> dict[str, int]:
    """Apply that release's ``schema_sql`` (its schema.sql) at ``target``, record ``version`` (None:
    a release before versions were recorded), then copy ``tables`` from ``source`` with that
    release's columns, as they were (no triggers). Returns the rows copied per table."""
    src, dst = await asyncpg.connect(source), await asyncpg.connect(target)
    counts: dict[str, int] = {}
    try:
        await dst.execute(schema_sql)
        if version is not None:
            await dst.execute("INSERT INTO schema_version (version, title) VALUES ($1, $2)",
                              version, f"version {version}")
        await dst.execute("SET session_replication_role = replica")  # rows as they were: no triggers
        for table in tables:
            columns = [r["attname"] for r in await dst.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", table)]
            data = await src.fetch(f"SELECT {', '.join(columns)} FROM {table}")
            if table == "recent_blocks":  # those releases read every block's header: none known by hash alone
                data = [r for r in data if r["block_time"] is not None]
            await dst.execute(f"DELETE FROM {table}")
            await dst.copy_records_to_table(table, records=[tuple(r.values()) for r in data], columns=columns)
            counts[table] = len(data)
        await dst.execute("SELECT setval('backing_flags_id_seq', coalesce(max(id), 1)) FROM backing_flags")
    finally:
        await src.close()
        await dst.close()
    return counts
