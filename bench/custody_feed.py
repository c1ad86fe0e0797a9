"""A synthetic custody history as the issuer's desk would export it: `records` CSV rows over
`underlyings` x `accounts` accounts, one record per account every `step` seconds, ending one
hour before `end`. Shares are exact decimals large enough to back any synthetic supply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from indexer.custody.parse import COLUMNS

UNDERLYINGS = ("TSLA", "NVDA", "AAPL", "SPY", "META")
ACCOUNTS = 10
STEP_SECONDS = 900


def write_feed(path: Path, records: int, end: datetime | None = None, underlyings: tuple[str, ...] = UNDERLYINGS,
               accounts: int = ACCOUNTS, step: int = STEP_SECONDS) -> Path:
    """Write the CSV; returns ``path``. Rows are in time order, every account at every time."""
    per_time = len(underlyings) * accounts
    times = -(-records // per_time)
    last = (end or datetime.now(UTC)).replace(microsecond=0) - timedelta(hours=1)
    first = last - timedelta(seconds=step * (times - 1))
    written = 0
    with path.open("w", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for k in range(times):
            at = (first + timedelta(seconds=step * k)).isoformat().replace("+00:00", "Z")
            lines = []
            for u in underlyings:
                for a in range(accounts):
                    if written == records:
                        break
                    settled = 100_000_000 + (k * 7 + a) % 1000
                    lines.append(f"{u},Clearstream Banking S.A. desk {a % 3},bench-account-{a:04d},"
                                 f"{settled}.{k % 997:03d},{k % 50},{at},The Network Firm LLP proof of reserve,false\n")
                    written += 1
            out.write("".join(lines))
    return path
