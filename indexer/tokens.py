"""What the indexer asks a token contract: its identity when it is first seen (configured, or
announced by a factory), and its multiplier, at the end of each range and, by bisection,
wherever it changed inside it.

Failure modes: RpcError / RpcUnavailable from the node; StateUnavailable (no historical state)
is absorbed: the value at the range's end then comes from the events, the start's is 1e18.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from . import contract_views as views
from . import logconfig
from .batch_sql import TokenState
from .chain import Chain, StateUnavailable
from .ledger import event_samples, find_changes
from .models import ONE, Header, MultiplierChange, NewToken, TokenEvent, TokenInfo, TokenKind, underlying_of
from .multicall import views_at

log = logconfig.get("tokens")
IDENTITY = (views.SYMBOL, views.NAME, views.DECIMALS, views.GET_CURRENT_MULTIPLIER)  # read_tokens' views, in order


class Wanted(NamedTuple):
    """A token to read: its address, the block it is first indexed at, and what the config or
    the announcing factory already says of it."""

    address: str
    start_block: int
    symbol: str | None = None
    underlying: str | None = None


async def read_tokens(chain: Chain, chain_id: int, wanted: Sequence[Wanted], block: int | str, source: str,
                      before: bool = False) -> list[tuple[TokenInfo | None, int]]:
    """What each contract says of itself at ``block``: symbol, name, decimals and kind (an
    xStock answers getCurrentMultiplier), None when there is no code there; with ``before``, the
    multiplier in force just before its start block (1e18 for an ERC-20 or without the state).
    Every token in ONE round trip: one eth_call per block asked (multicall.py): ``block``, the
    start blocks (the kind there) and, ``before``, the blocks below them. The code is asked only
    when no view answers; a token not an xStock at its start block is asked step by step."""
    asks: dict[int | str, list[tuple[str, str]]] = {block: []}
    for w in wanted:
        asks[block] += [(w.address, v) for v in IDENTITY]
    for w in wanted:
        for n in (w.start_block, *((w.start_block - 1,) if before and w.start_block > 0 else ())):
            if n != block and (isinstance(block, str) or n < block):
                asks.setdefault(n, []).append((w.address, views.GET_CURRENT_MULTIPLIER))
                if n == w.start_block:  # an answer proves code there: a plain token needs no eth_getCode
                    asks[n].append((w.address, views.DECIMALS))
    got = (await views_at(chain, asks, strict=False))[0]
    if got[block] is None:
        raise StateUnavailable(f"no state for tokens {[w.address for w in wanted][:3]} at block {block}")

    def at(n: int, address: str, view: str = views.GET_CURRENT_MULTIPLIER) -> bytes | None:
        answers, calls = got.get(n), asks.get(n, [])
        ask = (address, view)
        return None if answers is None or ask not in calls else answers[calls.index(ask)]

    out: list[tuple[TokenInfo | None, int]] = []
    for i, w in enumerate(wanted):
        answers = (got[block] or [])[4 * i:4 * i + 4]
        if all(a is None for a in answers):
            code = await chain.rpc.request("eth_getCode", [w.address, hex(block) if isinstance(block, int) else block])
            if not code or code == "0x":
                out.append((None, ONE))
                continue
        kind = TokenKind.XSTOCK if views.as_multiplier(answers[3]) is not None else TokenKind.ERC20
        later = isinstance(block, str) or block > w.start_block
        if later and views.as_multiplier(at(w.start_block, w.address)) is not None:
            kind = TokenKind.XSTOCK  # an xStock at its start block already
        elif later and views.as_uint(at(w.start_block, w.address, views.DECIMALS)) is not None:
            kind = TokenKind.ERC20  # code there, and not an xStock then: kind_at_start's answer
        elif later and got.get(w.start_block) is not None:  # not an xStock then, or no code yet
            kind = await kind_at_start(chain, w.address, w.start_block, kind, known=True)
        # (no state at the start block: the kind answered now is kept, as kind_at_start does)
        sym = w.symbol or views.as_text(answers[0]) or w.address[:10]
        decimals = views.as_uint(answers[2])
        info = TokenInfo(chain_id, w.address, sym, views.as_text(answers[1]) or sym,
                         w.underlying or underlying_of(sym), 18 if decimals is None else decimals,
                         kind, w.start_block, source)
        m = ONE
        if before and kind is TokenKind.XSTOCK and w.start_block > 0:
            if got.get(w.start_block - 1) is None:
                log.warning("no_historical_state", token=w.address, block=w.start_block - 1)
            m = views.as_multiplier(at(w.start_block - 1, w.address)) or ONE
        out.append((info, m))
    return out


async def read_token(
    chain: Chain, chain_id: int, address: str, block: int | str, start_block: int, source: str,
    symbol: str | None = None, underlying: str | None = None,
) -> TokenInfo | None:
    """One token's :func:`read_tokens`."""
    return (await read_tokens(chain, chain_id, [Wanted(address, start_block, symbol, underlying)], block, source))[0][0]


