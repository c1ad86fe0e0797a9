"""The fetch stage of a sync step: what a range needs from the node before anything is stored.

Place in the pipeline: chain -> **fetch** (headers, logs, decode, the multiplier state at the
range's end) -> follow / ledger -> store. ``sync.ChainSync.fetch`` calls :func:`fetch_range`,
which is safe to run ahead of the cursor (the backfill prefetches); ``apply`` then checks that
the range still continues the cursor.

Failure modes: ChainMoved when the headers or logs read do not belong to one chain (the node
moved while we read: the step is retried); RPC errors from chain.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import contract_views as views
from . import decode, multicall
from .batch_sql import TokenState
from .chain import Chain
from .errors import ChainMoved, ReorgTooDeep, UnindexableLog
from .follow import Reading, parse_state, read_states
from .models import Cursor, Decoded, Header, TokenKind, Wire
from .ranges import RangeSizer
from .tokens import announced_tokens
from .upgrades import KindChange, by_kind, kind_changes
from .wire import Log


@dataclass(frozen=True)
class Fetched:
    """A prefetched range: headers (ends and the reorg-reachable tail) and its logs, decoded
    as soon as they arrived (a decoded move takes a fifth of the memory of its JSON)."""

    start: int
    end: int
    headers: dict[int, Header]
    decoded: Decoded
    logs: int
    addresses: frozenset[str]
    states: dict[str, Reading] = field(default_factory=dict)  # multiplier state at end
    kinds: dict[str, TokenKind] = field(default_factory=dict)  # the kinds the logs were decoded with
    changes: list[KindChange] = field(default_factory=list)  # upgrades in place inside the range
    raws: list[Wire] | None = None  # kept, undecoded, when decoding failed ahead of the cursor
    tail: dict[int, tuple[str, str]] = field(default_factory=dict)  # (hash, parent) of tail blocks not in headers


async def fetch_range(chain: Chain, sizer: RangeSizer, active: Mapping[str, TokenState], factories: list[str],
                      start: int, end: int, head: int, reorg_depth: int) -> Fetched:
    """Headers, logs and the xStocks' multiplier state at the end of [start, end] or, when its
    logs would be more than a batch holds, of a shorter range from ``start`` (``Fetched.end``).
    The logs come in as many eth_getLogs requests as the node's limits take (``tiled_logs``).
    The reorg-reachable tail's hashes come in the end's state read (``Fetched.tail``, one
    eth_call; multicall.py), headers only for the range's ends; a node refusing overrides (or a
    tail beyond blockhash's reach) gets every tail header, as before. The headers are asked beside
    the logs and the end's state (a round trip less per range, remote), and the logs' hashes are
    checked against them once all are in."""
    tail = tail_blocks(start, end, head, reorg_depth)
    by_reader = bool(tail) and end - tail[0] < multicall.HASH_REACH and not multicall.plain(chain)
    addresses = [*active, *factories]
    asked = end
    # The states at the range's end are read beside its logs (kept if the range is not cut).
    xstocks = [a for a, t in active.items() if t.info.kind is TokenKind.XSTOCK]
    ends = asyncio.ensure_future(read_headers(chain, start, end, head, 0 if by_reader else reorg_depth))
    try:
        (raws, end), (states, hashes) = await asyncio.gather(
            tiled_logs(chain, addresses, start, end, None, sizer),
            read_end(chain, xstocks, end, ends, tail[0] - 1 if by_reader else None))
        headers = await ends
    finally:
        ends.cancel()
        await asyncio.gather(ends, return_exceptions=True)
    await check_logs(chain, raws, headers)
    at_end = {a: states[(a, asked)] for a in xstocks}
    found: dict[int, tuple[str, str]] = {}
    if by_reader:
        found = await tail_hashes(chain, raws, headers, tail, hashes, asked)
    if end < asked:
        at_end = {}
        headers = {n: h for n, h in headers.items() if n <= end}
        found = {n: t for n, t in found.items() if n < end}
        if end not in headers:  # below the reorg-reachable tail, where only the ends are read
            headers[end] = await chain.header(end)
    kinds = {a: t.info.kind for a, t in active.items()}
    try:
        decoded, changes = await decode_followed(chain, raws, active, factories, start, headers)
    except UnindexableLog:
        # Maybe only ahead of the cursor: a range before this one may upgrade a token (its kind
        # then changes); apply decodes again with the kinds of that time and raises if still so.
        return Fetched(start, end, headers, Decoded(), len(raws), frozenset(addresses), at_end, kinds, [], raws,
                       found)
    return Fetched(start, end, headers, decoded, len(raws), frozenset(addresses), at_end, kinds, changes,
                   tail=found)


def tail_blocks(start: int, end: int, head: int, reorg_depth: int) -> list[int]:
    """The blocks of [start, end] within reorg reach of ``head`` other than the range's ends
    (whose headers are read anyway): their hashes are kept for the reorg walk-back."""
    return list(range(max(start + 1, head - reorg_depth + 1), end))


async def read_end(chain: Chain, xstocks: list[str], end: int, ends: asyncio.Future[dict[int, Header]],
                   first: int | None) -> tuple[dict[tuple[str, int], Reading], list[str] | None]:
    """The xStocks' states at ``end`` and, from ``first``: the hashes of blocks first .. end - 1,
    in ONE eth_call (multicall.py); hashes None when the node did not answer them. ``ends``: the
    range's end headers being read, for the end's time where the reader does not give it."""
    if first is None:
        if not xstocks:
            return {}, None
        times = {end: (await asyncio.shield(ends))[end].timestamp}
        return await read_states(chain, [(a, end) for a in xstocks], times), None
    count = end - first
    calls = [multicall.hashes_call(first, count), *((a, d) for a in xstocks for d in views.STATE_VIEWS)]
    answers, stamps = await multicall.views_at(chain, {end: calls})
    got = answers[end]
    assert got is not None  # strict: a missing state raises
    t = stamps[end] if end in stamps else (await asyncio.shield(ends))[end].timestamp
    width = len(views.STATE_VIEWS)
    states = {(a, end): parse_state(got[1 + i * width:1 + (i + 1) * width], t) for i, a in enumerate(xstocks)}
    return states, multicall.parse_hashes(got[0], count)


async def tail_hashes(chain: Chain, raws: list[Wire], headers: dict[int, Header], tail: list[int],
                      hashes: list[str] | None, end: int) -> dict[int, tuple[str, str]]:
    """(hash, parent hash) of each tail block not among ``headers``, from the reader's hashes
    (of blocks tail[0] - 1 .. end - 1), checked to link to the end's header (and the start's,
    when it is below the tail) and to the logs' block hashes; without them, the tail's headers
    (added to ``headers``), as for a node refusing overrides."""
    if hashes is None:
        more = await read_headers_of(chain, [n for n in tail if n not in headers])
        headers.update(more)
        return {}
    first = tail[0] - 1
    by_number = {first + i: h for i, h in enumerate(hashes)}
    for n, h in headers.items():
        if (n in by_number and by_number[n] != h.hash) or (n - 1 in by_number and by_number[n - 1] != h.parent_hash):
            raise ChainMoved(f"block {n}'s header does not link to the hashes read at block {end}: "
                             "the chain moved while reading")
    seen = ("", "")
    for r in raws:  # in block order: each block's (number, hash) checked once
        pair = ((r.block_number, r.block_hash) if type(r) is Log
                else (r.get("blockNumber", "0x0"), r.get("blockHash", "")))
        if pair == seen:
            continue
        seen = pair
        number = int(str(pair[0]), 16)
        if number in by_number and by_number[number] != str(pair[1]).lower():
            raise ChainMoved(f"a log in block {number} has hash {str(pair[1])[:10]}, "
                             f"the chain's hashes at block {end} say {by_number[number][:10]}")
    return {n: (by_number[n], by_number[n - 1]) for n in tail if n not in headers}


async def read_headers_of(chain: Chain, numbers: list[int]) -> dict[int, Header]:
    return {h.number: h for h in await chain.headers(numbers)} if numbers else {}


async def tiled_logs(chain: Chain, addresses: list[str], start: int, end: int, headers: dict[int, Header] | None,
                     sizer: RangeSizer) -> tuple[list[Wire], int]:
    """Logs of [start, end] in requests sized by ``sizer`` one after another, and the last block
    read: ``end``, or an earlier one once two batches' worth (``2 * sizer.max_logs``) are held.
    Spans aim at half a batch, so that guard only meets a span that grew blind across empty
    blocks into dense ones; it is not tighter because a range cut short makes the pipeline drop
    the range fetched beside it (measured: a guard at one batch re-fetched about 26 requests in
    the remote benchmark). Sizes the next committed range (``sizer.span``) from what it held."""
    raws: list[Wire] = []
    at = start
    while at <= end:
        part, done = await read_logs(chain, addresses, at, min(end, at + sizer.blocks - 1), headers, sizer)
        raws += part
        at = done + 1
        if len(raws) >= 2 * sizer.max_logs:
            break
    sizer.spanned(at - start, len(raws))
    return raws, at - 1


def merge(a: Decoded, b: Decoded) -> Decoded:
    return Decoded(a.transfers + b.transfers, a.events + b.events, a.new_tokens + b.new_tokens)


async def decode_followed(chain: Chain, raws: list[Wire], active: Mapping[str, TokenState], factories: list[str],
                          start: int, headers: dict[int, Header]) -> tuple[Decoded, list[KindChange]]:
    """Decode with each token's kind, and the kind changes of upgrades in place in the range
    (upgrades.py): a token's logs after such an upgrade decode with its new kind."""
    changes = await kind_changes(chain, raws, active)
    if not changes:
        return decode_range(raws, active, factories, start, headers), []
    parts = [decode_range(part, kinds, factories if i == 0 else [], start, headers)
             for i, (part, kinds) in enumerate(by_kind(raws, active, changes))]
    order = sorted([t for p in parts for t in p.transfers], key=lambda t: (t.block_number, t.log_index))
    events = sorted([e for p in parts for e in p.events], key=lambda e: (e.block_number, e.log_index))
    return Decoded(order, events, [n for p in parts for n in p.new_tokens]), changes


