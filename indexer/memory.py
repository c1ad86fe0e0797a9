"""Process memory set-up for a process that reads large JSON-RPC answers (eth_getLogs in
``backfill`` and ``run``), done by rpc.py at the first answer over ``LARGE_ANSWER`` bytes (not
at start-up: other commands never pay for it): the large blocks one answer used are kept for the
next, instead of being handed back to the kernel and faulted in again.

glibc serves blocks over 128 KiB (an answer's bytes, the chunks it is read in, a batch's COPY
text) with a fresh mmap each, and trims its heap eagerly: every answer's bytes were faulted in
page by page (a fault costs 5-6 us on the benchmark's machine). mallopt raises both thresholds
(glibc only: elsewhere nothing is done), so those blocks come from a heap that stays mapped:
reading answer after answer faults 0.03 fresh pages per log's worth of bytes instead of 0.3.

The small objects of a parse (msgspec structs and their strings) are not helped here. CPython
unmaps a 1 MiB arena once it is empty, but in a backfill the arenas of one range still hold
objects of the next ones (ranges overlap in the pipeline) and are not emptied: a 200k backfill
faulted as many pages with a 64 MB ballast keeping arenas mapped as without it (65k), and making
the ballast cost 0.13 s of CPU, so there is none.

Cost: memory freed after a peak is kept for reuse rather than returned (the peak itself does not
grow).
"""

from __future__ import annotations

LARGE_ANSWER = 1 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_LARGE = 256 << 20  # blocks below this come from the heap, and this much free heap is kept

done = False


def keep_for_reuse() -> bool:
    """Set the process up (the first call does it; later calls return at once); True when
    glibc's thresholds were raised."""
    global done
    if done:
        return False
    done = True
    import ctypes  # here: rpc.py imports this module in every command
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGE)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGE))
