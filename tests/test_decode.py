"""decode: raw logs -> typed events, checked against eth-abi and the signatures in XSTOCKS.md."""

from __future__ import annotations

import random
from typing import Any

import eth_abi
import orjson
import pytest
from eth_utils import keccak

from indexer import decode
from indexer.batch_sql import copy_text
from indexer.chain import _clean
from indexer.decode import (
    FACTORY_TOPICS,
    NEW_TOKEN,
    OTHER_EVENTS,
    TOKEN_TOPICS,
    TRANSFER,
    TRANSFER_SHARES,
    EventSpec,
    Malformed,
    data_uint,
    word_address,
)
from indexer.errors import UnindexableLog
from indexer.models import ZERO_ADDRESS, NewToken, RawLog, TokenKind, Transfer
from indexer.rpc import _result
from indexer.wire import DictLog, Log, parse_answer

XSTOCK = "0x" + "a1" * 20
ERC20 = "0x" + "e2" * 20
FACTORY = "0x" + "fa" * 20
UNKNOWN = "0x" + "99" * 20
ALICE = "0x" + "11" * 20
BOB = "0x" + "22" * 20
TX = "0x" + "cd" * 32
KINDS = {XSTOCK: TokenKind.XSTOCK, ERC20: TokenKind.ERC20}

UINT_EDGES = [0, 1, 2, 255, 256, 10**18, 2**255, 2**256 - 2, 2**256 - 1]
ADDRESS_EDGES = [
    ZERO_ADDRESS,
    "0x" + "00" * 19 + "01",
    "0x" + "ff" * 20,
    "0x80" + "00" * 19,
    "0xdead" + "00" * 18,
    "0x" + "7f" + "ff" * 19,
]

rng = random.Random(20260726)
RANDOM_UINTS = [rng.getrandbits(rng.choice([8, 64, 128, 255, 256])) for _ in range(40)]
RANDOM_ADDRESSES = ["0x" + rng.getrandbits(160).to_bytes(20, "big").hex() for _ in range(40)]


# --- builders ---------------------------------------------------------------------------------


def word(typ: str, value: object) -> str:
    return "0x" + eth_abi.encode([typ], [value]).hex()


def addr_topic(address: str) -> str:
    return word("address", address)


def raw_log(
    address: str,
    topics: list[str],
    data: str = "0x",
    *,
    block: int = 100,
    time: int | None = 1_700_000_000,
    tx: str = TX,
    index: int = 0,
) -> RawLog:
    return RawLog(address, tuple(topics), data, block, "0x" + "bb" * 32, time, tx, index)


def move(spec: EventSpec, token: str, frm: str, to: str, value: int, **kw: Any) -> RawLog:
    return raw_log(token, [spec.topic, addr_topic(frm), addr_topic(to)], word("uint256", value), **kw)


def pair(token: str, frm: str, to: str, amount: int, shares: int, *, index: int = 0, **kw: Any) -> list[RawLog]:
    return [
        move(TRANSFER, token, frm, to, amount, index=index, **kw),
        move(TRANSFER_SHARES, token, frm, to, shares, index=index + 1, **kw),
    ]


def sample_value(typ: str, i: int) -> object:
    if typ == "address":
        return RANDOM_ADDRESSES[i % len(RANDOM_ADDRESSES)]
    if typ == "uint256":
        return RANDOM_UINTS[i % len(RANDOM_UINTS)]
    if typ == "bool":
        return i % 2 == 1
    if typ == "string":
        return f"Terms v{i}: ünïcode ok, 0x-prefixed text stays as is"
    raise AssertionError(f"no sample for {typ}")


def expected_arg(typ: str, value: object) -> object:
    if typ == "uint256":
        return str(value)
    if typ == "address":
        return str(value).lower()
    return value


def build_event(spec: EventSpec, values: dict[str, object], token: str, **kw: Any) -> RawLog:
    topics = [spec.topic] + [word(typ, values[name]) for name, typ in spec.indexed]
    data_types = [typ for _, typ in spec.data]
    data = "0x" + eth_abi.encode(data_types, [values[name] for name, _ in spec.data]).hex() if spec.data else "0x"
    return raw_log(token, topics, data, **kw)


