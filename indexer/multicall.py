"""Many contract views at one block in ONE eth_call (a provider's rate limit counts a JSON-RPC
batch of n calls as n; this costs 1).

Place in the pipeline: under follow.py (the xStocks' multiplier states at a range's end and
where a change is bisected) and tokens.py (a token's identity when first seen). The calls go
through contracts/src/ViewReader.sol, never deployed: its runtime code (``CODE``, the
artifact's deployedBytecode) is placed at an unused address by a state override, the eth_call's
third parameter (geth, erigon, reth, anvil and the hosted providers built on them accept it).
The reader also answers the block's timestamp, so a state read needs no header.

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
CHUNK = 400  # views per eth_call: well inside any node's gas cap for a call
CODE = "0x" + (
    "608060405234801561000f575f5ffd5b5060043610610034575f3560e01c806316ada547146100385780638494193714"
    "61004b575b5f5ffd5b6040514281526020015b60405180910390f35b61005e6100593660046101ff565b61006b565b60"
    "4051610042919061026b565b60608367ffffffffffffffff811115610086576100866102ef565b604051908082528060"
    "2002602001820160405280156100b957816020015b60608152602001906001900390816100a45790505b5090505f5b84"
    "8110156101ae575f5f8787848181106100da576100da610303565b90506020020160208101906100ef9190610317565b"
    "6001600160a01b031686868581811061010a5761010a610303565b905060200281019061011c9190610344565b604051"
    "61012a929190610387565b5f60405180830381855afa9150503d805f8114610162576040519150601f19603f3d011682"
    "016040523d82523d5f602084013e610167565b606091505b5091509150816101855760405180602001604052805f8152"
    "50610187565b805b84848151811061019957610199610303565b602090810291909101015250506001016100be565b50"
    "949350505050565b5f5f83601f8401126101c7575f5ffd5b50813567ffffffffffffffff8111156101de575f5ffd5b60"
    "20830191508360208260051b85010111156101f8575f5ffd5b9250929050565b5f5f5f5f60408587031215610212575f"
    "5ffd5b843567ffffffffffffffff811115610228575f5ffd5b610234878288016101b7565b9095509350506020850135"
    "67ffffffffffffffff811115610253575f5ffd5b61025f878288016101b7565b95989497509550505050565b5f602082"
    "016020835280845180835260408501915060408160051b8601019250602086015f5b828110156102e357603f19878603"
    "018452815180518087528060208301602089015e5f602082890101526020601f19601f83011688010196505050602082"
    "019150602084019350600181019050610291565b50929695505050505050565b634e487b7160e01b5f52604160045260"
    "245ffd5b634e487b7160e01b5f52603260045260245ffd5b5f60208284031215610327575f5ffd5b81356001600160a0"
    "1b038116811461033d575f5ffd5b9392505050565b5f5f8335601e19843603018112610359575f5ffd5b830180359150"
    "67ffffffffffffffff821115610373575f5ffd5b6020019150368190038213156101f8575f5ffd5b818382375f910190"
    "815291905056fea26469706673582212204e30358e10147c460527f104038746869c9d3f117bb1a7fb6ecb6d83113c8b"
    "5864736f6c634300081e0033"
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


async def _plain_batches(chain: Chain, asks: Mapping[Block, Calls], strict: bool,
                         ) -> dict[Block, list[Answer] | None]:
    out: dict[Block, list[Answer] | None] = {}
    for block, calls in asks.items():
        try:
            out[block] = await chain.call_many(list(calls), block)
        except StateUnavailable:
            if strict:
                raise
            out[block] = None
    return out


__all__ = ["CODE", "READER", "views_at"]
