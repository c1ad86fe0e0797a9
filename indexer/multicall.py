"""Many contract views at one block in ONE eth_call (a provider's rate limit counts a JSON-RPC
batch of n calls as n; this costs 1).

Place in the pipeline: under follow.py (the xStocks' multiplier states at a range's end and
where a change is bisected) and tokens.py (a token's identity when first seen). The calls go
through contracts/src/ViewReader.sol, never deployed: its runtime code (``CODE``, the
artifact's deployedBytecode) is placed at an unused address by a state override, the eth_call's
third parameter (geth, erigon, reth, anvil and the hosted providers built on them accept it).
The reader also answers the block's timestamp, so a state read needs no header, and, asked
with :func:`hashes_call`, the hashes of up to 256 blocks below the call's (``blockhash``): the
reorg-reachable tail's hashes in the same call, not one header each.

A node that refuses the override (an error other than missing state or a moved chain, or an
answer that is not the reader's) is asked with plain batches of eth_call from then on, one
attempt per client; answers are the same either way (None for a revert or an empty answer).

Failure modes: StateUnavailable (no state at the block: raised, or None for that block when not
``strict``), ChainMoved (a block above the head), RpcUnavailable, as for any eth_call.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence

from . import abi, logconfig
from .chain import Chain
from .errors import ChainMoved, RpcError, StateUnavailable
from .rpc import _result

log = logconfig.get("multicall")

READER = "0x" + "5ead" * 10  # no contract lives there; the override puts the reader's code in it
_READ = "0x84941937"  # read(address[],bytes[]); written out (tests/test_startup.py): no keccak at import
_TIME = "0x16ada547"  # time()
_HASHES = "0xd13372ca"  # hashes(uint256,uint256)
HASH_REACH = 256  # blockhash answers the 256 blocks below the call's, zero for older ones
CHUNK = 400  # views per eth_call: well inside any node's gas cap for a call
CODE = "0x" + (
    "608060405234801561000f575f5ffd5b506004361061003f575f3560e01c806316ada547146100435780638494193714"
    "610056578063d13372ca14610076575b5f5ffd5b6040514281526020015b60405180910390f35b610069610064366004"
    "6102b2565b610096565b60405161004d919061031e565b6100896100843660046103a2565b6101e2565b60405161004d"
    "91906103c2565b60608367ffffffffffffffff8111156100b1576100b1610404565b6040519080825280602002602001"
    "820160405280156100e457816020015b60608152602001906001900390816100cf5790505b5090505f5b848110156101"
    "d9575f5f87878481811061010557610105610418565b905060200201602081019061011a919061042c565b6001600160"
    "a01b031686868581811061013557610135610418565b90506020028101906101479190610459565b6040516101559291"
    "9061049c565b5f60405180830381855afa9150503d805f811461018d576040519150601f19603f3d011682016040523d"
    "82523d5f602084013e610192565b606091505b5091509150816101b05760405180602001604052805f8152506101b256"
    "5b805b8484815181106101c4576101c4610418565b602090810291909101015250506001016100e9565b509493505050"
    "50565b60608167ffffffffffffffff8111156101fd576101fd610404565b604051908082528060200260200182016040"
    "528015610226578160200160208202803683370190505b5090505f5b828110156102635761023d81856104ab565b4082"
    "828151811061025057610250610418565b602090810291909101015260010161022b565b5092915050565b5f5f83601f"
    "84011261027a575f5ffd5b50813567ffffffffffffffff811115610291575f5ffd5b6020830191508360208260051b85"
    "010111156102ab575f5ffd5b9250929050565b5f5f5f5f604085870312156102c5575f5ffd5b843567ffffffffffffff"
    "ff8111156102db575f5ffd5b6102e78782880161026a565b909550935050602085013567ffffffffffffffff81111561"
    "0306575f5ffd5b6103128782880161026a565b95989497509550505050565b5f60208201602083528084518083526040"
    "8501915060408160051b8601019250602086015f5b8281101561039657603f1987860301845281518051808752806020"
    "8301602089015e5f602082890101526020601f19601f8301168801019650505060208201915060208401935060018101"
    "9050610344565b50929695505050505050565b5f5f604083850312156103b3575f5ffd5b505080359260209091013591"
    "50565b602080825282518282018190525f918401906040840190835b818110156103f957835183526020938401939092"
    "01916001016103db565b509095945050505050565b634e487b7160e01b5f52604160045260245ffd5b634e487b7160e0"
    "1b5f52603260045260245ffd5b5f6020828403121561043c575f5ffd5b81356001600160a01b0381168114610452575f"
    "5ffd5b9392505050565b5f5f8335601e1984360301811261046e575f5ffd5b83018035915067ffffffffffffffff8211"
    "15610488575f5ffd5b6020019150368190038213156102ab575f5ffd5b818382375f9101908152919050565b80820180"
    "8211156104ca57634e487b7160e01b5f52601160045260245ffd5b9291505056fea2646970667358221220dbdf327b13"
    "cc5ec3f2516bdf01bc3a3db0c7ea10111310399fda00311085c57664736f6c634300081e0033"
)

_plain: weakref.WeakKeyDictionary[Chain, bool] = weakref.WeakKeyDictionary()  # nodes refusing overrides

Calls = Sequence[tuple[str, str]]  # (contract, calldata)
Answer = bytes | None
Block = int | str  # a number, or a tag ("latest")


async def views_at(chain: Chain, asks: Mapping[Block, Calls], strict: bool = True,
                   ) -> tuple[dict[Block, list[Answer] | None], dict[Block, int]]:
    """The answers to each block's calls (in order; None for a revert or an empty answer), or
    None for a block the node has no state for when not ``strict``; and the timestamps of the
    blocks, when the reader gave them (a node refusing overrides gives none)."""
    if not asks:
        return {}, {}
    if not _plain.get(chain, False):
        try:
            return await _through_reader(chain, asks, strict)
        except _Refused as exc:
            _plain[chain] = True
            log.info("view_reader_refused", reason=str(exc)[:200])
    return await _plain_batches(chain, asks, strict), {}


def plain(chain: Chain) -> bool:
    """Whether the node refused the reader (it is asked with plain batches)."""
    return _plain.get(chain, False)


class _Refused(Exception):
    """The node does not run the reader (no override support)."""


async def _through_reader(chain: Chain, asks: Mapping[Block, Calls], strict: bool,
                          ) -> tuple[dict[Block, list[Answer] | None], dict[Block, int]]:
    items: list[tuple[str, list[object]]] = []
    parts: list[tuple[Block, int, int]] = []  # (block, first call, calls) per item
    for block, calls in asks.items():
        for i in range(0, max(1, len(calls)), CHUNK):
            chunk = [*calls[i:i + CHUNK], (READER, _TIME)]
            data = _READ + abi.encode_reads([t for t, _ in chunk], [bytes.fromhex(d[2:]) for _, d in chunk]).hex()
            tag = hex(block) if isinstance(block, int) else block
            items.append(("eth_call", [{"to": READER, "data": data}, tag, {READER: {"code": CODE}}]))
            parts.append((block, i, len(chunk) - 1))
    raws = await chain.rpc.batch_raw(items)
    answers: dict[Block, list[Answer] | None] = {b: [None] * len(c) for b, c in asks.items()}
    times: dict[Block, int] = {}
    for (block, first, n), raw in zip(parts, raws, strict=True):
        if answers[block] is None:
            continue
        try:
            result = _result(raw, "eth_call")
        except (StateUnavailable, ChainMoved):
            if strict:
                raise
            answers[block] = None
            continue
        except RpcError as exc:
            raise _Refused(str(exc)) from None
        decoded = _decode(result, n + 1)
        out = answers[block]
        assert out is not None
        out[first:first + n] = [a or None for a in decoded[:n]]
        stamp = decoded[n]
        if stamp is None or len(stamp) != 32:
            raise _Refused("the reader's time() did not answer")
        times[block] = int.from_bytes(stamp, "big")
    return answers, times


def _decode(result: object, n: int) -> list[bytes]:
    if not isinstance(result, str) or len(result) < 130:
        raise _Refused(f"not the reader's answer: {str(result)[:40]}")
    try:
        out = abi.decode_bytes_array(bytes.fromhex(result[2:]))
    except ValueError:
        raise _Refused("the answer does not decode as the reader's") from None
    if len(out) != n:
        raise _Refused(f"the reader answered {len(out)} views, {n} asked")
    return list(out)


def hashes_call(first: int, count: int) -> tuple[str, str]:
    """The reader's own view answering the hashes of blocks first .. first + count - 1 (all
    below the call's block and within HASH_REACH of it); :func:`parse_hashes` reads the answer."""
    return READER, _HASHES + first.to_bytes(32, "big").hex() + count.to_bytes(32, "big").hex()