# --- topic hashes -----------------------------------------------------------------------------

CANONICAL = {
    "MultiplierUpdated": "MultiplierUpdated(uint256)",
    "MultiplierScheduled": "MultiplierScheduled(uint256,uint256)",
    "MultiplierScheduleOverridden": "MultiplierScheduleOverridden(uint256,uint256,uint256,uint256)",
    "NewMinter": "NewMinter(address)",
    "NewBurner": "NewBurner(address)",
    "NewPauser": "NewPauser(address)",
    "NewMultiplierUpdater": "NewMultiplierUpdater(address)",
    "NewSanctionsList": "NewSanctionsList(address)",
    "PauseModeChange": "PauseModeChange(bool)",
    "NewTerms": "NewTerms(string)",
    "OwnershipTransferred": "OwnershipTransferred(address,address)",
    "Upgraded": "Upgraded(address)",
}


def keccak_topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def test_transfer_topic_is_the_well_known_erc20_hash() -> None:
    assert TRANSFER.topic == "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    assert TRANSFER.topic == keccak_topic("Transfer(address,address,uint256)")


def test_transfer_shares_and_new_token_topics() -> None:
    assert TRANSFER_SHARES.topic == keccak_topic("TransferShares(address,address,uint256)")
    assert NEW_TOKEN.topic == keccak_topic("NewToken(address,string,string)")
    assert FACTORY_TOPICS == (keccak_topic("NewToken(address,string,string)"),)


def test_other_events_are_exactly_the_documented_ones() -> None:
    assert {spec.name: spec.topic for spec in OTHER_EVENTS} == {
        name: keccak_topic(sig) for name, sig in CANONICAL.items()
    }


def test_token_topics_cover_moves_and_every_other_event() -> None:
    expected = {keccak_topic(sig) for sig in CANONICAL.values()}
    expected.add(keccak_topic("Transfer(address,address,uint256)"))
    expected.add(keccak_topic("TransferShares(address,address,uint256)"))
    assert set(TOKEN_TOPICS) == expected
    assert len(TOKEN_TOPICS) == len(expected)


def test_multiplier_updated_topic_constant() -> None:
    assert decode.MULTIPLIER_UPDATED_TOPIC == keccak_topic("MultiplierUpdated(uint256)")


# --- fast path agrees with eth-abi ------------------------------------------------------------


@pytest.mark.parametrize("value", UINT_EDGES + RANDOM_UINTS)
def test_data_uint_matches_eth_abi(value: int) -> None:
    encoded = eth_abi.encode(["uint256"], [value])
    assert data_uint("0x" + encoded.hex()) == eth_abi.decode(["uint256"], encoded)[0] == value


@pytest.mark.parametrize("address", ADDRESS_EDGES + RANDOM_ADDRESSES)
def test_word_address_matches_eth_abi(address: str) -> None:
    encoded = eth_abi.encode(["address"], [address])
    assert word_address("0x" + encoded.hex()) == eth_abi.decode(["address"], encoded)[0].lower() == address


def eth_abi_move(raw: RawLog) -> tuple[str, str, int]:
    """What eth-abi reads in a Transfer / TransferShares log: (from, to, value)."""
    return (eth_abi.decode(["address"], bytes.fromhex(raw.topics[1][2:]))[0].lower(),
            eth_abi.decode(["address"], bytes.fromhex(raw.topics[2][2:]))[0].lower(),
            eth_abi.decode(["uint256"], bytes.fromhex(raw.data[2:]))[0])


def random_case(local: random.Random) -> tuple[str, str, int, int]:
    """Parties and values drawn from the edges and from random words of every width."""
    frm = local.choice([*ADDRESS_EDGES, *RANDOM_ADDRESSES, "0x" + local.getrandbits(160).to_bytes(20, "big").hex()])
    to = local.choice([*ADDRESS_EDGES, *RANDOM_ADDRESSES, "0x" + local.getrandbits(160).to_bytes(20, "big").hex()])
    amount = local.choice([*UINT_EDGES, local.getrandbits(local.randint(1, 256))])
    return frm, to, amount, local.choice([*UINT_EDGES, local.getrandbits(local.randint(1, 256))])


