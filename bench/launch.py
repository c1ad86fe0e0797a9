"""Run one command and report its own resource usage: `python -m bench.launch REPORT -- CMD...`.

Why a launcher: Linux carries a process's peak RSS (ru_maxrss) across exec from the address
space it had before, so a command started straight from the harness, which has held hundreds of
MB of parsed logs, would report the harness's peak as its own. This launcher is small; the
command it starts inherits only the launcher's high-water mark (about 12 MB), below any real
peak, so wait4's ru_maxrss is the command's own.

It forwards SIGTERM and SIGINT to the command, waits for it, writes its rusage as JSON to REPORT
(returncode, seconds, user_s, system_s, maxrss_kb, pid) and exits with the command's exit code.
Kept free of heavy imports: its start-up is not what is measured, but it is on the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bench.launch REPORT -- CMD...", file=sys.stderr)
        return 2
    report, command = Path(argv[0]), list(argv[2:])
    started = time.perf_counter()
    child = subprocess.Popen(command)

    def forward(sig: int, frame: FrameType | None) -> None:
        child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # wait4 rather than Popen.wait: the rusage of this one child (retried when a forwarded
    # signal interrupts it, as Python does on EINTR).
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = code = os.waitstatus_to_exitcode(status)
    report.write_text(json.dumps({"returncode": code, "seconds": seconds, "user_s": usage.ru_utime,
                                  "system_s": usage.ru_stime, "maxrss_kb": usage.ru_maxrss, "pid": child.pid}))
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
