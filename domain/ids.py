"""Deterministic client order ids.

A client order id is derived from ``(trade_id, leg, step)`` only, so every retry, replay or
restart of the same step produces the same id, and the gateway can look the order up before
sending it again. Ids are at most 32 characters of ``[A-Za-z0-9]``: the strictest rule among
the venues we target (Binance allows 36 of ``[.A-Z:/a-z0-9_-]``, OKX 32 alphanumerics).
"""

from __future__ import annotations

import hashlib
import re

MAX_LEN = 32
LEGS = ("long", "short")
_STEP_RE = re.compile(r"\A[A-Za-z0-9]{1,8}\Z")  # \Z: "$" would accept a trailing newline
_ID_RE = re.compile(r"\A[A-Za-z0-9]{1,32}\Z")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out)) or "0"


def client_order_id(trade_id: str, leg: str, step: str) -> str:
    """Return the client order id for one order step of one leg of one trade.

    ``leg`` is ``"long"`` or ``"short"``; ``step`` is 1–8 alphanumerics naming the step,
    e.g. ``"o"`` (open), ``"t1"`` (first top-up), ``"c3"`` (third close attempt).
    Layout: ``hf`` + ``L``/``S`` + step + ``x`` + base62 hash, cut to 32 characters.
    """
    if not trade_id:
        raise ValueError("trade_id must not be empty")
    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    if not _STEP_RE.match(step):
        raise ValueError(f"step must be 1-8 characters of [A-Za-z0-9], got {step!r}")
    prefix = f"hf{leg[0].upper()}{step}x"
    digest = hashlib.sha256(f"{trade_id}\x1f{leg}\x1f{step}".encode()).digest()
    return (prefix + _base62(digest))[:MAX_LEN]


def is_valid_client_order_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


_HEX_ID_RE = re.compile(r"\A0x[0-9a-f]{32}\Z")


def hex_client_order_id(cid: str) -> str:
    """The 128-bit hex form (``0x`` + 32 lowercase hex digits) of a client order id, for venues
    whose client ids are hex (Hyperliquid ``cloid``): a hash of ``cid``, so as deterministic as it."""
    if is_valid_hex_client_order_id(cid):
        return cid  # already in that form
    return "0x" + hashlib.sha256(f"cloid\x1f{cid}".encode()).hexdigest()[:32]


def is_valid_hex_client_order_id(value: str) -> bool:
    return bool(_HEX_ID_RE.match(value))


def trade_workflow_id(symbol: str, long_venue: str, short_venue: str, stamp: str) -> str:
    """Workflow id of a trade: ``trade-BTCUSDT-sim-a-sim-b-<stamp>``. ``stamp`` makes it unique
    per opening decision (a UTC time for a manual open, the settlement epoch the scanner
    targets), so the same decision can never start two workflows."""
    base = re.sub(r"[^A-Za-z0-9]", "", symbol.split(":")[0])
    stamp = re.sub(r"[^A-Za-z0-9-]", "", stamp)
    if not (base and stamp):
        raise ValueError("symbol and stamp must contain letters or digits")
    return f"trade-{base}-{long_venue}-{short_venue}-{stamp}"