def node_shape(raws: list[RawLog], local: random.Random) -> list[dict[str, Any]]:
    """Logs as a node may send them: upper-case hex in places (the same way for one move's
    logs, as one answer spells a transaction), wire types."""
    upper_words, upper_ids = local.random() < 0.3, local.random() < 0.3
    out = []
    for raw in raws:
        wire = raw.wire()
        if upper_words:
            wire["topics"] = [wire["topics"][0]] + [t[:2] + t[2:].upper() for t in wire["topics"][1:]]
        if upper_ids:
            wire["address"] = "0x" + wire["address"][2:].upper()
            wire["transactionHash"] = "0x" + wire["transactionHash"][2:].upper()
        out.append(wire)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_hot_path_matches_eth_abi_on_random_logs(seed: int) -> None:
    """decode() itself (the backfill's path, on the node's dicts) against eth-abi: random xStock
    pairs and plain moves, edges included, in mixed case as nodes may send them."""
    local = random.Random(seed)
    logs, expected, index = [], [], 0
    for i in range(300):
        frm, to, amount, shares = random_case(local)
        block, tx = 10 + i // 7, "0x" + local.getrandbits(256).to_bytes(32, "big").hex()
        if local.random() < 0.7:
            raws = pair(XSTOCK, frm, to, amount, shares, index=index, block=block, tx=tx)
            parties = eth_abi_move(raws[0])
            assert eth_abi_move(raws[1])[:2] == parties[:2]
            expected.append(Transfer(XSTOCK, block, 1_700_000_000, tx, index, *parties,
                                     eth_abi_move(raws[1])[2]))
        else:
            raws = [move(TRANSFER, ERC20, frm, to, amount, index=index, block=block, tx=tx)]
            parties = eth_abi_move(raws[0])
            expected.append(Transfer(ERC20, block, 1_700_000_000, tx, index, *parties, parties[2]))
        logs += node_shape(raws, local)
        index += len(raws)
    out = decode.decode(logs, KINDS)
    assert out.transfers == expected
    assert [(t.from_address, t.to_address) for t in out.transfers] == [(e[5], e[6]) for e in expected]
    # From the answer's bytes, as the backfill reads them (wire.Log), and over the node's dicts
    # (wire.DictLog, for answers of another shape): the same moves.
    body = orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": logs})
    typed_logs = _clean(_result(parse_answer(body), "eth_getLogs"))
    assert typed_logs and all(type(r) is Log for r in typed_logs)
    assert decode.decode(typed_logs, KINDS).transfers == expected
    assert decode.decode([DictLog(r) for r in logs], KINDS).transfers == expected


@pytest.mark.parametrize(
    "topic",
    [
        "0x" + "00" * 11 + "01" + "11" * 20,  # non-zero upper byte
        "0x" + "ff" * 12 + "11" * 20,
        "0x" + "11" * 20,  # an unpadded address
        "0x" + "00" * 33,  # one byte too long
    ],
)
def test_word_address_rejects_non_address_words(topic: str) -> None:
    with pytest.raises(Malformed):
        word_address(topic)


@pytest.mark.parametrize("data", ["0x", "0x" + "00" * 31, "0x" + "00" * 33, "0x" + "00" * 64])
def test_data_uint_rejects_other_lengths(data: str) -> None:
    with pytest.raises(Malformed):
        data_uint(data)


@pytest.mark.parametrize("token", [XSTOCK, ERC20])
def test_a_move_with_four_topics_stops(token: str) -> None:
    raw = raw_log(token, [TRANSFER.topic, addr_topic(ALICE), addr_topic(BOB), word("uint256", 7)], "0x")
    with pytest.raises(UnindexableLog, match="4 topics, expected 3"):
        decode.decode([raw], KINDS)


@pytest.mark.parametrize("data", ["0x" + "0" * 62 + "_1", "0x" + "0" * 63 + " ", " 0x" + "0" * 63,
                                  "0x" + "0" * 63 + "g", "0x" + "0" * 62, "0x" + "0" * 66])
