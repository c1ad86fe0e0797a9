"""Upgrades followed: what a token is can change at a block (issue 11, case 3).

Place in the pipeline: between fetch/decode and follow/ledger, for the ranges that contain an
``Upgraded`` event of a followed proxy. The token's kind is asked again of the contract at the
upgrade's block (an xStock answers getCurrentMultiplier). When a plain token became a share
token there:

- its logs after the Upgraded log are decoded again as a share token's (Transfer + TransferShares
  pairs), those before it stay plain moves (shares = amount);
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

from collections.abc import Mapping
from dataclasses import dataclass, replace

from . import calls, logs
from .chain import Chain
from .fetch import decode_range, read_logs
from .ledger import fold
from .models import ZERO_ADDRESS, Decoded, Header, TokenEvent, TokenKind, Transfer
from .store import Store
from .writes import TokenState

log = logs.get("upgrades")


@dataclass(frozen=True)
class KindChange:
    token: str
    block_number: int
    before: TokenKind
    after: TokenKind


@dataclass
class Upgraded:
    """What the upgrades of one range change: the decoded moves, the conversion rows, the kind
    changes, and the block each upgraded token's multiplier path starts at."""

    decoded: Decoded
    conversions: list[Transfer]
    kinds: list[KindChange]
    since: dict[str, int]
    logs: int = 0


async def follow_upgrades(chain: Chain, store: Store, chain_id: int, active: dict[str, TokenState],
                          decoded: Decoded, end: int, headers: dict[int, Header]) -> Upgraded:
    """Re-read the kind of every active token upgraded in this range; convert and re-decode the
    ones that changed. ``active`` is updated with the new kinds."""
    out = Upgraded(decoded, [], [], {})
    seen: set[str] = set()
    for event in decoded.events:
        state = active.get(event.token)
        if event.name != "Upgraded" or state is None or event.token in seen:
            continue
        answer = await chain.call(event.token, calls.GET_CURRENT_MULTIPLIER, event.block_number)
        kind = TokenKind.XSTOCK if calls.as_multiplier(answer) is not None else TokenKind.ERC20
        if kind is state.info.kind:
            continue
        seen.add(event.token)
        out.kinds.append(KindChange(event.token, event.block_number, state.info.kind, kind))
        active[event.token] = replace(state, info=replace(state.info, kind=kind))
        log.warning("token_kind_changed", token=event.token, block=event.block_number,
                    before=state.info.kind.value, after=kind.value)
        if kind is TokenKind.XSTOCK:
            await _to_shares(chain, store, chain_id, active[event.token], event, out, end, headers)
    return out


async def _to_shares(chain: Chain, store: Store, chain_id: int, state: TokenState, upgrade: TokenEvent,
                     out: Upgraded, end: int, headers: dict[int, Header]) -> None:
    token, u = upgrade.token, upgrade.block_number
    after = (u, upgrade.log_index)
    raws, _ = await read_logs(chain, [token], u, end, headers)
    raws = [r for r in raws if (int(r["blockNumber"], 16), int(r["logIndex"], 16)) > after]
    again = decode_range(raws, {token: state}, [], u - 1, headers)
    moves = [t for t in out.decoded.transfers if t.token != token or (t.block_number, t.log_index) < after]
    moves += again.transfers
    moves.sort(key=lambda t: (t.block_number, t.log_index))
    out.decoded = Decoded(moves, out.decoded.events, out.decoded.new_tokens, out.decoded.skipped + again.skipped)
    out.logs += len(raws)
    out.since[token] = u
    out.conversions += await _conversions(chain, store, chain_id, token, upgrade, moves)


async def _conversions(chain: Chain, store: Store, chain_id: int, token: str, upgrade: TokenEvent,
                       moves: list[Transfer]) -> list[Transfer]:
    """One row per holder whose ledger shares after the upgrade block differ from the chain's
    ``sharesOf`` at that block."""
    u = upgrade.block_number
    rows = await store.fetch("SELECT holder, shares FROM share_balances WHERE chain_id = $1 AND token = $2",
                             chain_id, token)
    ledger: dict[str, int] = {r["holder"]: int(r["shares"]) for r in rows}
    for (_, holder), moved in fold(m for m in moves if m.token == token and m.block_number <= u).holders.items():
        ledger[holder] = ledger.get(holder, 0) + moved.shares
    holders = sorted(ledger)
    answers = await chain.call_many([(token, calls.shares_of(h)) for h in holders], u)
    rows_out: list[Transfer] = []
    for holder, answer in zip(holders, answers, strict=True):
        delta = (calls.as_uint(answer) or 0) - ledger[holder]
        if delta == 0:
            continue
        frm, to = (ZERO_ADDRESS, holder) if delta > 0 else (holder, ZERO_ADDRESS)
        rows_out.append(Transfer(token, u, upgrade.block_time, upgrade.tx_hash, -1 - len(rows_out), frm, to, 0,
                                 abs(delta)))
    log.info("shares_converted", token=token, block=u, holders=len(holders), rows=len(rows_out))
    return rows_out


def kinds_of(active: Mapping[str, TokenState]) -> dict[str, TokenKind]:
    return {a: t.info.kind for a, t in active.items()}
