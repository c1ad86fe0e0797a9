"""Upgrades followed: what a token is can change at a block (issue 11, case 3).

Place in the pipeline: in fetch (before decode) and between decode and follow/ledger, for the
ranges that contain an ``Upgraded`` log of a followed proxy. The token's kind is asked again of
the contract at the upgrade's block (an xStock answers getCurrentMultiplier), before its logs
are decoded (:func:`kind_changes`, :func:`by_kind`). When a plain token became a share token:

- its logs after the Upgraded log are decoded as a share token's (Transfer + TransferShares
  pairs), those before it as plain moves (shares = amount);
- its share ledger is converted at the upgrade block to what the chain then answers: for every
  address that ever held it, ``sharesOf`` at that block minus the shares the ledger holds after
  the block's moves is written as one conversion row of transfer_log (tx_hash of the upgrade,
  a negative log_index, amount_raw 0; a mint row when shares were created, a burn row when the
  balance was left behind in the old implementation's storage). History before the upgrade is
  untouched (``shares_at`` and ``multiplier_at`` below it are the plain token's), at and after
  it the chain's; a rewind below the block removes the rows like any other;
- the kind change is recorded in ``token_kinds`` (and tokens.kind), and the multiplier's path
  starts at the upgrade block (follow.py, ``since``).

A share token that becomes a plain token again is recorded (kind and a warning) but its shares
are not converted back: no such upgrade is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from . import contract_views as views
from . import logconfig
from .batch_sql import TokenState
from .chain import Chain
from .decode import OTHER_EVENTS
from .ledger import fold
from .models import ZERO_ADDRESS, Decoded, TokenKind, Transfer, Wire
from .multicall import views_at
from .store import Store
from .wire import Log

log = logconfig.get("upgrades")
UPGRADED_TOPIC = next(spec.topic for spec in OTHER_EVENTS if spec.name == "Upgraded")


@dataclass(frozen=True)
class KindChange:
    token: str
    block_number: int
    log_index: int
    tx_hash: str
    block_time: int
    before: TokenKind
    after: TokenKind


@dataclass
class Upgraded:
    """What the upgrades of one range change: the conversion rows and the block each upgraded
    token's multiplier path starts at."""

    conversions: list[Transfer]
    since: dict[str, int]


async def kind_changes(chain: Chain, raws: Sequence[Wire], active: Mapping[str, TokenState]) -> list[KindChange]:
    """Every Upgraded log of an active token after which the contract answers as another kind
    (asked at the upgrade's block), in chain order. Every upgrade's ask goes in one round trip
    (multicall.views_at: one eth_call per block): a factory's new proxies each log Upgraded at
    their deployment, and asked one by one they held the pipeline a round trip each."""
    kinds = {a: t.info.kind for a, t in active.items()}
    topic = UPGRADED_TOPIC  # nodes send topics in lowercase hex; one comparison per log (hot path)
    upgrades = [(str(r.get("address", "")).lower(), int(r["blockNumber"], 16), r)
                for r in raws if (t := r.topics if type(r) is Log else r.get("topics")) and t[0] == topic]
    upgrades = [u for u in upgrades if u[0] in kinds]
    if not upgrades:
        return []
    asks: dict[int | str, list[tuple[str, str]]] = {}
    for token, block, _ in upgrades:
        asks.setdefault(block, []).append((token, views.GET_CURRENT_MULTIPLIER))
    answers = (await views_at(chain, asks))[0]
    out: list[KindChange] = []
    for token, block, r in upgrades:
        got = answers[block]
        answer = None if got is None else got[asks[block].index((token, views.GET_CURRENT_MULTIPLIER))]
        kind = TokenKind.XSTOCK if views.as_multiplier(answer) is not None else TokenKind.ERC20
        if kind is kinds[token]:
            continue
        ts = r.get("blockTimestamp")
        out.append(KindChange(token, block, int(r["logIndex"], 16), str(r["transactionHash"]).lower(),
                              int(ts, 16) if ts else 0, kinds[token], kind))
        kinds[token] = kind
        log.warning("token_kind_changed", token=token, block=block, before=out[-1].before.value, after=kind.value)
    return out


def by_kind(raws: Sequence[Wire], active: Mapping[str, TokenState],
            changes: Sequence[KindChange]) -> list[tuple[list[Wire], dict[str, TokenState]]]:
    """The logs split into groups each decoded with one kind per token: the first group has
    every log before its token's first change (and every other token's), each later group a
    changed token's logs between two changes, with the kind after the first of them."""
    cuts: dict[str, list[KindChange]] = {}
    for c in changes:
        cuts.setdefault(c.token, []).append(c)
    groups: dict[tuple[str, int], list[Wire]] = {}
    first: list[Wire] = []
    for r in raws:
        token = str(r.get("address", "")).lower()
        mine = cuts.get(token)
        if not mine:
            first.append(r)
            continue
        at = (int(r["blockNumber"], 16), int(r["logIndex"], 16))
        passed = sum(1 for c in mine if (c.block_number, c.log_index) < at)
        (groups.setdefault((token, passed), []) if passed else first).append(r)
    out = [(first, dict(active))]
    for (token, passed), part in groups.items():
        state = active[token]
        out.append((part, {token: replace(state, info=replace(state.info, kind=cuts[token][passed - 1].after))}))
    return out


async def follow_upgrades(chain: Chain, store: Store, chain_id: int, active: dict[str, TokenState],
                          changes: Sequence[KindChange], decoded: Decoded) -> Upgraded:
    """Apply the kind changes of a range: ``active`` gets the new kinds, a token that became a
    share token gets its holders converted at the upgrade block."""
    out = Upgraded([], {})
    for c in changes:
        state = active[c.token]
        active[c.token] = replace(state, info=replace(state.info, kind=c.after))
        if c.after is TokenKind.XSTOCK and c.before is TokenKind.ERC20:
            out.since[c.token] = c.block_number
            out.conversions += await _conversions(chain, store, chain_id, c, decoded.transfers)
    return out


async def _conversions(chain: Chain, store: Store, chain_id: int, c: KindChange,
                       moves: list[Transfer]) -> list[Transfer]:
    """One row per holder whose ledger shares after the upgrade block differ from the chain's
    ``sharesOf`` at that block."""
    token, u = c.token, c.block_number
    rows = await store.fetch("SELECT holder, shares FROM share_balances WHERE chain_id = $1 AND token = $2",
                             chain_id, token)
    ledger: dict[str, int] = {r["holder"]: int(r["shares"]) for r in rows}
    for (_, holder), moved in fold(m for m in moves if m.token == token and m.block_number <= u).holders.items():
        ledger[holder] = ledger.get(holder, 0) + moved.shares
    holders = sorted(ledger)
    answers = await chain.call_many([(token, views.shares_of(h)) for h in holders], u)
    time = c.block_time or (await chain.header(u)).timestamp
    rows_out: list[Transfer] = []
    for holder, answer in zip(holders, answers, strict=True):
        delta = (views.as_uint(answer) or 0) - ledger[holder]
        if delta == 0:
            continue
        frm, to = (ZERO_ADDRESS, holder) if delta > 0 else (holder, ZERO_ADDRESS)
        rows_out.append(Transfer(token, u, time, c.tx_hash, -1 - len(rows_out), frm, to, 0, abs(delta)))
    log.info("shares_converted", token=token, block=u, holders=len(holders), rows=len(rows_out))
    return rows_out
