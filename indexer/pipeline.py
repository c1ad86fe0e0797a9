"""The loop both commands share: sync.ChainSync steps, run up to a target with prefetch.

Place: ``backfill`` (backfill.py) and ``run`` (daemon.py) only choose a target and what to do
between steps; both call :func:`catch_up`, which owns everything in between: the next ranges are
fetched (sync.ChainSync.fetch) while the current one is applied in order (ChainSync.apply: the
reorg check, decode, fold), and the commit of one range overlaps the decoding of the next
(ChainSync.overlapping). A reorg met on the way is rewound by the step that meets it, and the
ranges fetched after it are dropped. :func:`catch_up_retrying` adds the backfill's step retries.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from .errors import NodeBehind, Retryable
from .retry import StepRetry
from .sync import ChainSync, Fetched, StepResult

__all__ = ["catch_up", "catch_up_retrying"]

OnStep = Callable[[StepResult], None]
FETCHERS = 2  # ranges fetched at once ahead of the one applied
AHEAD = 2  # fetched ranges waiting for the consumer: behind a remote node, a dense range's apply
# (0.4-0.5 s) left every request standing still with one waiting range (measured in the remote benchmark)
RETRY_ATTEMPTS = 8  # a backfill's tries of a failing step (the daemon retries without end)


async def catch_up(sync: ChainSync, target: int, on_step: OnStep, stop: Callable[[], bool] = lambda: False,
                   ahead: int = AHEAD) -> int:
    """Index up to ``target``; returns the number of steps taken (0: nothing to do).

    Prefetching is safe in the reorg-reachable tail too: every range's headers link up, and a
    range whose first parent is not the cursor's block is a reorg, rewound before anything of it
    is stored. For one block (the daemon at the head), or while tokens added to the config late
    catch up, it takes plain steps."""
    steps = 0
    while not stop():
        cursor = sync.cursor = await sync.store.cursor(sync.chain_id)
        base = cursor.block_number if cursor else sync.first_block - 1
        if target - base < 2 or sync.late_tokens(base):
            result = await sync.step(target)
            if result is None:
                return steps
            steps += 1
            on_step(result)
            continue
        steps += await _prefetched(sync, base + 1, target, on_step, stop, ahead)
        if sync.cursor is not None and sync.cursor.block_number >= target and not sync.late_tokens(target):
            # at the target: the last range's end header was just read, so the tip check a step
            # makes when nothing is left would ask it again (a call and a round trip, remote)
            return steps
    return steps


async def catch_up_retrying(sync: ChainSync, target: int, on_step: OnStep) -> None:
    """:func:`catch_up`, tried again after a Retryable a few times with backoff. A node behind
    the database is not waited for: NodeBehind raises at once (exit 4)."""
    retry = StepRetry(sync.cfg.name, attempts=RETRY_ATTEMPTS)
    while True:
        try:
            await catch_up(sync, target, on_step)
            return
        except NodeBehind:
            raise
        except Retryable as exc:
            await asyncio.sleep(retry.failed(exc))  # backoff before the next attempt


async def _prefetched(sync: ChainSync, start: int, end: int, on_step: OnStep, stop: Callable[[], bool],
                      ahead: int) -> int:
    """Apply [start, end] range by range, in order, while a producer fetches the next ones."""
    queue: asyncio.Queue[Fetched | BaseException | None] = asyncio.Queue(maxsize=ahead)
    applied = asyncio.Event()  # set after each range applied (the producer may wait for one)
    producer = asyncio.create_task(_produce(sync, start, end, queue, applied))
    steps = 0
    try:
        async with sync.overlapping():
            while not stop():
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                result = await sync.apply(item)
                applied.set()
                steps += 1
                on_step(result)
                if result.reorg_depth:  # what was fetched after it is of the old branch
                    break
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
    return steps


async def _produce(sync: ChainSync, start: int, end: int, queue: asyncio.Queue[Fetched | BaseException | None],
                   applied: asyncio.Event) -> None:
    """Fetch ranges one after another (each sized from the answers before it, so a range never
    runs blind into dense blocks by more than 2x), FETCHERS at a time, handing them over in
    order. A range cut short (the answer was too large) is planned again from where it ended. A
    range whose factory announced tokens not followed yet is applied before the next ones are
    planned: they are fetched with the new tokens' addresses (else each range fetched ahead
    asks its logs again for them when applied: 12 calls of 209 in the remote benchmark). The
    next range is started before a fetched one waits for the consumer: the remote benchmark's
    requests otherwise stood still for 0.2-0.35 s at a time while a dense range was applied.
    At most FETCHERS + ahead + 1 ranges are held at once."""
    pending: deque[tuple[int, asyncio.Task[Fetched]]] = deque()
    next_start = start

    def top_up() -> None:
        nonlocal next_start
        while len(pending) < FETCHERS and next_start <= end:
            s, e = sync.plan(next_start, end)
            pending.append((e, asyncio.create_task(sync.fetch(s, e))))
            next_start = e + 1

    try:
        while pending or next_start <= end:
            top_up()
            planned_end, task = pending.popleft()
            fetched = await task
            if fetched.end < planned_end:
                for _, later in pending:
                    later.cancel()
                await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
                pending.clear()
                next_start = fetched.end + 1
            announced = any(nt.token not in sync.tokens for nt in fetched.decoded.new_tokens)
            if not announced:  # FETCHERS stay at work while the consumer applies (remote: a round trip each)
                top_up()
            await queue.put(fetched)
            if announced and next_start <= end:
                while sync.cursor is None or sync.cursor.block_number < fetched.end:
                    applied.clear()
                    await applied.wait()
        await queue.put(None)
    except Exception as exc:  # handed to the consumer, which raises it in order
        await queue.put(exc)
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
