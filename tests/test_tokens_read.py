"""tokens.read_tokens: the configured (or announced) tokens' identities, kinds at their start
blocks and multipliers before them in ONE round trip, the same as reading them one by one.
Real anvil and our contracts."""

from __future__ import annotations

from devnet.deploy import World
from devnet.simulate import Simulator
from indexer import contract_views as views
from indexer.chain import Chain, Rpc
from indexer.models import ONE, TokenKind
from indexer.tokens import Wanted, read_token, read_tokens
from tests.rpcproxy import RpcProxy


async def test_every_xstock_in_one_round_trip(world: World) -> None:
    Simulator(world, seed=5, n_holders=5).run(blocks=3, moves_per_block=3)
    with RpcProxy(world.rpc_url) as proxy:
        chain = Chain(Rpc([proxy.url]))
        try:
            start = await chain.head()
            xstocks = [a for s, a in world.tokens.items() if s != "USDT0"]
            wanted = [Wanted(a, start) for a in xstocks]
            before = proxy.stats["requests"]
            read = await read_tokens(chain, world.chain_id, wanted, "latest", "config", before=True)
            assert proxy.stats["requests"] - before == 1  # one HTTP request for all of them
            for w, (info, m) in zip(wanted, read, strict=True):
                assert info is not None and info.kind is TokenKind.XSTOCK
                assert info == await read_token(chain, world.chain_id, w.address, "latest", start, "config")
                assert m == views.as_multiplier(await chain.call(w.address, views.GET_CURRENT_MULTIPLIER, start - 1))
            everything = [Wanted(a, start) for a in world.all_tokens.values()]
            mixed = await read_tokens(chain, world.chain_id, everything, "latest", "config", before=True)
            for w, (info, m) in zip(everything, mixed, strict=True):
                assert info == await read_token(chain, world.chain_id, w.address, "latest", start, "config")
                if info is not None and info.kind is TokenKind.ERC20:
                    assert m == ONE
            # configured from a block before their code: the kind where the code appeared
            early = [Wanted(a, 1) for a in world.all_tokens.values()]
            for w, (info, _) in zip(early, await read_tokens(chain, world.chain_id, early, "latest", "config"),
                                    strict=True):
                assert info is not None
                assert info.kind is (TokenKind.XSTOCK if w.address in xstocks else TokenKind.ERC20), w
            nothing = await read_tokens(chain, world.chain_id, [Wanted("0x" + "00" * 18 + "dead", start)], "latest",
                                        "config")
            assert nothing == [(None, ONE)]  # no code there
        finally:
            await chain.rpc.close()


async def test_upgrades_asked_in_one_round_trip(world: World) -> None:
    """upgrades.kind_changes asks the kind after every Upgraded log of a range at once (one
    eth_call per block): the factory's proxies each log Upgraded when deployed, and one round
    trip each held the pipeline. The answers are those of asking each upgrade alone."""
    from indexer import decode
    from indexer.batch_sql import TokenState
    from indexer.models import TokenInfo
    from indexer.upgrades import UPGRADED_TOPIC, kind_changes

    with RpcProxy(world.rpc_url) as proxy:
        chain = Chain(Rpc([proxy.url]))
        try:
            head = await chain.head()
            addresses = list(world.all_tokens.values())
            raws = await chain.get_logs(addresses, decode.TOKEN_TOPICS + decode.FACTORY_TOPICS, 0, head)
            upgraded = [r for r in raws if r["topics"][0] == UPGRADED_TOPIC]
            assert len({(r["address"], r["blockNumber"]) for r in upgraded}) >= 3, "the world's proxies log Upgraded"
            # followed as plain tokens: every xStock's upgrade is then a change of kind
            active = {a.lower(): TokenState(TokenInfo(world.chain_id, a.lower(), "T", "T", "T", 18, TokenKind.ERC20,
                                                      0, "config"), 0, ONE) for a in addresses}
            before = proxy.stats["requests"]
            changes = await kind_changes(chain, raws, active)
            assert proxy.stats["requests"] - before == 1, "every upgrade of the range in one HTTP request"
            alone: list[tuple[str, int]] = []  # asked one by one, in chain order, as before
            for r in upgraded:
                token, block = r["address"].lower(), int(r["blockNumber"], 16)
                answer = await chain.call(token, views.GET_CURRENT_MULTIPLIER, block)
                if views.as_multiplier(answer) is not None and token not in {t for t, _ in alone}:
                    alone.append((token, block))
            assert [(c.token, c.block_number) for c in changes] == alone
            assert changes and all(c.after is TokenKind.XSTOCK for c in changes)
        finally:
            await chain.rpc.close()
