"""How many blocks the next eth_getLogs asks for, from what the node answered so far.

A range aims at ``max_batch_logs / 2`` logs: memory per batch stays bounded whatever the chain's
density, and batches stay large enough that per-request and per-commit costs vanish. The next
range is sized from the density (logs per block) of the last answer, growing at most 2x per
answer, so a sparse stretch is crossed in a few requests and a dense one is entered with a
range at most twice the last one. The one blind step, from sparse into dense blocks, is bounded
by the answer size limit (``answer_limit``, bytes): the node's answer is refused as soon as its
length is known (before it is read), the range is cut in proportion and asked again. Providers
that refuse ranges themselves (block span or result count) are obeyed: their limit becomes a
ceiling, relaxed (doubled) only after a run of accepted answers, so a refusal costs a round trip
now and then, not one per request.

Pure arithmetic; no I/O.
"""

from __future__ import annotations

DEFAULT_BYTES_PER_LOG = 1_000  # JSON bytes per log until an answer tells: ~640 on anvil
RELAX_AFTER = 16  # accepted answers before a provider-imposed ceiling is doubled


class RangeSizer:
    def __init__(self, first_blocks: int, max_blocks: int, max_logs: int) -> None:
        self.max_blocks = max(1, max_blocks)
        self.blocks = min(max(1, first_blocks), self.max_blocks)
        self.max_logs = max(2, max_logs)
        self.aim = self.max_logs // 2
        self.bytes_per_log = float(DEFAULT_BYTES_PER_LOG)
        self.ceiling = self.max_blocks  # lowered by the node's own refusals
        self._accepted = 0
        self._measured = False  # bytes_per_log comes from a real answer
        self.refusals = 0

    @property
    def answer_limit(self) -> int:
        """Bytes of JSON above which an answer is refused and its range cut: max_batch_logs
        logs' worth, i.e. twice the aim."""
        return int(self.max_logs * self.bytes_per_log)

    def answered(self, blocks: int, logs: int, body_bytes: int | None = None) -> None:
        """An answer of ``logs`` logs for ``blocks`` blocks came back (``body_bytes`` of JSON)."""
        if logs and body_bytes:
            size = body_bytes / logs
            self.bytes_per_log = 0.8 * self.bytes_per_log + 0.2 * size if self._measured else size
            self._measured = True
        grow = 2 * blocks
        wanted = grow if logs == 0 else min(grow, max(1, self.aim * blocks // logs))
        self._accepted += 1
        if self.ceiling < self.max_blocks and self._accepted >= RELAX_AFTER:
            self.ceiling, self._accepted = min(self.max_blocks, self.ceiling * 2), 0
        self.blocks = max(1, min(wanted, self.ceiling, self.max_blocks))

    def too_large(self, blocks: int, body_bytes: int | None) -> int:
        """Our size limit refused an answer of ``body_bytes`` (None: unknown, over the limit)
        for ``blocks`` blocks; returns the blocks to ask for instead (fewer, at least 1)."""
        self.refusals += 1
        if body_bytes:
            fewer = int(blocks * self.aim * self.bytes_per_log // body_bytes)
        else:
            fewer = blocks // 2
        self.blocks = max(1, min(fewer, blocks - 1))
        return self.blocks

    def refused(self, blocks: int, fewer: int) -> int:
        """The node refused ``blocks`` blocks (its range or result limit) and ``fewer`` is where
        it suggests, or half, cutting; later ranges stay under it for a while."""
        self.refusals += 1
        self.blocks = self.ceiling = max(1, min(fewer, blocks - 1))
        self._accepted = 0
        return self.blocks