def parse_hashes(answer: Answer, count: int) -> list[str] | None:
    """The hashes a :func:`hashes_call` answered (0x-prefixed, lower case), or None when the
    node did not run the reader or answered a zero hash (a block out of reach)."""
    # bytes32[]: the offset of the array (32), its length, then the hashes
    if answer is None or len(answer) != 64 + 32 * count or int.from_bytes(answer[:32], "big") != 32 \
            or int.from_bytes(answer[32:64], "big") != count:
        return None
    out = [answer[64 + 32 * i:96 + 32 * i] for i in range(count)]
    if any(h == bytes(32) for h in out):
        return None
    return ["0x" + h.hex() for h in out]


async def _plain_batches(chain: Chain, asks: Mapping[Block, Calls], strict: bool,
                         ) -> dict[Block, list[Answer] | None]:
    """The reader's own views (hashes) answer None here: the code is not placed."""
    out: dict[Block, list[Answer] | None] = {}
    for block, calls in asks.items():
        wanted = [i for i, (target, _) in enumerate(calls) if target != READER]
        try:
            got = await chain.call_many([calls[i] for i in wanted], block) if wanted else []
        except StateUnavailable:
            if strict:
                raise
            out[block] = None
            continue
        answers: list[Answer] = [None] * len(calls)
        for i, a in zip(wanted, got, strict=True):
            answers[i] = a
        out[block] = answers
    return out


__all__ = ["CODE", "HASH_REACH", "READER", "hashes_call", "parse_hashes", "plain", "views_at"]
