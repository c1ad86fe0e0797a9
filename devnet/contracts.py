"""Compiled contract artifacts (contracts/artifacts/<Name>.json) and cheap call encoding.

Where artifacts are read from, first match wins:
1. `$XSTOCK_ARTIFACTS` (a directory), when set;
2. `contracts/artifacts/` of the checkout this package sits in (found by walking up from this
   file): the committed build output is the one source; nothing is copied into a package.

Each artifact has the keys contractName, abi, bytecode, deployedBytecode.

Failure modes: `ArtifactError` when no directory holds the artifact, or a file lacks a key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

NAMES = ("XStock", "XStockFactory", "SanctionsList", "PlainToken", "LegacyToken", "MoveBatch",
         "TransparentUpgradeableProxy", "ProxyAdmin")


class ArtifactError(FileNotFoundError):
    """A contract artifact is missing or malformed."""


def _abi_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


@dataclass(frozen=True, eq=False)
class Artifact:
    """One compiled contract. `encode_call` and `deploy_data` avoid web3's slower machinery."""

    name: str
    abi: list[dict[str, Any]] = field(repr=False)
    bytecode: str = field(repr=False)
    deployed_bytecode: str = field(repr=False)
    _calls: dict[str, tuple[bytes, list[str]]] = field(default_factory=dict, repr=False,
                                                       init=False)

    def function(self, fn: str) -> dict[str, Any]:
        """The ABI entry of function `fn` (names are unique in our contracts)."""
        for entry in self.abi:
            if entry.get("type") == "function" and entry.get("name") == fn:
                return entry
        raise ArtifactError(f"{self.name} has no function {fn!r}")

    def input_types(self, fn: str) -> list[str]:
        return self._call_info(fn)[1]

    def selector(self, fn: str) -> bytes:
        return self._call_info(fn)[0]

    def encode_call(self, fn: str, args: Sequence[Any]) -> str:
        """0x calldata for `fn(*args)`; raises eth_abi errors for arguments of the wrong type."""
        selector, types = self._call_info(fn)
        return "0x" + (selector + encode(types, list(args))).hex()

    def _call_info(self, fn: str) -> tuple[bytes, list[str]]:
        info = self._calls.get(fn)
        if info is None:
            types = [_abi_type(p) for p in self.function(fn)["inputs"]]
            info = (keccak(text=f"{fn}({','.join(types)})")[:4], types)
            self._calls[fn] = info
        return info

    def deploy_data(self, args: Sequence[Any] = ()) -> str:
        """Creation bytecode followed by the ABI-encoded constructor arguments."""
        ctor = next((e for e in self.abi if e.get("type") == "constructor"), None)
        types = [_abi_type(p) for p in ctor["inputs"]] if ctor else []
        if len(types) != len(args):
            raise ArtifactError(f"{self.name} constructor takes {len(types)} arguments, "
                                f"got {len(args)}")
        code = self.bytecode.removeprefix("0x")
        return "0x" + code + (encode(types, list(args)).hex() if types else "")

    def event_topic(self, event: str) -> str:
        """topic0 of `event` as lowercase 0x hex."""
        for entry in self.abi:
            if entry.get("type") == "event" and entry.get("name") == event:
                sig = f"{event}({','.join(_abi_type(p) for p in entry['inputs'])})"
                return "0x" + keccak(text=sig).hex()
        raise ArtifactError(f"{self.name} has no event {event!r}")


def artifacts_dir(name: str = "XStock") -> Path:
    """The directory artifacts are read from (see the module docstring for the order)."""
    candidates: list[Path] = []
    if os.environ.get("XSTOCK_ARTIFACTS"):
        candidates.append(Path(os.environ["XSTOCK_ARTIFACTS"]))
    here = Path(__file__).resolve()
    candidates += [p / "contracts" / "artifacts" for p in here.parents]
    for folder in candidates:
        if (folder / f"{name}.json").is_file():
            return folder
    raise ArtifactError(f"artifact {name}.json not found: build it with "
                        "`node contracts/build.js`, or set $XSTOCK_ARTIFACTS")


@cache
def load_artifact(name: str) -> Artifact:
    """Read and cache `<name>.json`; raises `ArtifactError` when missing or malformed."""
    path = artifacts_dir(name) / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
        return Artifact(name=raw["contractName"], abi=raw["abi"], bytecode=raw["bytecode"],
                        deployed_bytecode=raw["deployedBytecode"])
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: malformed artifact ({exc!r})") from exc