@pytest.mark.parametrize("token", [XSTOCK, ERC20])
def test_a_move_whose_data_is_not_one_hex_word_stops(token: str, data: str) -> None:
    """What eth-abi would refuse (bytes.fromhex fails or the length is not 32) is never read as
    a number by the fast path (int(x, 16) alone would accept "0_1" or a trailing space)."""
    raw = raw_log(token, [TRANSFER.topic, addr_topic(ALICE), addr_topic(BOB)], data)
    with pytest.raises(UnindexableLog, match="data"):
        decode.decode([raw, *pair(XSTOCK, ALICE, BOB, 1, 1, index=1)], KINDS)


@pytest.mark.parametrize("topic", ["0x" + "00" * 12 + "zz" * 20, "0x" + "00" * 11 + "01" + "11" * 20])
def test_a_move_whose_party_is_not_an_address_word_stops(topic: str) -> None:
    raw = raw_log(ERC20, [TRANSFER.topic, addr_topic(ALICE), topic], word("uint256", 7))
    with pytest.raises(UnindexableLog, match="not an address"):
        decode.decode([raw], KINDS)


# --- every other event round-trips through decode() --------------------------------------------


@pytest.mark.parametrize("spec", OTHER_EVENTS, ids=lambda s: s.name)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_other_event_round_trip(spec: EventSpec, seed: int) -> None:
    values = {name: sample_value(typ, seed + i) for i, (name, typ) in enumerate(spec.indexed + spec.data)}
    raw = build_event(spec, values, XSTOCK, block=42, time=1234, index=5)
    out = decode.decode([raw], KINDS)
    assert out.skipped == 0
    assert out.transfers == [] and out.new_tokens == []
    [event] = out.events
    assert (event.token, event.block_number, event.block_time, event.tx_hash, event.log_index, event.name) == (
        XSTOCK, 42, 1234, TX, 5, spec.name
    )
    assert event.args == {name: expected_arg(typ, values[name]) for name, typ in spec.indexed + spec.data}


def test_uint_args_are_decimal_strings_with_no_loss() -> None:
    spec = next(s for s in OTHER_EVENTS if s.name == "MultiplierScheduleOverridden")
    values = {"oldMultiplier": 2**256 - 1, "oldActivationTime": 0, "newMultiplier": 10**18 + 1, "newActivationTime": 1}
    [event] = decode.decode([build_event(spec, values, ERC20)], KINDS).events
    assert event.args == {
        "oldMultiplier": str(2**256 - 1),
        "oldActivationTime": "0",
        "newMultiplier": "1000000000000000001",
        "newActivationTime": "1",
    }


def test_new_token_from_factory() -> None:
    token = "0x" + "Ab" * 20
    raw = build_event(NEW_TOKEN, {"newToken": token, "name": "Tesla xStock", "symbol": "TSLAx"}, FACTORY, block=77)
    out = decode.decode([raw], {}, factories=[FACTORY])
    assert out.new_tokens == [NewToken(FACTORY, token.lower(), "Tesla xStock", "TSLAx", 77)]
    [event] = out.events
    assert event.name == "NewToken" and event.token == FACTORY
    assert event.args == {"newToken": token.lower(), "name": "Tesla xStock", "symbol": "TSLAx"}
    assert out.skipped == 0


def test_new_token_topic_from_a_non_factory_is_ignored() -> None:
    raw = build_event(NEW_TOKEN, {"newToken": ALICE, "name": "n", "symbol": "s"}, XSTOCK)
    out = decode.decode([raw], KINDS, factories=[FACTORY])
    assert (out.new_tokens, out.events, out.transfers, out.skipped) == ([], [], [], 0)


# --- pairing ----------------------------------------------------------------------------------


def test_xstock_pair_becomes_one_transfer() -> None:
    out = decode.decode(pair(XSTOCK, ALICE, BOB, 1000, 909, index=3, block=9, time=99), KINDS)
    assert out.transfers == [Transfer(XSTOCK, 9, 99, TX, 3, ALICE, BOB, 1000, 909)]
    assert out.skipped == 0 and out.events == []


@pytest.mark.parametrize("amount", [0, 1, 2**256 - 1])
def test_plain_erc20_transfer_has_shares_equal_amount(amount: int) -> None:
    out = decode.decode([move(TRANSFER, ERC20, ALICE, BOB, amount, index=4)], KINDS)
    assert out.transfers == [Transfer(ERC20, 100, 1_700_000_000, TX, 4, ALICE, BOB, amount, amount)]
    assert out.skipped == 0


