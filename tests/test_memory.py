"""memory.py: after the set-up, reading one large eth_getLogs answer after another (its bytes
joined from the chunks it arrives in, as rpc.py reads them) faults (almost) no fresh pages in;
rpc.py does the set-up at the first large answer, not before.

Page faults (ru_minflt) are counted, not time: the count does not depend on the machine's load.
"""

from __future__ import annotations

import subprocess
import sys

from aiohttp import web

from indexer import memory
from indexer.rpc import Rpc

READ = """
import gc, resource, sys, orjson
from indexer import memory
gc.freeze()
if sys.argv[1] == "yes":
    assert memory.keep_for_reuse()
word = "0x" + "00" * 12 + "11" * 20
log = {"address": "0x" + "a1" * 20, "topics": ["0x" + "dd" * 32, word, word], "data": "0x" + "00" * 32,
       "blockHash": "0x" + "bb" * 32, "blockNumber": "0x10", "blockTimestamp": "0x5",
       "transactionHash": "0x" + "cc" * 32, "transactionIndex": "0x0", "logIndex": "0x1", "removed": False}
body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": [dict(log) for _ in range(20_000)]})

def read():
    chunks = [body[i:i + 262144] for i in range(0, len(body), 262144)]
    return b"".join(chunks)

held = read()  # one answer is held while the next is read (the pipeline's prefetch)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    answer = read()
    del answer
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5 / 20_000)
"""


def faults_per_log(set_up: bool) -> float:
    done = subprocess.run([sys.executable, "-c", READ, "yes" if set_up else "no"], capture_output=True, text=True,
                          timeout=120, check=True)
    return float(done.stdout.strip())


def test_reading_answer_after_answer_reuses_memory() -> None:
    without, with_set_up = faults_per_log(False), faults_per_log(True)
    assert without > 0.15  # each answer's bytes land in freshly mapped pages
    assert with_set_up < without / 5


async def test_rpc_sets_memory_up_at_the_first_large_answer() -> None:
    sizes = iter([100, memory.LARGE_ANSWER + 100])

    async def handler(request: web.Request) -> web.Response:
        payload = await request.json()
        padding = "0" * next(sizes)
        return web.json_response({"jsonrpc": "2.0", "id": payload["id"], "result": padding})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    was, memory.done = memory.done, False
    try:
        async with Rpc([f"http://127.0.0.1:{port}/"], attempts=1) as rpc:
            await rpc.request("eth_small", [])
            assert memory.done is False
            await rpc.request("eth_large", [])
            assert memory.done is True
    finally:
        memory.done = was or memory.done
        await runner.cleanup()