def decode_range(raws: list[Wire], active: Mapping[str, TokenState], factories: list[str], start: int,
                 headers: dict[int, Header]) -> Decoded:
    kinds = {a: t.info.kind for a, t in active.items()}
    starts = {a: t.info.start_block for a, t in active.items() if t.info.start_block > start}
    return decode.decode(raws, kinds, factories, {n: h.timestamp for n, h in headers.items()}, starts)


async def read_headers(chain: Chain, start: int, end: int, head: int, reorg_depth: int) -> dict[int, Header]:
    """Headers of the range's ends and of every block within reorg reach of the head,
    checked to link up; a gap in that chain means the node moved while we read."""
    unsafe_from = max(start, head - reorg_depth + 1)
    numbers = sorted({start, end, *range(unsafe_from, end + 1)})
    headers = {h.number: h for h in await chain.headers(numbers)}
    for n in numbers:
        if n - 1 in headers and headers[n].parent_hash != headers[n - 1].hash:
            raise ChainMoved(f"block {n} does not link to block {n - 1}: the chain moved while reading")
    return headers


async def read_logs(chain: Chain, addresses: list[str], start: int, end: int, headers: dict[int, Header] | None,
                    sizer: RangeSizer | None = None) -> tuple[list[Wire], int]:
    """Logs of ``addresses`` in [start, end], and ``end``; with ``sizer``: the range's own
    request, which may come back shorter (see Chain.logs_from) and sizes the next range. Checked
    against ``headers`` (:func:`check_logs`) unless None: the caller checks them."""
    topics = decode.TOKEN_TOPICS + decode.FACTORY_TOPICS
    if sizer is not None:
        raws, end = await chain.logs_from(addresses, topics, start, end, sizer)
    else:
        raws = await chain.get_logs(addresses, topics, start, end)
    if headers is not None:
        await check_logs(chain, raws, headers)
    return raws, end


