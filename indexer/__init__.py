"""xstock-indexer: exact, reorg-safe indexing of tokenized equities into PostgreSQL."""

__version__ = "0.1.0"
