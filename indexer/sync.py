"""One step of the pipeline for one chain: cursor -> target -> fetch (fetch.py: headers, logs,
kinds after upgrades, decode) -> upgrades (convert) -> follow (multiplier) -> fold (ledger.py)
-> commit (store.py).

``ChainSync`` is driven by pipeline.catch_up, the loop of both the backfill and the daemon. A
step indexes the next range above the cursor (sized by ranges.RangeSizer from what the node
answered so far) and commits it in one transaction, or, when the node's chain no longer
contains the cursor's block, walks back to the common ancestor and rewinds to it (ReorgTooDeep
beyond ``max_reorg_depth``, changing nothing). A step is either :meth:`ChainSync.step` whole, or
its two halves :meth:`~ChainSync.fetch` (safe ahead of the cursor) and :meth:`~ChainSync.apply`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from . import logconfig
from .chain import Chain
from .config import ChainConfig, Settings
from .errors import ChainMoved, NodeBehind
from .fetch import Fetched, common_ancestor, decode_followed, discover, fetch_range, merge, read_logs
from .follow import Follower, Reading
from .ledger import fold
from .models import Cursor, Decoded, Header
from .ranges import RangeSizer
from .store import BatchWrite, Store, TokenState
from .upgrades import KindChange, follow_upgrades

__all__ = ["ChainSync", "Fetched", "Span", "StepResult"]

log = logconfig.get("sync")


@dataclass(frozen=True)
class StepResult:
    from_block: int
    to_block: int
    logs: int = 0
    transfers: int = 0
    events: int = 0
    new_tokens: int = 0
    reorg_depth: int = 0
    removed: int = 0
    seconds: float = 0.0


@dataclass
class Span:
    """A range to index: the tokens and factories followed in it, the block below it, and its
    headers. ``cursor`` is the one the commit expects to move from; a ``late`` span is tokens
    added to the config catching up below the cursor, which stays where it is."""

    active: dict[str, TokenState]
    factories: list[str]
    base: int
    start: int
    end: int
    headers: dict[int, Header] = field(repr=False)
    cursor: Cursor | None = None
    late: bool = False
    tail: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)  # fetch.Fetched.tail


class ChainSync:
    """Indexes one chain (made by chain_writer.writer, which registers its tokens)."""

    def __init__(self, cfg: ChainConfig, settings: Settings, chain: Chain, store: Store, chain_id: int,
                 floor: int | None = None) -> None:
        self.cfg = cfg
        self.floor = floor or 0  # --from-block: nothing below it is indexed on a fresh start
        self.chain = chain
        self.store = store
        self.chain_id = chain_id
        self.tokens: dict[str, TokenState] = {}
        self.factories = {f.address: max(f.start_block, self.floor) for f in settings.factories if f.chain == cfg.name}
        self.sizer = RangeSizer(cfg.batch_blocks, cfg.max_batch_blocks, cfg.max_batch_logs)
        self.head = 0
        self.last_block_time = 0  # timestamp of the last committed block
        self.cursor: Cursor | None = None
        self._overlap = False  # commit batch N while preparing N+1: see overlapping()
        self._inflight: asyncio.Task[bool] | None = None
        self.follower = Follower(chain)

    @property
    def first_block(self) -> int:
        starts = [t.info.start_block for t in self.tokens.values()] + list(self.factories.values())
        return min(starts) if starts else 0

    async def target(self) -> int:
        """The highest block to index now: head minus confirmations (``target_at``: of a head read)."""
        return self.target_at(await self.chain.head())

    def target_at(self, head: int) -> int:
        self.head = head
        return max(self.head - self.cfg.confirmations, -1)

    async def step(self, target: int) -> StepResult | None:
        """Index the next range up to ``target``; None when there is nothing to do."""
        started = time.perf_counter()
        cursor = self.cursor = await self.store.cursor(self.chain_id)
        base = cursor.block_number if cursor else self.first_block - 1
        start = base + 1
        if start > target:
            if cursor is not None:
                depth, removed = await self._check_tip(cursor)
                if depth:
                    return StepResult(start, start - 1, reorg_depth=depth, removed=removed)
            return None
        late = self.late_tokens(base)
        if late:
            return await self._catch_up(late, base, started)
        return await self.apply(await self.fetch(*self.plan(start, target)), started)

    def plan(self, start: int, target: int) -> tuple[int, int]:
        """The next range from ``start``, sized by what the node has accepted so far."""
        return start, min(target, start + self.sizer.span - 1)

    def _active(self, base: int, end: int) -> tuple[dict[str, TokenState], list[str]]:
        active = {a: t for a, t in self.tokens.items() if t.info.start_block <= end and t.synced_block >= base}
        return active, [f for f, s in self.factories.items() if s <= end]

    async def fetch(self, start: int, end: int) -> Fetched:
        """The I/O-heavy half of a step, safe to run ahead of the cursor (prefetch): headers,
        logs and multiplier states of every token and factory active by then, for [start, end]
        or, when the node's answer for that is too large, a shorter range from ``start``. Tokens
        in step with the cursor (which a prefetch runs ahead of) are synced to it, not start - 1."""
        base = self.cursor.block_number if self.cursor else self.first_block - 1
        active, factories = self._active(min(base, start - 1), end)
        return await fetch_range(self.chain, self.sizer, active, factories, start, end, self.head,
                                 self.cfg.max_reorg_depth)

    async def apply(self, fetched: Fetched, started: float | None = None) -> StepResult:
        """The in-order half: check the range still continues the cursor (else rewind), decode,
        fold and commit. Logs of tokens that became active after the prefetch are fetched now."""
        started = time.perf_counter() if started is None else started
        cursor, start, end = self.cursor, fetched.start, fetched.end
        base = cursor.block_number if cursor else self.first_block - 1
        if base != start - 1:
            raise ChainMoved(f"prefetched range {start}-{end} does not follow the cursor at {base}")
        if cursor is not None and fetched.headers[start].parent_hash != cursor.block_hash:
            depth, removed = await self._rewind_to_ancestor(cursor)
            return StepResult(start, end, reorg_depth=depth, removed=removed)
        active, factories = self._active(base, end)
        decoded, n_logs, kinds = fetched.decoded, fetched.logs, fetched.changes
        # Tokens that became active after the prefetch, or whose kind changed since (an upgrade
        # in the range before): each token decodes on its own, so theirs are fetched again.
        stale = {a for a, t in active.items() if a in fetched.kinds and fetched.kinds[a] is not t.info.kind}
        if fetched.raws is not None:  # decoding failed ahead of the cursor: again, with today's kinds
            decoded, kinds = await decode_followed(
                self.chain, fetched.raws, {a: t for a, t in active.items() if a in fetched.addresses},
                [f for f in factories if f in fetched.addresses], start, fetched.headers)
            stale = set()
        missing = [a for a in [*active, *factories] if a not in fetched.addresses or a in stale]
        if stale:
            decoded = Decoded([t for t in decoded.transfers if t.token not in stale],
                              [e for e in decoded.events if e.token not in stale], decoded.new_tokens)
            kinds = [c for c in kinds if c.token not in stale]
        if missing:
            raws, _ = await read_logs(self.chain, missing, start, end, fetched.headers)
            late, more = await decode_followed(self.chain, raws, {a: t for a, t in active.items() if a in missing},
                                               [f for f in factories if f in missing], start, fetched.headers)
            decoded, kinds = merge(decoded, late), kinds + more
            n_logs += len(raws)
        known = {a: r for a, r in fetched.states.items() if a not in stale}
        result = await self._index_range(Span(active, factories, base, start, end, fetched.headers, cursor,
                                              tail=fetched.tail),
                                         (decoded, n_logs, kinds), known)
        return StepResult(start, end, *result, seconds=time.perf_counter() - started)

    @asynccontextmanager
    async def overlapping(self) -> AsyncIterator[None]:
        """Within it, a commit starts and returns: the next batch is decoded while PostgreSQL
        writes this one (commits still land one at a time, in order). On the way out the commit
        in flight lands; after a failure, in-memory progress is read back from the database."""
        self._overlap = True
        try:
            yield
            await self.flush()
        except BaseException:
            await asyncio.gather(self.flush(), return_exceptions=True)
            await self.reload()
            raise
        finally:
            self._overlap = False

    async def _commit(self, batch: BatchWrite) -> None:
        if not self._overlap:
            await self.store.commit_batch(batch)
            return
        await self.flush()
        self._inflight = asyncio.create_task(self.store.commit_batch(batch))

    async def flush(self) -> None:
        """Wait for the commit in flight, if any; its failure is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    async def reload(self) -> None:
        """Forget in-memory progress and read it back from the database (after a failed
        overlapped commit, the optimistic state may be ahead of what was stored)."""
        self.cursor = await self.store.cursor(self.chain_id)
        self.tokens = await self.store.tokens(self.chain_id)
        self.follower.forget()

    def late_tokens(self, base: int) -> dict[str, TokenState]:
        """Tokens added to the config after the cursor passed their start block, all at the
        lowest synced block among them (they catch up as one group)."""
        behind = [t for t in self.tokens.values() if t.synced_block < base and t.info.start_block <= base]
        if not behind:
            return {}
        lowest = min(t.synced_block for t in behind)
        return {t.info.address: t for t in behind if t.synced_block == lowest}

    async def _catch_up(self, late: dict[str, TokenState], base: int, started: float) -> StepResult:
        synced = next(iter(late.values())).synced_block
        start, end = synced + 1, min(base, synced + self.sizer.blocks)
        headers = {h.number: h for h in await self.chain.headers(sorted({start, end}))}
        result = await self._index_range(Span(late, [], synced, start, end, headers, late=True))
        log.info("token_catch_up", tokens=len(late), from_block=start, to_block=end, cursor=base)
        return StepResult(start, end, *result, seconds=time.perf_counter() - started)

    async def _index_range(self, span: Span, given: tuple[Decoded, int, list[KindChange]] | None = None,
                           known: dict[str, Reading] | None = None) -> tuple[int, int, int, int]:
        """Decode, fold and commit ``span`` (fetching its logs unless given: decoded, with their
        count and kind changes; ``known``: multiplier states already read)."""
        active, factories, base, start, end, headers = (span.active, span.factories, span.base, span.start,
                                                        span.end, span.headers)
        move_cursor, cursor = not span.late, span.cursor
        if given is None:
            raws = (await read_logs(self.chain, list(active) + factories, start, end, headers))[0]
            found, changed = await decode_followed(self.chain, raws, active, factories, start, headers)
            given = found, len(raws), changed
        decoded, n_logs, kinds = given
        new_states, extra, extra_logs, more = await discover(self.chain, self.chain_id, decoded, set(self.tokens),
                                                             end, headers)
        for state in new_states:
            active[state.info.address] = state
        decoded, kinds = merge(decoded, extra), kinds + more
        if kinds:  # an upgrade converts the ledger as stored: the commit in flight must land first
            await self.flush()
        upgraded = await follow_upgrades(self.chain, self.store, self.chain_id, active, kinds, decoded)
        transfers = decoded.transfers + upgraded.conversions
        events = decoded.events
        changes, at_end = await self.follower.follow(active, base, end, events, headers, known,
                                                     lambda: {t.block_number: t.block_time for t in transfers},
                                                     upgraded.since)
        end_header = headers[end]
        batch = BatchWrite(
            chain_id=self.chain_id,
            expect_cursor=cursor.block_number if cursor else None,
            cursor=Cursor(end, end_header.hash, end_header.timestamp) if move_cursor else None,
            expect_synced=None if move_cursor else base,
            synced_block=end,
            synced_tokens=list(active),
            headers=list(headers.values()) if move_cursor else [],
            tail=[(n, h, p) for n, (h, p) in span.tail.items() if n not in headers] if move_cursor else [],
            transfers=transfers,
            events=events,
            ledger=fold(transfers),
            multiplier_changes=changes,
            multipliers=at_end,
            new_tokens=new_states,
            kind_changes=[(k.token, k.block_number, k.before.value, k.after.value) for k in kinds],
            keep_blocks=self.cfg.max_reorg_depth * 2,
        )
        await self._commit(batch)
        if move_cursor:
            self.last_block_time = end_header.timestamp
            self.cursor = batch.cursor
        for address, state in active.items():
            self.tokens[address] = TokenState(state.info, end, at_end.get(address, state.multiplier))
        return n_logs + extra_logs, len(transfers), len(events), len(new_states)

    async def _check_tip(self, cursor: Cursor) -> tuple[int, int]:
        """Nothing new to index: make sure the cursor's block is still on the node's chain."""
        if cursor.block_number > self.head:
            raise NodeBehind(f"chain {self.cfg.name}: the node's head is block {self.head}, below block "
                             f"{cursor.block_number} this database is indexed to: the node is behind the database (a "
                             "wrong node, a node that lost its state, or a reorg deeper than the node holds)")
        if (await self.chain.header(cursor.block_number)).hash == cursor.block_hash:
            return 0, 0
        return await self._rewind_to_ancestor(cursor)

    async def _rewind_to_ancestor(self, cursor: Cursor) -> tuple[int, int]:
        await self.flush()
        stored = await self.store.recent_hashes(self.chain_id, cursor.block_number - self.cfg.max_reorg_depth)
        ancestor = await common_ancestor(self.chain, stored, cursor, self.head, self.cfg.name, self.cfg.max_reorg_depth)
        depth = cursor.block_number - ancestor.block_number
        removed = await self.store.rewind(self.chain_id, ancestor, self.tokens)
        self.follower.forget()
        self.cursor = ancestor
        self.tokens = await self.store.tokens(self.chain_id)
        log.warning("reorg", chain=self.cfg.name, depth=depth, ancestor=ancestor.block_number,
                    old_tip=cursor.block_number, transfers_removed=removed)
        return depth, removed
