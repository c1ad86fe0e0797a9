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
now and then, not one per request; a refusal that names the same limit twice is the provider's
fixed block range limit, never relaxed again. A refusal of more blocks than the limit its
message states ("up to a 2K block range") teaches that limit at once; one of fewer blocks than
it, after wider ranges were answered, was for the answer's size (a cap on logs): the lower
ceiling it sets holds only until an empty answer (measured: an 1,800-block cut in a dense
stretch, taken for the fixed limit, cost the remote benchmark 4-5 requests in the sparse
stretches after it). A stated limit nothing confirms is not trusted (a wording may be fixed
text).

A committed range (``span``) is sized apart from the requests: it spans as many eth_getLogs
requests as it takes to hold about ``max_batch_logs / 2`` logs (fetch.py tiles it), up to
``max_blocks``, so what every committed range costs beside its logs (the headers of its ends,
the multiplier state at its end: a few calls) is paid once per half a batch of logs, not once
per request a provider's caps allow. An empty stretch grows requests and spans ``GROW`` times
per answer (a request's answer size is guarded by ``answer_limit``, so a blind step costs at
most one refused request, never memory).

Pure arithmetic; no I/O.
"""

from __future__ import annotations

import re

DEFAULT_BYTES_PER_LOG = 1_000  # JSON bytes per log until an answer tells: ~640 on anvil
RELAX_AFTER = 16  # accepted answers before a provider-imposed ceiling is doubled
GROW = 8  # growth per empty answer (requests) or empty committed range (spans)


class RangeSizer:
    def __init__(self, first_blocks: int, max_blocks: int, max_logs: int) -> None:
        self.max_blocks = max(1, max_blocks)
        self.blocks = min(max(1, first_blocks), self.max_blocks)
        self.max_logs = max(2, max_logs)
        self.aim = self.max_logs // 2
        self.bytes_per_log = float(DEFAULT_BYTES_PER_LOG)
        self.ceiling = self.max_blocks  # lowered by the node's own refusals
        self.limit = self.max_blocks  # a fixed limit the node named twice: the ceiling stays under it
        self._last_refusal = 0
        self.span = self.blocks  # blocks of the next committed range (several requests)
        self._accepted = 0
        self._measured = False  # bytes_per_log comes from a real answer
        self._size_cut = False  # the ceiling is below the block limit for the answers' size
        self._widest = 0  # the most blocks one request was answered for
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
        wanted = GROW * blocks if logs == 0 else min(2 * blocks, max(1, self.aim * blocks // logs))
        self._widest = max(self._widest, blocks)
        if logs == 0 and self._size_cut:  # past the dense blocks that cut it
            self.ceiling, self._size_cut = self.limit, False
        self._accepted += 1
        if self.ceiling < self.limit and self._accepted >= RELAX_AFTER:
            self.ceiling, self._accepted = min(self.limit, self.ceiling * 2), 0
        self.blocks = max(1, min(wanted, self.ceiling, self.max_blocks))

    def spanned(self, blocks: int, logs: int) -> None:
        """A committed range of ``blocks`` blocks held ``logs`` logs: size the next one."""
        wanted = GROW * blocks if logs == 0 else min(GROW * blocks, max(1, self.aim * blocks // logs))
        span = max(1, min(wanted, self.max_blocks))
        if span > self.blocks:  # whole requests: a last, short one would cost a call for a fragment
            span -= span % self.blocks
        self.span = span

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

    def refused(self, blocks: int, fewer: int, named: int | None = None) -> int:
        """The node refused ``blocks`` blocks (its range or result limit) and ``fewer`` is where
        it suggests, or half, cutting; later ranges stay under it for a while. ``named``: the
        block limit its message states (:func:`block_limit`), if any."""
        self.refusals += 1
        self.blocks = self.ceiling = max(1, min(fewer, blocks - 1))
        self._size_cut = False
        if named is not None and blocks > named:  # over the limit it states: that is its limit
            self.limit = min(self.limit, max(1, named))
            self.blocks = self.ceiling = min(self.ceiling, self.limit)
        elif named is not None and self._widest > self.blocks:  # wider ranges were answered: a size cut
            self._size_cut = True
        elif self.blocks == self._last_refusal:
            self.limit = self.blocks
        self._last_refusal = self.blocks
        self._accepted = 0
        return self.blocks


# Where a provider's refusal says what it accepts: a range to ask instead ("[0x1, 0x7d0]"), or a
# block limit ("up to a 2K block range", "limited to a 10,000 range", "max is 1k blocks",
# "exceed maximum block range: 5000", "a block range of 10000 or less"). Numbers of results
# ("more than 10000 results") are not block limits and are not read.
_SUGGESTED_RANGE = re.compile(r"\[\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*\]")
_NUMBER = r"(\d[\d,_]*(?:\.\d+)?)\s*([kK])?"
_BLOCK_LIMITS = [re.compile(p, re.IGNORECASE) for p in (
    r"(?:up to|limited to|range of|maximum of|max of|max is|max range of|over|greater than|than)\s+"
    rf"(?:an?\s+)?{_NUMBER}\s*-?\s*blocks?",
    rf"(?:up to|limited to|range of|max is|max of)\s+(?:an?\s+)?{_NUMBER}\s*(?:-?\s*block)?\s*range",
    rf"max(?:imum)?\s+(?:allowed\s+)?(?:block\s+)?range(?:\s+(?:is|of))?\s*:?\s*{_NUMBER}",
    rf"max(?:imum)?\s+(?:is\s+)?{_NUMBER}\s*blocks?",
    rf"{_NUMBER}\s*blocks?\s+(?:max|maximum|or less|or fewer|at most|limit)",
    rf"block range (?:limit|of)\s*(?:is\s*)?:?\s*{_NUMBER}",
    rf"max(?:imum)?\s*(?:block\s*range)?\s*:\s*{_NUMBER}",
    rf"{_NUMBER}\s*-?\s*block range",
    rf"ranges? over\s+{_NUMBER}\s*blocks?",
    rf"than\s+{_NUMBER}\s*(?:blocks?\s*)?max",
    rf"blocks?\s+is\s+{_NUMBER}",
)]


def _number(digits: str, suffix: str | None) -> int:
    value = float(digits.replace(",", "").replace("_", ""))
    return int(value * 1000 if suffix else value)


def suggested_end(message: str, from_block: int, to_block: int) -> int | None:
    """The last block to ask for instead of [from_block, to_block], as the refusal ``message``
    suggests it (a range, or a block limit), when that makes progress; else None."""
    match = _SUGGESTED_RANGE.search(message)
    if match:
        end = int(match.group(2), 0)
        if from_block <= end < to_block:
            return end
    limit = block_limit(message)
    if limit is not None and 1 <= limit < to_block - from_block + 1:
        return from_block + limit - 1
    return None


def block_limit(message: str) -> int | None:
    """The block range limit a refusal ``message`` states in words, if it does."""
    for pattern in _BLOCK_LIMITS:
        match = pattern.search(message)
        if match:
            return _number(match.group(1), match.group(2))
    return None
