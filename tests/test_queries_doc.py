"""Every query of docs/queries.md, run as the analyst role against the analyst scenario, and its
answer checked against the chain (eth_call and logs at the blocks concerned) or the custody
records the scenario imported. A question without a check here, or a check without its
question, fails the suite: the document and the tests move together."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devnet.simulate import Simulator
from tests.analyst_world import DAY, ZERO, ChainView, Move, Scenario, scenario  # noqa: F401  (fixture)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "queries.md"
STATEMENT_OF = "0xee1b7f9d8e27b23eca9f61c87304b2b4ccf3b3e4"  # holder 2 of the scenario's seed


def docs_queries(text: str) -> list[tuple[str, str]]:
    """(question, sql) per ```sql block, the question being its ## heading without the number."""
    out, heading = [], ""
    for block in re.split(r"(^## .*$)", text, flags=re.MULTILINE):
        if block.startswith("## "):
            heading = re.sub(r"^\d+\.\s*", "", block[3:].strip())
            continue
        out += [(heading, sql.strip()) for sql in re.findall(r"```sql\n(.*?)```", block, flags=re.DOTALL)]
    return out


QUERIES = docs_queries(DOCS.read_text())
Rows = list[asyncpg.Record]


async def as_analyst(url: str, sql: str) -> Rows:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET ROLE analyst")
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ what the chain says


def units(raw: int) -> Decimal:
    return Decimal(raw).scaleb(-18)


def utc_day(t: int) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class Truth:
    """Answers computed from the scenario's chains alone."""

    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.heads = {cid: c.head() for cid, c in s.chains.items()}
        self.now = max(c.time(self.heads[cid]) for cid, c in s.chains.items())
        self.today = utc_day(self.now)
        self._moves: dict[tuple[int, str], list[Move]] = {}

    def views(self) -> Iterable[tuple[int, ChainView, Simulator]]:
        yield self.s.alpha.chain_id, self.s.a, self.s.sim_alpha
        yield self.s.beta.chain_id, self.s.b, self.s.sim_beta

    def token(self, symbol: str) -> str:
        return self.s.alpha.all_tokens[symbol]

    def symbols(self) -> list[str]:
        return list(self.s.alpha.all_tokens)

    def moves(self, chain_id: int, symbol: str) -> list[Move]:
        key = (chain_id, symbol)
        if key not in self._moves:
            self._moves[key] = self.s.chain(chain_id).moves(self.token(symbol))
        return self._moves[key]

    def touched(self, chain_id: int, symbol: str) -> list[str]:
        return sorted({m.to for m in self.moves(chain_id, symbol) if m.to != ZERO})

    def shares(self, chain_id: int, symbol: str, block: int) -> dict[str, int]:
        held = self.s.chain(chain_id).shares(self.token(symbol), self.touched(chain_id, symbol), block)
        return {h: v for h, v in held.items() if v > 0}

    def end_of_day_block(self, chain_id: int, d: date) -> int:
        return self.s.chain(chain_id).last_block_until(int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
                                                       + DAY - 1)

    def first_receipts(self, chain_id: int, symbol: str) -> dict[str, date]:
        first: dict[str, date] = {}
        for m in self.moves(chain_id, symbol):
            if m.to != ZERO and m.shares > 0 and m.to not in first:
                first[m.to] = utc_day(m.time)
        return first


def ranked(balances: dict[str, int], limit: int) -> list[tuple[int, str, int]]:
    """(rank, holder, value) by value descending; equal values share a rank."""
    order = sorted(balances.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(1 + sum(1 for v in balances.values() if v > value), h, value) for h, value in order
            if 1 + sum(1 for v in balances.values() if v > value) <= limit]


# ---------------------------------------------------------------------------------------- checks


def top_now(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, chain, _ in t.views():
        shares = t.shares(cid, "TSLAx", t.heads[cid])
        balances = chain.balances(t.token("TSLAx"), list(shares), t.heads[cid])
        total = sum(shares.values())
        expected += [(cid, rank, h, units(balances[h]), round(Decimal(100 * v) / total, 2))
                     for rank, h, v in ranked(shares, 20)]
    got = [(r["chain_id"], r["rank"], r["holder"], r["balance"], r["pct_of_supply"]) for r in rows]
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    assert all(abs(g[4] - e[4]) <= Decimal("0.01") for g, e in zip(got, expected, strict=True))


def top_month_ago(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, chain, _ in t.views():
        block = chain.last_block_until(t.now - 30 * DAY)
        held = chain.balances(t.token("TSLAx"), list(t.shares(cid, "TSLAx", block)), block)
        expected += [(cid, rank, h, units(v)) for rank, h, v in ranked(held, 20)]
        assert {r["block"] for r in rows if r["chain_id"] == cid} <= set(range(block + 1))
    assert [(r["chain_id"], r["rank"], r["holder"], r["balance"]) for r in rows] == expected
    assert any(r["chain_id"] == t.s.alpha.chain_id for r in rows)


def new_holders(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, _, _ in t.views():
        per_day = Counter(d for d in t.first_receipts(cid, "TSLAx").values() if d > t.today - timedelta(days=60))
        expected += [(d, cid, n) for d, n in per_day.items()]
    assert sorted((r["day"], r["chain_id"], r["new_holders"]) for r in rows) == sorted(expected)
    assert sum(n for _, _, n in expected) > len(t.s.sim_alpha.holders)


def holder_history(t: Truth, rows: Rows) -> None:
    by_chain: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        by_chain[r["chain_id"]].append(r)
    token = t.token("TSLAx")
    for cid, chain, _ in t.views():
        days = [r["day"] for r in by_chain[cid]]
        last = utc_day(chain.time(t.heads[cid]))
        first = min(utc_day(m.time) for m in t.moves(cid, "TSLAx"))
        start = max(first, t.today - timedelta(days=59))
        assert days == [start + timedelta(days=i) for i in range((last - start).days + 1)], cid
        firsts = Counter(t.first_receipts(cid, "TSLAx").values())
        before = set(t.shares(cid, "TSLAx", t.end_of_day_block(cid, start - timedelta(days=1))))
        for r in by_chain[cid]:
            block = t.end_of_day_block(cid, r["day"])
            held = set(t.shares(cid, "TSLAx", block))
            assert (r["holder_count"], r["joined"], r["exited"]) == (len(held), len(held - before),
                                                                     len(before - held)), (cid, r["day"])
            assert r["new_holders"] == firsts[r["day"]], (cid, r["day"])
            assert r["total_supply"] == units(chain.total_supply(token, block)), (cid, r["day"])
            assert r["multiplier"] == units(chain.multiplier(token, block)), (cid, r["day"])
            before = held


def day_sums(t: Truth, cid: int, symbol: str) -> dict[date, dict[str, Any]]:
    out: dict[date, dict[str, Any]] = defaultdict(lambda: {"mints": 0, "minted": 0, "burns": 0, "burned": 0,
                                                            "transfers": 0, "transferred": 0, "active": set()})
    for m in t.moves(cid, symbol):
        d = out[utc_day(m.time)]
        kind = "mint" if m.frm == ZERO else "burn" if m.to == ZERO else "transfer"
        d[f"{kind}s"] += 1
        d[{"mint": "minted", "burn": "burned", "transfer": "transferred"}[kind]] += m.amount
        d["active"] |= {m.frm, m.to} - {ZERO}
    return out


def minted_redeemed(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, _, _ in t.views():
        for d, x in day_sums(t, cid, "TSLAx").items():
            if d > t.today - timedelta(days=90) and (x["mints"] or x["burns"]):
                expected.append((d, cid, x["mints"], units(x["minted"]), x["burns"], units(x["burned"]),
                                 units(x["minted"] - x["burned"])))
    got = [(r["day"], r["chain_id"], r["mints"], r["minted"], r["burns"], r["burned"], r["net_issued"]) for r in rows]
    assert got == sorted(expected)
    assert any(g[4] for g in got), "the scenario redeems"


def latest_day(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, _, _ in t.views():
        for symbol in t.symbols():
            x = day_sums(t, cid, symbol).get(t.today)
            if x is not None:
                expected.append((symbol, cid, x["transfers"], units(x["transferred"]), x["mints"], units(x["minted"]),
                                 x["burns"], units(x["burned"]), len(x["active"])))
    got = [(r["symbol"], r["chain_id"], r["transfers"], r["transferred"], r["mints"], r["minted"], r["burns"],
            r["burned"], r["active_addresses"]) for r in rows]
    assert sorted(got) == sorted(expected) and got
    assert [g[3] for g in got] == sorted((g[3] for g in got), reverse=True)


def largest_transfers(t: Truth, rows: Rows) -> None:
    moves = [(cid, m) for cid, _, _ in t.views() for m in t.moves(cid, "TSLAx")
             if utc_day(m.time) == t.today and ZERO not in (m.frm, m.to)]
    moves.sort(key=lambda x: (-x[1].amount, x[1].block, x[1].log_index))
    expected = [(cid, at(m.time), m.frm, m.to, units(m.amount), m.tx_hash) for cid, m in moves[:10]]
    assert [(r["chain_id"], r["block_time"], r["from_address"], r["to_address"], r["amount"], r["tx_hash"])
            for r in rows] == expected and expected


def statement(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, chain, _ in t.views():
        for m in t.moves(cid, "TSLAx"):
            if STATEMENT_OF not in (m.frm, m.to) or m.time <= t.now - 60 * DAY:
                continue
            balance = units(chain.balances(t.token("TSLAx"), [STATEMENT_OF], m.block)[STATEMENT_OF])
            kind = "mint" if m.frm == ZERO else "burn" if m.to == ZERO else "transfer"
            for signed in ([-units(m.amount)] if m.frm == STATEMENT_OF else []) + (
                    [units(m.amount)] if m.to == STATEMENT_OF else []):  # a self transfer is both
                expected.append((cid, m.block, m.log_index, at(m.time), kind, signed, balance))
    expected.sort(key=lambda e: (e[0], e[1], e[2], e[5]))
    assert [(r["chain_id"], r["block_number"], r["block_time"], r["kind"], r["amount_in"], r["balance_after_block"])
            for r in rows] == [e[:2] + e[3:] for e in expected] and len(expected) > 5


def through_split(t: Truth, rows: Rows) -> None:
    s, token = t.s, t.token("TSLAx")
    assert s.split_block in s.sim_alpha.summary.activations["TSLAx"]
    shares_now = t.shares(s.alpha.chain_id, "TSLAx", t.heads[s.alpha.chain_id])
    top = [h for rank, h, _ in ranked(shares_now, 1)]
    expected = []
    for block in range(s.split_block - 2, s.split_block + 3):
        for holder in top:
            expected.append((block, block - s.split_block, holder, units(s.a.multiplier(token, block)),
                             s.a.shares(token, [holder], block)[holder],
                             units(s.a.balances(token, [holder], block)[holder])))
    assert [(r["block"], r["blocks_after_split"], r["holder"], r["multiplier"], r["shares"], r["balance"])
            for r in rows] == expected
    before, after = rows[1], rows[2]
    assert after["multiplier"] == 2 * before["multiplier"] and after["shares"] == before["shares"]


def unbacked(t: Truth, rows: Rows) -> None:
    opened, closed = t.s.imports_at[0], t.s.imports_at[1]
    short = next(a for a in t.s.attestations if a.underlying == "TSLA" and a.as_of == opened)
    supply = short.shares / Decimal("0.9")
    assert [tuple(r.values()) for r in rows] == [
        ("TSLA", 1, at(opened), timedelta(seconds=closed - opened), supply - short.shares, False)]


def backing_now(t: Truth, rows: Rows) -> None:
    got = {r["underlying"]: r for r in rows}
    assert set(got) == {"TSLA", "AAPL", "NVDA", "SPY", "USDT0"}
    for underlying in ("TSLA", "AAPL"):
        last = [a for a in t.s.attestations if a.underlying == underlying][-1]
        r = got[underlying]
        assert t.now - last.as_of > DAY
        assert (r["status"], r["custody_shares"], r["custody_as_of"]) == ("stale", last.shares, at(last.as_of))
        block = t.s.a.last_block_until(last.as_of)
        symbol = underlying + "x"
        supply = units(t.s.a.total_supply(t.token(symbol), block) + t.s.b.total_supply(t.token(symbol), t.s.b.head()))
        assert (r["onchain_supply"], r["ratio"], r["shortfall"]) == (supply, last.shares / supply, 0)
    for underlying, symbol in (("NVDA", "NVDAx"), ("SPY", "SPYx"), ("USDT0", "USDT0")):
        r = got[underlying]
        supply = sum(units(c.total_supply(t.token(symbol), t.heads[cid])) for cid, c, _ in t.views())
        assert (r["status"], r["custody_shares"], r["onchain_supply"]) == ("no_attestation", None, supply)


def supply_per_underlying(t: Truth, rows: Rows) -> None:
    for r in rows:
        symbol = r["underlying"] if r["underlying"] == "USDT0" else r["underlying"] + "x"
        per_chain = {cid: units(c.total_supply(t.token(symbol), t.heads[cid])) for cid, c, _ in t.views()}
        assert r["tokens"] == 2 and r["total_supply"] == sum(per_chain.values())
        assert {int(k): Decimal(v) for k, v in (p.split(": ") for p in r["per_chain"].split(", "))} == per_chain
    assert len(rows) == len(t.symbols())


def two_chains(t: Truth, rows: Rows) -> None:
    both = []
    for symbol in t.symbols():
        balances = []
        for cid, chain, _ in t.views():
            held = t.shares(cid, symbol, t.heads[cid])
            balances.append({h: units(v) for h, v in chain.balances(t.token(symbol), list(held), t.heads[cid]).items()})
        both += [(h, symbol, 2, balances[0][h] + balances[1][h]) for h in set(balances[0]) & set(balances[1])]
    both.sort(key=lambda x: (-x[3], x[0], x[1]))
    assert [(r["holder"], r["symbol"], r["chains"], r["total_balance"]) for r in rows] == both[:20]
    assert len(both) > 20


def multiplier_changes(t: Truth, rows: Rows) -> None:
    expected = []
    for cid, chain, _ in t.views():
        for symbol, token in t.s.alpha.tokens.items():
            blocks = range(t.s.alpha.deploy_block, t.heads[cid] + 1)
            values = {b: chain.multiplier(token, b) for b in blocks}
            for b in blocks:
                if b - 1 in values and values[b] != values[b - 1] and values[b - 1]:
                    expected.append((symbol, cid, b, at(chain.time(b)), units(values[b])))
    got = [(r["symbol"], r["chain_id"], r["block_number"], r["activated_at"], r["multiplier"]) for r in rows]
    assert sorted(got) == sorted(expected) and len(got) >= 6
    observed = {(r["symbol"], r["block_number"]) for r in rows if r["source"] == "observed"}
    for symbol, blocks in t.s.sim_alpha.summary.activations.items():
        assert {(symbol, b) for b in blocks} <= observed
    assert all(r["scheduled_at"] is not None for r in rows if (r["symbol"], r["block_number"]) in
               {(s, b) for s, bs in t.s.sim_alpha.summary.activations.items() for b in bs})


def redeemers(t: Truth, rows: Rows) -> None:
    totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for cid, _, _ in t.views():
        burner = (t.s.alpha if cid == t.s.alpha.chain_id else t.s.beta).roles["burner"]
        for m in t.moves(cid, "TSLAx"):
            if m.to == burner and utc_day(m.time) > t.today - timedelta(days=60):
                totals[(cid, m.frm)][0] += 1
                totals[(cid, m.frm)][1] += m.amount
    expected = sorted(((cid, frm, n, units(v)) for (cid, frm), (n, v) in totals.items()),
                      key=lambda x: (-x[3], x[1]))[:20]
    assert [(r["chain_id"], r["redeemer"], r["redemptions"], r["redeemed"]) for r in rows] == expected and expected


def progress(t: Truth, rows: Rows) -> None:
    expected = [("alpha", t.s.alpha.chain_id), ("beta", t.s.beta.chain_id)]
    assert [(r["chain"], r["chain_id"]) for r in rows] == sorted(expected, key=lambda x: x[1])
    for r in rows:
        chain = t.s.chain(r["chain_id"])
        assert (r["indexed_block"], r["indexed_block_time"], r["tokens"]) == (
            t.heads[r["chain_id"]], at(chain.time(t.heads[r["chain_id"]])), len(t.symbols()))
        # the backfill records the head it saw: indexed to it, nothing left
        assert (r["head_block"], r["lag_blocks"]) == (t.heads[r["chain_id"]], 0)


CHECKS: dict[str, Callable[[Truth, Rows], None]] = {
    "Who are the top 20 TSLAx holders now?": top_now,
    "Who were the top 20 TSLAx holders a month ago?": top_month_ago,
    "How many new TSLAx holders per day over the last 60 days?": new_holders,
    "How did TSLAx's holder count and supply change day by day?": holder_history,
    "How much TSLAx was minted and redeemed per day over the last 90 days?": minted_redeemed,
    "What did every xStock do on the latest day?": latest_day,
    "Which were the largest TSLAx transfers of the latest day?": largest_transfers,
    "What is one address's TSLAx statement over the last 60 days?": statement,
    "What did a holder's balance do through a split?": through_split,
    "Which underlyings were ever unbacked, and for how long?": unbacked,
    "Is every underlying backed right now?": backing_now,
    "What is the supply of each underlying over all chains?": supply_per_underlying,
    "Which addresses hold the same xStock on two chains or more?": two_chains,
    "Which corporate actions changed the multipliers, and how were they learned?": multiplier_changes,
    "Who redeemed the most TSLAx over the last 60 days?": redeemers,
    "How far behind the chains is the index?": progress,
}


def test_every_question_has_its_sql_a_sample_and_a_check() -> None:
    text = DOCS.read_text()
    headings = [re.sub(r"^\d+\.\s*", "", h) for h in re.findall(r"^## (.*)$", text, flags=re.MULTILINE)]
    assert len(headings) >= 12
    assert [q for q, _ in QUERIES] == headings, "one ```sql block per question"
    assert set(headings) == set(CHECKS)
    samples = re.findall(r"```sql\n.*?```\n\n```text\n(.*?)```", text, flags=re.DOTALL)
    assert len(samples) == len(QUERIES) and all(re.search(r"\(\d+ rows?\)", s) for s in samples)


_TRUTH: dict[int, Truth] = {}


@pytest.mark.parametrize(("question", "sql"), QUERIES, ids=[f"q{i + 1:02d}" for i in range(len(QUERIES))])
async def test_docs_query(scenario: Scenario, question: str, sql: str) -> None:  # noqa: F811
    rows = await as_analyst(scenario.database_url, sql)
    truth = _TRUTH.setdefault(id(scenario), Truth(scenario))
    CHECKS[question](truth, rows)
