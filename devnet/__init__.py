"""The development network: a local anvil, an embedded PostgreSQL, our contracts deployed on
it, and a seeded trading simulator. Used by `make demo` (`python -m devnet demo`), the
integration tests and the benchmarks, and to deploy and trade on your own anvil
(`python -m devnet deploy|trade`). It lives beside the product, not in it: the wheel and the
image carry `indexer` alone, and nothing in the indexer imports this package.

    with Anvil(no_mining=True) as node:
        world = deploy_world(node.url)
        summary = Simulator(world, seed=1).tour()
"""

from .anvil import Anvil, AnvilError, AnvilNotFound, find_anvil
from .contracts import Artifact, ArtifactError, artifacts_dir, load_artifact
from .deploy import Transactor, Tx, TxFailed, World, deploy_world
from .node import Node, Web3RPCError, rpc
from .postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    embedded_postgres,
    resolve_database_url,
    scratch_dir,
)
from .simulate import BulkStats, SimulationError, Simulator, Summary

__all__ = [
    "Anvil",
    "AnvilError",
    "AnvilNotFound",
    "Artifact",
    "ArtifactError",
    "BulkStats",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "Node",
    "SimulationError",
    "Simulator",
    "Summary",
    "Transactor",
    "Tx",
    "TxFailed",
    "Web3RPCError",
    "World",
    "artifacts_dir",
    "deploy_world",
    "embedded_postgres",
    "find_anvil",
    "load_artifact",
    "resolve_database_url",
    "rpc",
    "scratch_dir",
]
