"""custody.parse: every format, and every malformed class rejected whole with its place named."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from indexer.custody.parse import ATTESTOR_FEED, ISSUER_API, Context, parse
from indexer.errors import InputError

KNOWN = {"TSLA": "TSLA", "TSLAX": "TSLA", "AAPL": "AAPL", "AAPLX": "AAPL"}
CTX = Context("custody.csv", KNOWN)
HEADER = "underlying,custodian,account,settled_shares,in_transit_shares,as_of,attestor,ripcord"
GOOD = "TSLA,Clearstream,acc-1,1000.5,12,2026-02-01T00:00:00Z,The Network Firm,false"


def csv(*rows: str, header: str = HEADER) -> bytes:
    return "\n".join([header, *rows]).encode()


def fails(data: bytes, ctx: Context = CTX, fmt: str | None = None) -> str:
    with pytest.raises(InputError) as info:
        parse(data, ctx, fmt)
    return str(info.value)


# -- the formats ------------------------------------------------------------------------------


def test_csv_record_is_exact() -> None:
    payload = parse(csv(GOOD, "AAPLx,IBKR,acc-2,0.000000000000000001,0,2026-02-01T01:00:00+01:00,TNF,TRUE"), CTX)
    assert payload.format == "csv"
    first, second = payload.records
    assert first.underlying == "TSLA" and first.custodian == "Clearstream" and first.account == "acc-1"
    assert first.settled_shares == Decimal("1000.5") and first.in_transit_shares == 12
    assert first.custody_shares == Decimal("1012.5")
    assert first.as_of == datetime(2026, 2, 1, tzinfo=UTC)
    assert first.attestor == "The Network Firm" and first.ripcord is False
    assert second.underlying == "AAPL"  # a token symbol names its underlying
    assert second.settled_shares == Decimal("1E-18")
    assert second.as_of == datetime(2026, 2, 1, tzinfo=UTC)  # 01:00+01:00 is midnight UTC
    assert second.ripcord is True
    assert payload.sha256 == hashlib.sha256(csv(GOOD, "AAPLx,IBKR,acc-2,0.000000000000000001,0,"
                                                     "2026-02-01T01:00:00+01:00,TNF,TRUE")).hexdigest()


def test_csv_tolerates_bom_crlf_blank_lines_extra_columns_and_reordering() -> None:
    text = ("\ufeffas_of,underlying,custodian,account,settled_shares,in_transit_shares,attestor,ripcord,"
            "note,ripcord_details\r\n\r\n2026-02-01T00:00:00Z,TSLA,C,a,5,0,T,true,hello,broker offline\r\n")
    (record,) = parse(text.encode(), CTX).records
    assert record.settled_shares == 5 and record.ripcord and record.ripcord_details == "broker offline"


def test_json_array_numbers_are_read_exactly() -> None:
    rows = [{"underlying": "TSLA", "custodian": "C", "account": "a", "settled_shares": 0.1,
             "in_transit_shares": "0.2", "as_of": "2026-02-01T00:00:00Z", "attestor": "T", "ripcord": False}]
    (record,) = parse(json.dumps(rows).encode(), Context("c.json", KNOWN)).records
    assert record.settled_shares == Decimal("0.1") and record.custody_shares == Decimal("0.3")


def test_attestor_feed_maps_accounts_and_takes_unix_time() -> None:
    feed = {"timestamp": 1769904000, "ripcord": True, "ripcordDetails": ["custodian API down"],
            "accounts": [{"accountName": "BF-TSLA", "totalReserve": "1000", "totalToken": "990"},
                         {"accountName": "BF-OTHER", "totalReserve": 7, "totalToken": 7}]}
    ctx = Context("feed.json", KNOWN, accounts={"BF-TSLA": "TSLA"}, underlying="AAPL")
    payload = parse(json.dumps(feed).encode(), ctx)
    assert payload.format == "attestor"
    tsla, other = payload.records
    assert (tsla.underlying, tsla.custodian, tsla.account, tsla.settled_shares) == ("TSLA", "BF-TSLA", "BF-TSLA", 1000)
    assert other.underlying == "AAPL"  # not in [custody.accounts]: --underlying
    assert tsla.as_of == datetime(2026, 2, 1, tzinfo=UTC) and tsla.attestor == ATTESTOR_FEED
    assert tsla.ripcord and tsla.ripcord_details == '["custodian API down"]'
    millis = {**feed, "timestamp": 1769904000123}
    assert parse(json.dumps(millis).encode(), ctx).records[0].as_of == datetime(2026, 2, 1, 0, 0, 0, 123000, UTC)


def test_issuer_answer_one_record_per_holding() -> None:
    answer = {"symbol": "TSLAx", "timestamp": "2026-02-01T00:00:00Z", "sharesHeld": "30", "circulatingSupply": 29,
              "holdings": [{"provider": "Clearstream", "quantity": "20", "symbol": "TSLA"},
                           {"provider": "IBKR", "quantity": 10}]}
    payload = parse(json.dumps(answer).encode(), Context("api", KNOWN))
    assert payload.format == "issuer"
    assert [(r.underlying, r.custodian, r.account, r.settled_shares, r.attestor) for r in payload.records] == [
        ("TSLA", "Clearstream", "TSLAx", 20, ISSUER_API), ("TSLA", "IBKR", "TSLAx", 10, ISSUER_API)]
    listed = parse(json.dumps([answer, {**answer, "symbol": "AAPLx"}]).encode(), Context("api", KNOWN))
    assert listed.format == "issuer" and {r.underlying for r in listed.records} == {"TSLA", "AAPL"}
    unchecked = parse(json.dumps(answer).encode(), Context("api"))  # nothing indexed yet
    assert unchecked.records[0].underlying == "TSLA"


FEED = {"timestamp": "2026-02-01T00:00:00Z", "ripcord": False,
        "accounts": [{"accountName": "BF-TSLA", "totalReserve": "1", "totalToken": "1"}]}
ANSWER = {"symbol": "TSLAx", "timestamp": "2026-02-01T00:00:00Z", "holdings": [{"provider": "C", "quantity": "1"}]}


@pytest.mark.parametrize(("text", "fmt"), [
    (HEADER + "\n" + GOOD, "csv"),
    (json.dumps([{"underlying": "TSLA", "custodian": "C", "account": "a", "settled_shares": "1",
                  "in_transit_shares": "0", "as_of": "2026-02-01T00:00:00Z", "attestor": "T", "ripcord": False}]),
     "json"),
    (json.dumps(FEED), "attestor"),
    (json.dumps(ANSWER), "issuer"),
    ("  \n" + json.dumps([ANSWER]), "issuer"),
])
def test_format_is_guessed_from_the_content(text: str, fmt: str) -> None:
    assert parse(text.encode(), Context("f", KNOWN, underlying="TSLA")).format == fmt


def test_explicit_format_wins() -> None:
    assert "header lacks" in fails(b'[{"a": 1}]', fmt="csv")


# -- malformed input: rejected whole, the place and the field named ---------------------------


def test_bad_number_on_line_14_is_named() -> None:
    rows = [GOOD.replace("acc-1", f"acc-{i}") for i in range(12)] + [GOOD.replace("1000.5", '"12,5"')]
    message = fails(csv(*rows))
    assert message == 'custody.csv line 14: settled_shares "12,5" is not a number'


@pytest.mark.parametrize(("row", "expected"), [
    (GOOD.replace("1000.5", "abc"), 'line 2: settled_shares "abc" is not a number'),
    (GOOD.replace("1000.5", "NaN"), 'line 2: settled_shares "NaN" is not a number'),
    (GOOD.replace("1000.5", "1e3"), 'line 2: settled_shares "1e3" is not a number'),
    (GOOD.replace(",12,", ",-3,"), 'line 2: in_transit_shares "-3" is negative'),
    (GOOD.replace("1000.5", "1" + "0" * 45), "line 2: settled_shares \"1000000000000000000000000000000000000..."),
    (GOOD.replace("TSLA,", "TSLQ,"), 'line 2: underlying "TSLQ" is not a known underlying (known: AAPL, TSLA)'),
    (GOOD.replace("Clearstream", ""), "line 2: custodian is missing"),
    (GOOD.replace(",12,", ",,"), "line 2: in_transit_shares is missing"),
    (GOOD.replace("00:00Z", "00:00"), 'line 2: as_of "2026-02-01T00:00:00" has no time zone'),
    (GOOD.replace("2026-02", "2026-13"), 'line 2: as_of "2026-13-01T00:00:00Z" is not an ISO 8601 time'),
    (GOOD.replace("2026-02-01T00:00:00Z", "yesterday"), "line 2: as_of \"yesterday\" is not an ISO 8601 time"),
    (GOOD.replace("false", "maybe"), 'line 2: ripcord "maybe" is not true or false'),
    (GOOD + ",extra", "line 2: 9 fields, the header has 8"),
    (GOOD.rsplit(",", 1)[0], "line 2: 7 fields, the header has 8"),
])
def test_csv_malformed_classes(row: str, expected: str) -> None:
    message = fails(csv(GOOD.replace("acc-1", "acc-0"), row))
    assert expected.replace("line 2", "line 3") in message


def test_csv_header_and_file_level_faults() -> None:
    assert fails(csv(GOOD, header=HEADER.replace(",in_transit_shares", ""))) == (
        f"custody.csv line 1: the header lacks in_transit_shares (expected {HEADER})")
    assert fails(b"") == "custody.csv: empty file"
    assert fails(b"\xff\xfe\x00") == "custody.csv: not UTF-8 text (byte 0)"
    assert fails(csv()) == "custody.csv: no custody records"
    assert fails(csv(GOOD, '"unterminated', header=HEADER)).startswith("custody.csv line ")


def test_two_records_for_one_account_and_time_are_rejected() -> None:
    assert fails(csv(GOOD, GOOD.replace("1000.5", "3"))) == (
        "custody.csv line 3: a second record for TSLA Clearstream/acc-1 at 2026-02-01T00:00:00+00:00 (first at line 2)")


def json_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {"underlying": "TSLA", "custodian": "C", "account": "a", "settled_shares": "1",
                              "in_transit_shares": "0", "as_of": "2026-02-01T00:00:00Z", "attestor": "T",
                              "ripcord": False}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


@pytest.mark.parametrize(("bad", "expected"), [
    ({"as_of": "2026-02-30T00:00:00Z"}, 'custody.json $[3].as_of: "2026-02-30T00:00:00Z" is not an ISO 8601 time'),
    ({"as_of": 1769904000}, "custody.json $[3].as_of: \"1769904000\" is not an ISO 8601 time"),
    ({"settled_shares": True}, 'custody.json $[3].settled_shares: "true" is not a number'),
    ({"settled_shares": "-1"}, 'custody.json $[3].settled_shares: "-1" is negative'),
    ({"settled_shares": None}, "custody.json $[3].settled_shares: is missing"),
    ({"underlying": "MSFT"}, 'custody.json $[3].underlying: "MSFT" is not a known underlying'),
    ({"ripcord": "yes"}, 'custody.json $[3].ripcord: "yes" is not true or false'),
    ({"custodian": ["C"]}, 'custody.json $[3].custodian: "["C"]" is not text'),
])
def test_json_malformed_classes(bad: dict[str, object], expected: str) -> None:
    rows = [json_row(account=f"a{i}") for i in range(3)] + [json_row(**bad)]
    assert fails(json.dumps(rows).encode(), Context("custody.json", KNOWN)).startswith(expected)


def test_json_file_level_faults() -> None:
    ctx = Context("custody.json", KNOWN)
    assert fails(b'[{"underlying": "TSLA",\n  "x": }]', ctx) == (
        "custody.json line 2 column 8: not valid JSON: Expecting value")
    assert fails(b'{"rows": []}', ctx).startswith("custody.json: a JSON object is neither")
    assert fails(b'{"rows": []}', ctx, fmt="json") == "custody.json $: expected an array of custody records"
    assert fails(b"[1]", ctx) == "custody.json $[0]: expected an object"
    assert fails(b'[{"settled_shares": NaN}]', ctx, fmt="json") == "custody.json $[0].underlying: is missing"
    nan = json.dumps([json_row()]).replace('"1"', "NaN").encode()
    assert fails(nan, ctx) == 'custody.json $[0].settled_shares: "NaN" is not a number'


def test_attestor_faults_name_the_path() -> None:
    ctx = Context("feed.json", KNOWN)
    feed = {"timestamp": "2026-02-01T00:00:00Z", "ripcord": False,
            "accounts": [{"accountName": "BF-TSLA", "totalReserve": "1", "totalToken": "1"}]}
    assert fails(json.dumps(feed).encode(), ctx) == (
        'feed.json $.accounts[0].accountName: "BF-TSLA" is not in [custody.accounts] and no --underlying was given')
    mapped = Context("feed.json", KNOWN, accounts={"BF-TSLA": "TSLA"})
    bad_total = {**feed, "accounts": [{"accountName": "BF-TSLA", "totalReserve": "1", "totalToken": "x"}]}
    assert fails(json.dumps(bad_total).encode(), mapped) == 'feed.json $.accounts[0].totalToken: "x" is not a number'
    assert fails(json.dumps({**feed, "accounts": []}).encode(), mapped) == (
        "feed.json $.accounts: must be a non-empty array")
    assert fails(json.dumps({**feed, "timestamp": None}).encode(), mapped) == "feed.json $.timestamp: is missing"
    unknown = Context("feed.json", KNOWN, accounts={"BF-TSLA": "GME"})
    assert "accountName: \"GME\" is not a known underlying" in fails(json.dumps(feed).encode(), unknown)


def test_issuer_faults_name_the_path() -> None:
    ctx = Context("api", KNOWN)
    answer = {"symbol": "TSLAx", "timestamp": "2026-02-01T00:00:00Z",
              "holdings": [{"provider": "C", "quantity": "1"}, {"provider": "D", "quantity": "-1"}]}
    assert fails(json.dumps(answer).encode(), ctx) == 'api $.holdings[1].quantity: "-1" is negative'
    assert fails(json.dumps([answer]).encode(), ctx) == 'api $[0].holdings[1].quantity: "-1" is negative'
    assert fails(json.dumps({**answer, "holdings": []}).encode(), ctx) == "api $.holdings: must be a non-empty array"
    lots = json.dumps({**answer, "sharesHeld": "lots"}).encode()
    assert fails(lots, ctx) == 'api $.sharesHeld: "lots" is not a number'
    assert fails(json.dumps({**answer, "symbol": "GMEx"}).encode(), ctx).startswith(
        'api $.symbol: "GMEx" is not a known underlying')


def test_unknown_format_is_refused() -> None:
    assert fails(csv(GOOD), fmt="xml") == "custody.csv: unknown format 'xml' (one of csv, json, attestor, issuer)"
