"""The one reader of the replay CSV (``../shared/CONTRACT.md``, "Replay data format").

Header ``time,venue,symbol,funding_rate,mark_price``; ``time`` ISO-8601 UTC; ``symbol`` ccxt
unified; ``funding_rate`` the rate settled at ``time``; ``mark_price`` may be empty (the last
known price carries forward). The simulator, the scanner's replay profile and ``report`` all
read replay files through :func:`read_rows`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

COLUMNS = ("time", "venue", "symbol", "funding_rate", "mark_price")


class ReplayDataError(ValueError):
    """A replay file that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True)
class ReplayRow:
    t_ms: int
    venue: str
    symbol: str
    rate: Decimal
    price: Decimal | None


def parse_time_ms(s: str) -> int:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def read_rows(path: str | Path) -> Iterator[ReplayRow]:
    """Every row of a replay file, in file order, as typed values (prices not yet carried)."""
    p = Path(path)
    try:
        f = open(p, newline="")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise ReplayDataError(f"{p}: file not found") from None
    with f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "venue" not in reader.fieldnames:
            raise ReplayDataError(f"{p}: not a replay file (header must be {','.join(COLUMNS)})")
        for lineno, row in enumerate(reader, start=2):
            try:
                mp = (row.get("mark_price") or "").strip()
                yield ReplayRow(
                    parse_time_ms(row["time"]),
                    (row.get("venue") or "").strip(),
                    (row.get("symbol") or "").strip(),
                    Decimal((row.get("funding_rate") or "").strip()),
                    Decimal(mp) if mp else None,
                )
            except (ValueError, InvalidOperation, KeyError, TypeError) as exc:
                raise ReplayDataError(f"{p}:{lineno}: bad row ({exc!r}); expected {','.join(COLUMNS)}") from None


def venue_names(path: str | Path) -> list[str]:
    """Venue names in order of first appearance."""
    names: list[str] = []
    for r in read_rows(path):
        if r.venue and r.venue not in names:
            names.append(r.venue)
    return names