async def kind_at_start(chain: Chain, address: str, start: int, latest: TokenKind, known: bool = False) -> TokenKind:
    """The kind of the token when it is first indexed: at ``start`` or, when its code was
    deployed later, at the block it was (found by bisection on eth_getCode: about log2(head)
    calls, once per token). An upgrade after that changes the kind at its block (upgrades.py);
    without historical state the kind answered now is kept. ``known``: getCurrentMultiplier at
    ``start`` was asked already and answered no multiplier (read_tokens' batch)."""
    try:
        answer = None if known else await chain.call(address, views.GET_CURRENT_MULTIPLIER, start)
        if views.as_multiplier(answer) is None and not await _has_code(chain, address, start):
            lo, hi = start, await chain.head()  # no code at lo, code at hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if await _has_code(chain, address, mid) else (mid, hi)
            answer = await chain.call(address, views.GET_CURRENT_MULTIPLIER, hi)
    except StateUnavailable:
        return latest
    return TokenKind.XSTOCK if views.as_multiplier(answer) is not None else TokenKind.ERC20


async def _has_code(chain: Chain, address: str, block: int) -> bool:
    code = await chain.rpc.request("eth_getCode", [address, hex(block)])
    return bool(code) and code != "0x"


async def announced_tokens(chain: Chain, chain_id: int, announced: list[NewToken], known: set[str],
                           end: int) -> list[TokenState]:
    """The tokens a followed factory announced (NewToken) that are not ``known`` yet, read from
    their contracts at ``end`` (an address without code is ignored), starting at the announcing
    block."""
    fresh: dict[str, NewToken] = {}
    for nt in announced:
        if nt.token not in known:
            fresh.setdefault(nt.token, nt)
    if not fresh:
        return []
    read = await read_tokens(chain, chain_id, [Wanted(nt.token, nt.block_number, nt.symbol) for nt in fresh.values()],
                             end, "factory")  # all in one round trip
    states: list[TokenState] = []
    for nt, (info, _) in zip(fresh.values(), read, strict=True):
        if info is None:
            continue
        info = TokenInfo(info.chain_id, info.address, nt.symbol, nt.name, underlying_of(nt.symbol),
                         info.decimals, info.kind, nt.block_number, f"factory:{nt.factory}")
        states.append(TokenState(info, nt.block_number - 1, ONE))
        log.info("token_discovered", token=nt.token, symbol=nt.symbol, block=nt.block_number, kind=info.kind.value)
    return states


async def multipliers_at(chain: Chain, xstocks: list[str], block: int) -> list[bytes | None]:
    """getCurrentMultiplier of each xStock at ``block`` (None each without the state)."""
    if not xstocks:
        return []
    try:
        return await chain.call_many([(a, views.GET_CURRENT_MULTIPLIER) for a in xstocks], block)
    except StateUnavailable:
        return [None] * len(xstocks)


async def multipliers(
    chain: Chain, active: dict[str, TokenState], base: int, end: int,
    events: list[TokenEvent], headers: dict[int, Header], known: Mapping[str, int | None] | None = None,
) -> tuple[list[MultiplierChange], dict[str, int]]:
    """Multiplier in force at ``end`` for every xStock, and every change inside the range, by
    bisecting getCurrentMultiplier between the event values: the fallback of follow.py for a
    token whose state views it cannot model (``known``: values at ``end`` already read)."""
    xstocks = [a for a, t in active.items() if t.info.kind is TokenKind.XSTOCK]
    if not xstocks:
        return [], {}
    read: dict[str, int | None] = {a: v for a, v in (known or {}).items() if v is not None}
    asked = [a for a in xstocks if a not in read]
    read.update(zip(asked, [views.as_multiplier(x) for x in await multipliers_at(chain, asked, end)], strict=True))
    from_events = event_samples(events)
    changes: list[MultiplierChange] = []
    at_end: dict[str, int] = {}

    async def block_time(n: int) -> int:
        if n not in headers:
            headers[n] = await chain.header(n)
        return headers[n].timestamp

    for address in xstocks:
        state = active[address]
        lo = max(base, state.synced_block)
        seen = from_events.get(address, {})
        samples = [(lo, state.multiplier), *sorted((b, v) for b, v in seen.items() if lo < b < end)]
        value = read.get(address)
        if value is None:
            value = seen.get(end, samples[-1][1])
        samples.append((end, value))

        async def probe(n: int, address: str = address) -> int:
            return views.as_multiplier(await chain.call(address, views.GET_CURRENT_MULTIPLIER, n)) or ONE

        changes += await find_changes(address, samples, probe, block_time, set(seen))
        at_end[address] = value
    return changes, at_end
