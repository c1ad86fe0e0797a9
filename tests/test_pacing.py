"""pacing.Pacer: the window of requests in flight grows on clean answers, halves once per
window on refusals and timeouts, pauses after a refusal; pure asyncio, no node."""

from __future__ import annotations

import asyncio

import pytest

from indexer.pacing import Pacer, retry_after


async def test_clean_answers_grow_the_window_by_about_one_per_window() -> None:
    pacer = Pacer(window=4.0, step=1.0)
    for _ in range(4):
        await pacer.release(await pacer.acquire(1), "clean")
    assert 4.9 < pacer.window < 5.0
    slow = Pacer(window=4.0)  # the default step: a quarter of that
    for _ in range(4):
        await slow.release(await slow.acquire(1), "clean")
    assert 4.2 < slow.window < 4.3
    assert pacer.inflight == 0


async def test_a_refusal_halves_once_per_window_and_pauses() -> None:
    pacer = Pacer(window=8.0, pause=0.05)
    tickets = [await pacer.acquire(1) for _ in range(4)]  # sent before any news
    for t in tickets:
        await pacer.release(t, "throttled")
    assert pacer.window == 4.0  # four refusals of one window: one cut
    assert pacer.throttled == 4
    loop = asyncio.get_running_loop()
    assert pacer.resume_at > loop.time()
    before = loop.time()
    ticket = await pacer.acquire(1)
    assert loop.time() >= pacer.resume_at - 1e-3 and loop.time() > before
    await pacer.release(ticket, "throttled")  # sent after the cut: news about the new window
    assert pacer.window == 2.0


async def test_the_pause_doubles_while_refusals_go_on_and_resets_on_a_clean_answer() -> None:
    pacer = Pacer(window=64.0, pause=0.01, max_pause=0.04)
    pauses = []
    for _ in range(4):
        await pacer.release(await pacer.acquire(1), "throttled")
        pauses.append(pacer.pause)
    assert pauses == [0.02, 0.04, 0.04, 0.04]
    await pacer.release(await pacer.acquire(1), "clean")
    assert pacer.pause == 0.01


async def test_retry_after_sets_the_pause_and_timeouts_cut_without_pausing() -> None:
    pacer = Pacer(window=8.0, pause=5.0)
    await pacer.release(await pacer.acquire(1), "throttled", retry_after=0.02)
    loop = asyncio.get_running_loop()
    assert pacer.resume_at - loop.time() <= 0.02
    await pacer.release(await pacer.acquire(1), "timeout")
    assert pacer.window == 2.0
    assert pacer.resume_at <= loop.time()


async def test_the_floor_holds_and_a_request_over_the_window_goes_alone() -> None:
    pacer = Pacer(window=2.0, floor=1.0, pause=0.0)  # floor 1: no spacing below (see the next test)
    for _ in range(5):
        await pacer.release(await pacer.acquire(1), "throttled")
    assert pacer.window == 1.0
    big = await pacer.acquire(50)  # nothing else in flight: it goes
    waiting = asyncio.create_task(pacer.acquire(1))
    await asyncio.sleep(0)
    assert not waiting.done()  # the window is full until the big one comes back
    await pacer.release(big, "clean")
    small = await asyncio.wait_for(waiting, 1.0)
    assert pacer.inflight == 1
    await pacer.release(small, "clean")


async def test_below_one_request_the_window_spaces_requests_once_the_node_refused() -> None:
    pacer = Pacer(window=0.5, pause=0.0, step=1.0)
    loop = asyncio.get_running_loop()
    ticket = await pacer.acquire(1)
    await pacer.release(ticket, "clean")
    assert pacer.resume_at <= loop.time()  # never refused: a local node is not spaced
    await pacer.release(await pacer.acquire(1), "throttled")
    assert pacer.window == 0.5  # 0.5, grown to 1 by the clean answer, halved
    ticket = await pacer.acquire(1)
    await asyncio.sleep(0.02)  # the request's round trip
    await pacer.release(ticket, "clean")
    assert pacer.resume_at - loop.time() > 0.015  # about one round trip: a window of half a request
    assert pacer.window == 1.0  # growing by at most its own size


async def test_requests_wait_for_room_in_the_window() -> None:
    pacer = Pacer(window=2.0)
    a, b = await pacer.acquire(1), await pacer.acquire(1)
    third = asyncio.create_task(pacer.acquire(1))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not third.done()
    await pacer.release(a, "clean")
    await asyncio.wait_for(third, 1.0)
    await pacer.release(b, "other")
    assert pacer.inflight == 1


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), ("0.5", 0.5), (None, None),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", None)])
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds
