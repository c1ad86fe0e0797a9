"""xstock-indexer: exact, reorg-safe indexing of tokenized equities into PostgreSQL.

How a block becomes rows, for both ``indexer backfill`` and ``indexer run``:

config.py (Settings) -> chain_writer.py (connect, writer lock, register tokens)
-> pipeline.py (the loop: prefetch ranges, apply them in order, overlap commits)
-> sync.py (one step) -> fetch.py (headers and logs from the node: chain.py over rpc.py;
decode.py; multiplier states: follow.py, multiplier.py; kind changes: upgrades.py)
-> ledger.py (fold into share deltas) -> store.py + batch_sql.py (one transaction per range).

backfill.py stops at a target; daemon.py follows the head and runs custody/reconcile.py after
each round. Custody files enter through custody/ (see its docstring); verify.py and history.py
audit the database against the chain; status.py, export.py and custody/flags.py read it.
"""

__version__ = "0.1.0"