def test_mint_burn_and_multiplier_in_one_stream() -> None:
    spec = OTHER_EVENTS[0]
    logs = [
        build_event(spec, {"value": 11 * 10**17}, XSTOCK, index=0),
        *pair(XSTOCK, ZERO_ADDRESS, ALICE, 110, 100, index=1),
        *pair(XSTOCK, ALICE, ZERO_ADDRESS, 55, 50, index=3),
        move(TRANSFER, ERC20, BOB, ALICE, 5, index=5),
    ]
    out = decode.decode(logs, KINDS)
    assert [(t.token, t.log_index, t.amount_raw, t.shares) for t in out.transfers] == [
        (XSTOCK, 1, 110, 100), (XSTOCK, 3, 55, 50), (ERC20, 5, 5, 5)]
    assert [line.split("\t")[-1] for line in copy_text(1, out.transfers).decode().splitlines()] == [
        "mint", "burn", "transfer"]
    assert [e.args for e in out.events] == [{"value": str(11 * 10**17)}]
    assert out.skipped == 0


def test_approval_before_the_pair_is_ignored_quietly() -> None:
    approval = raw_log(XSTOCK, [keccak_topic("Approval(address,address,uint256)"), addr_topic(ALICE), addr_topic(BOB)],
                       word("uint256", 5), index=0)
    out = decode.decode([approval, *pair(XSTOCK, ALICE, BOB, 5, 5, index=1)], KINDS)
    assert len(out.transfers) == 1 and out.skipped == 0


def good_tail(start: int) -> list[RawLog]:
    """A well-formed pair after a log (decoding goes on only after a log it may ignore)."""
    return pair(XSTOCK, BOB, ALICE, 7, 6, index=start)


def assert_only_tail(out: decode.Decoded, skipped: int) -> None:
    assert [(t.from_address, t.to_address, t.amount_raw, t.shares) for t in out.transfers] == [(BOB, ALICE, 7, 6)]
    assert out.skipped == skipped


def assert_stops(logs: list[RawLog], at: RawLog, kinds: dict[str, TokenKind] = KINDS, **kw: Any) -> str:
    """Decoding ``logs`` stops at ``at``: UnindexableLog naming its token, block, tx and log index."""
    with pytest.raises(UnindexableLog) as info:
        decode.decode(logs, kinds, **kw)
    message = str(info.value)
    assert (f"token {at.address} block {at.block_number} tx {at.tx_hash} log index {at.log_index}:"
            in message), message
    assert UnindexableLog.exit_code == 5
    return message


def test_xstock_transfer_without_transfer_shares_stops() -> None:
    lone = move(TRANSFER, XSTOCK, ALICE, BOB, 10, index=0)
    assert "not directly followed by its TransferShares" in assert_stops([lone, *good_tail(1)], lone)


def test_xstock_transfer_without_transfer_shares_at_the_end_stops() -> None:
    lone = move(TRANSFER, XSTOCK, ALICE, BOB, 10, index=2)
    assert_stops([*good_tail(0), lone], lone)


def test_transfer_shares_alone_stops() -> None:
    lone = move(TRANSFER_SHARES, XSTOCK, ALICE, BOB, 10, index=0)
    assert "without a Transfer" in assert_stops([lone, *good_tail(1)], lone)


def test_transfer_shares_of_a_token_indexed_as_plain_erc20_stops() -> None:
    shares = move(TRANSFER_SHARES, ERC20, ALICE, BOB, 10)
    assert "plain ERC-20" in assert_stops([shares], shares)


def test_mismatched_parties_stop() -> None:
    logs = [move(TRANSFER, XSTOCK, ALICE, BOB, 10, index=0), move(TRANSFER_SHARES, XSTOCK, ALICE, ALICE, 9, index=1)]
    assert "parties differ" in assert_stops([*logs, *good_tail(2)], logs[1])


