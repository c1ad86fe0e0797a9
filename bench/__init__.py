"""`python -m bench`: how fast the indexer is, measured against what the node and the database
can do, on the same machine, in the same run, on the same data.

`make bench` runs `python -m bench all` (suite.py): this benchmark, then `remote` (remote.py),
`analyst` (analyst_bench.py) and `custody` (custody_bench.py), each as its own process, and one
summary of issue 15's figures (figures.py) with their targets and what bounds each.

One run, one fresh anvil and one fresh PostgreSQL, in this order (harness.py):

1. workload.py  deploy the xStock world and generate N transfers (4 xStocks and a plain ERC-20,
                MoveBatch transactions of many moves, many transactions per block);
2. ceilings.py  the raw eth_getLogs ceiling (every log of the workload, best range and
                concurrency, JSON parsed);
3. runner.py    the real CLI as a measured process (through launch.py, so that its peak RSS
                is its own): `indexer backfill` (wall time, peak RSS, CPU of it, anvil and
                PostgreSQL, in total and over time: cpu.py), then `indexer verify`, which
                must exit 0;
4. ceilings.py  the raw COPY ceiling: the rows the backfill wrote, into an empty transfer_log;
5. live.py      `indexer run` over http polling and over ws newHeads while blocks are mined at
                a steady pace: block mined -> cursor committed, p50/p99/max; verify again;
6. report.py    a table on stdout and bench/results/<date>.json, with ratios to the ceilings.

env.py holds the processes (anvil, PostgreSQL) and the machine description; cli.py the options.
"""