async def check_logs(chain: Chain, raws: list[Wire], headers: dict[int, Header]) -> None:
    """Logs in blocks whose headers we hold must carry those headers' hashes (else the chain
    moved while we read); blocks whose logs come without blockTimestamp get their headers
    fetched for the time (added to ``headers``)."""
    by_number = {hex(n): h.hash for n, h in headers.items()}
    untimed = set()
    for r in raws:
        if type(r) is Log:  # every field there, a string (hot path: no get())
            number, block_hash, stamp = r.block_number, r.block_hash, r.block_timestamp
        else:
            number, block_hash, stamp = r.get("blockNumber"), r.get("blockHash", ""), r.get("blockTimestamp")
        known = by_number.get(number)
        if known is not None and known != str(block_hash).lower():
            raise ChainMoved(f"a log in block {number} has hash {str(block_hash)[:10]}, "
                             f"its header says {known[:10]}")
        if not stamp:
            untimed.add(number)
    missing = sorted({int(n, 16) for n in untimed if isinstance(n, str)} - set(headers))
    if missing:
        headers.update({h.number: h for h in await chain.headers(missing)})


async def common_ancestor(chain: Chain, stored: Mapping[int, str], cursor: Cursor, head: int, name: str,
                          reorg_depth: int) -> Cursor:
    """The highest block whose stored hash (``stored``: recent_blocks) is still the node's;
    ReorgTooDeep when none within ``reorg_depth`` is."""
    numbers = sorted((n for n in stored if n <= min(cursor.block_number, head)), reverse=True)
    on_chain = {h.number: h for h in await chain.headers(numbers)} if numbers else {}
    for n in numbers:
        if on_chain[n].hash == stored[n]:
            return Cursor(n, stored[n], on_chain[n].timestamp)
    raise ReorgTooDeep(
        f"chain {name}: reorg deeper than max_reorg_depth={reorg_depth}: no stored block from "
        f"{cursor.block_number - reorg_depth} to {cursor.block_number} is on the node's chain; nothing changed")


async def discover(chain: Chain, chain_id: int, decoded: Decoded, known: set[str], end: int,
                   headers: dict[int, Header]) -> tuple[list[TokenState], Decoded, int, list[KindChange]]:
    """Tokens announced by a followed factory in this range: register them and fetch their logs
    from the announcing block to ``end`` so that nothing of theirs is missed."""
    states = await announced_tokens(chain, chain_id, decoded.new_tokens, known, end)
    if not states:
        return [], Decoded(), 0, []
    first = min(s.info.start_block for s in states)
    raws, _ = await read_logs(chain, [s.info.address for s in states], first, end, headers)
    # each from its own announcing block (all at or above first)
    found, kinds = await decode_followed(chain, raws, {s.info.address: s for s in states}, [], first - 1, headers)
    return states, found, len(raws), kinds