@pytest.mark.parametrize(
    "shares_log",
    [
        move(TRANSFER_SHARES, XSTOCK, ALICE, BOB, 9, index=1, tx="0x" + "ee" * 32),  # other tx
        move(TRANSFER_SHARES, XSTOCK, ALICE, BOB, 9, index=2),  # not the next log index
        move(TRANSFER_SHARES, ERC20, ALICE, BOB, 9, index=1),  # other token
    ],
    ids=["other-tx", "gap", "other-token"],
)
def test_transfer_shares_must_be_the_next_log_of_the_same_tx_and_token(shares_log: RawLog) -> None:
    transfer = move(TRANSFER, XSTOCK, ALICE, BOB, 10, index=0)
    assert_stops([transfer, shares_log, *good_tail(3)], transfer)


@pytest.mark.parametrize("token", [XSTOCK, ERC20])
def test_erc721_style_transfer_stops(token: str) -> None:
    nft = raw_log(token, [TRANSFER.topic, addr_topic(ALICE), addr_topic(BOB), word("uint256", 1234)], "0x", index=0)
    assert_stops([nft, *good_tail(1)], nft)


@pytest.mark.parametrize("data", ["0x", "0x" + "00" * 31, "0x" + "01" * 16])
def test_truncated_erc20_transfer_stops(data: str) -> None:
    bad = raw_log(ERC20, [TRANSFER.topic, addr_topic(ALICE), addr_topic(BOB)], data, index=0)
    assert_stops([bad, *good_tail(1)], bad)


def test_truncated_xstock_transfer_stops() -> None:
    bad = raw_log(XSTOCK, [TRANSFER.topic, addr_topic(ALICE), addr_topic(BOB)], "0x" + "00" * 31, index=0)
    assert_stops([bad, move(TRANSFER_SHARES, XSTOCK, ALICE, BOB, 9, index=1), *good_tail(2)], bad)


def test_truncated_transfer_shares_stops() -> None:
    bad = raw_log(XSTOCK, [TRANSFER_SHARES.topic, addr_topic(ALICE), addr_topic(BOB)], "0x" + "00" * 31, index=1)
    assert_stops([move(TRANSFER, XSTOCK, ALICE, BOB, 10, index=0), bad, *good_tail(2)], bad)


DIRTY = "0x" + "00" * 11 + "01" + "11" * 20  # an address word with a non-zero upper 12 bytes


@pytest.mark.parametrize("position", [1, 2])
def test_dirty_address_topic_in_erc20_transfer_stops(position: int) -> None:
    topics = [TRANSFER.topic, addr_topic(ALICE), addr_topic(BOB)]
    topics[position] = DIRTY
    bad = raw_log(ERC20, topics, word("uint256", 1), index=0)
    assert_stops([bad, *good_tail(1)], bad)


@pytest.mark.parametrize("spec", [TRANSFER, TRANSFER_SHARES], ids=lambda s: s.name)
def test_dirty_address_topic_in_xstock_pair_stops(spec: EventSpec) -> None:
    logs = pair(XSTOCK, ALICE, BOB, 10, 9, index=0)
    i = 0 if spec is TRANSFER else 1
    logs[i] = raw_log(XSTOCK, [spec.topic, DIRTY, addr_topic(BOB)], word("uint256", 9), index=i)
    assert_stops([*logs, *good_tail(2)], logs[i])


ADDRESS_EVENTS = [spec for spec in OTHER_EVENTS if spec.indexed]


@pytest.mark.parametrize("spec", ADDRESS_EVENTS, ids=lambda s: s.name)
def test_dirty_address_topic_in_other_event_stops(spec: EventSpec) -> None:
    topics = [spec.topic] + [DIRTY] * len(spec.indexed)
    bad = raw_log(XSTOCK, topics, "0x", index=0)
    assert_stops([bad, *good_tail(1)], bad)


def test_dirty_address_topic_in_new_token_stops() -> None:
    good = build_event(NEW_TOKEN, {"newToken": ALICE, "name": "n", "symbol": "s"}, FACTORY, index=1)
    bad = RawLog(FACTORY, (NEW_TOKEN.topic, DIRTY), good.data, 100, good.block_hash, 1, TX, 0)
    assert_stops([bad, good], bad, {}, factories=[FACTORY])


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("MultiplierUpdated", "0x" + "00" * 31),  # truncated word
        ("MultiplierScheduled", word("uint256", 1)),  # one word of two
        ("PauseModeChange", word("uint256", 2)),  # a bool that is not 0 or 1
        ("NewTerms", "0x" + "00" * 31 + "20"),  # offset with no length word
    ],
)
def test_malformed_data_of_other_events_stops(name: str, data: str) -> None:
    spec = next(s for s in OTHER_EVENTS if s.name == name)
    bad = raw_log(XSTOCK, [spec.topic], data, index=0)
    assert_stops([bad, *good_tail(1)], bad)


def test_wrong_topic_count_of_other_event_stops() -> None:
    spec = next(s for s in OTHER_EVENTS if s.name == "NewMinter")
    bad = raw_log(XSTOCK, [spec.topic], word("address", ALICE), index=0)
    assert_stops([bad, *good_tail(1)], bad)


# --- addresses, times, kinds ------------------------------------------------------------------


def test_logs_of_unknown_addresses_are_ignored() -> None:
    mu = OTHER_EVENTS[0]
    logs = [*pair(UNKNOWN, ALICE, BOB, 1, 1), build_event(mu, {"value": 5}, UNKNOWN, index=2),
            move(TRANSFER, UNKNOWN, ALICE, BOB, 1, index=3)]
    out = decode.decode(logs, KINDS, factories=[FACTORY])
    assert (out.transfers, out.events, out.new_tokens, out.skipped) == ([], [], [], 0)


def test_logs_with_no_topics_are_ignored() -> None:
    out = decode.decode([raw_log(XSTOCK, [], "0x", index=0), *good_tail(1)], KINDS)
    assert_only_tail(out, 0)


def test_block_times_fill_in_missing_timestamps() -> None:
    mu = OTHER_EVENTS[0]
    logs = [
        *pair(XSTOCK, ALICE, BOB, 10, 9, index=0, block=5, time=None),
        move(TRANSFER, ERC20, ALICE, BOB, 3, index=2, block=6, time=None),
        build_event(mu, {"value": 1}, XSTOCK, index=3, block=6, time=None),
    ]
    out = decode.decode(logs, KINDS, block_times={5: 500, 6: 600})
    assert [t.block_time for t in out.transfers] == [500, 600]
    assert [e.block_time for e in out.events] == [600]
    assert out.skipped == 0


def test_log_timestamp_wins_over_block_times() -> None:
    out = decode.decode(pair(XSTOCK, ALICE, BOB, 10, 9, block=5, time=111), KINDS, block_times={5: 999})
    assert [t.block_time for t in out.transfers] == [111]


def test_missing_timestamp_stops() -> None:
    logs = [move(TRANSFER, ERC20, ALICE, BOB, 3, index=0, block=7, time=None), *good_tail(1)]
    assert "no timestamp" in assert_stops(logs, logs[0], block_times={})


@pytest.mark.parametrize(
    ("frm", "to", "kind"),
    [(ZERO_ADDRESS, ALICE, "mint"), (ALICE, ZERO_ADDRESS, "burn"), (ALICE, BOB, "transfer"),
     (ALICE, ALICE, "transfer")],
)
def test_copy_text_kind(frm: str, to: str, kind: str) -> None:
    [line] = copy_text(1, [Transfer(XSTOCK, 1, 1, TX, 0, frm, to, 5, 5)]).decode().splitlines()
    assert line.split("\t")[-1] == kind


def test_many_random_pairs_round_trip() -> None:
    local = random.Random(99)
    logs: list[RawLog] = []
    expected: list[tuple[str, str, int, int]] = []
    for i in range(200):
        frm, to = local.choice([*RANDOM_ADDRESSES, ZERO_ADDRESS]), local.choice(RANDOM_ADDRESSES)
        amount, shares = local.getrandbits(256), local.getrandbits(256)
        logs += pair(XSTOCK, frm, to, amount, shares, index=2 * i, block=1 + i // 10)
        expected.append((frm, to, amount, shares))
    out = decode.decode(logs, KINDS)
    assert [(t.from_address, t.to_address, t.amount_raw, t.shares) for t in out.transfers] == expected
    assert out.skipped == 0
