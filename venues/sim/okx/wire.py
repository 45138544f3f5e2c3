"""OKX v5 wire helpers of the simulator: the ``{"code", "msg", "data"}`` envelope, OKX
errors, instrument ids (``BTC-USDT-SWAP``), contract values (the core trades base units, OKX
trades contracts: ``qty_base = contracts × ctVal``), parameter parsing, and the shared
renderers (orders, fills)."""

from __future__ import annotations

import re
import weakref
from decimal import Decimal, InvalidOperation

from ..errors import SimError
from ..market import DEFAULT_SPECS, spec_for_unified, synthetic_spec
from ..records import ZERO, Order, SymbolSpec, Trade, fmt
from ..venue import Sim

D = Decimal

INST_TYPE = "SWAP"
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
#: prefix of the client ids the simulator makes up for orders sent without ``clOrdId`` (never
#: alphanumeric, so no client can name one; shown as "" as OKX does)
INTERNAL_CID = "~"
#: contract values of the default symbols (OKX's own: BTC 0.01, ETH 0.1, SOL 1)
CT_VAL = {"BTC": D("0.01"), "ETH": D("0.1"), "SOL": D("1")}
STATES = {"NEW": "live", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
          "EXPIRED": "canceled"}


class OkxError(SimError):
    """An error answered in OKX's own code (a string such as ``"51008"``)."""

    def __init__(self, okx_code: str, msg: str, status: int = 200) -> None:
        super().__init__(0, msg, status)
        self.okx_code = okx_code

    def body(self) -> dict:
        return {"code": self.okx_code, "msg": self.msg, "data": []}


def ok(data: list) -> dict:
    return {"code": "0", "msg": "", "data": data}


def err_empty(name: str) -> OkxError:
    return OkxError("50014", f"Parameter {name} can not be empty.")


def err_param(name: str) -> OkxError:
    return OkxError("51000", f"Parameter {name} error")


def err_inst() -> OkxError:
    return OkxError("51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")


# ---- instruments and contract values ---------------------------------------------------------
class _Instruments:
    def __init__(self, sim: Sim) -> None:
        self.by_inst = {inst_id(s): s for s in sim.market.specs.values()}
        replay = sorted(sim.market.by_unified) if sim.market.replay is not None else None
        self.ct_val = {s.id: _original_step(s, replay) for s in sim.market.specs.values()}


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _instruments(sim: Sim) -> _Instruments:
    got = _CACHE.get(sim)
    if got is None:
        got = _CACHE[sim] = _Instruments(sim)
    return got


def _original_step(s: SymbolSpec, replay: list[str] | None) -> Decimal:
    """ctVal of a symbol: OKX's own for the defaults, else the venue's original step (before
    any ``POST /_sim/market`` qty_step override), so one contract is one step."""
    if s.base in CT_VAL and any(d.symbol == s.symbol for d in DEFAULT_SPECS):
        return CT_VAL[s.base]
    if replay is not None and s.symbol in replay:
        return spec_for_unified(s.symbol, replay.index(s.symbol)).step
    m = re.fullmatch(r"S(\d+)", s.base)
    if m and replay is None:
        return synthetic_spec(int(m.group(1))).step
    return s.step


def inst_id(s: SymbolSpec) -> str:
    return f"{s.base}-{s.quote}-{INST_TYPE}"


def ct_val(sim: Sim, s: SymbolSpec) -> Decimal:
    return _instruments(sim).ct_val.get(s.id, s.step)


def spec_of(sim: Sim, inst: object) -> SymbolSpec:
    """The spec of an ``instId`` (50014 when absent, 51001 when unknown)."""
    if inst is None or inst == "":
        raise err_empty("instId")
    s = _instruments(sim).by_inst.get(str(inst))
    if s is None:
        raise err_inst()
    return s


def inst_filter(sim: Sim, p: dict) -> list[SymbolSpec] | None:
    """The specs named by a comma-separated ``instId`` (None: all)."""
    v = p.get("instId")
    if not v:
        return None
    return [spec_of(sim, i) for i in str(v).split(",") if i]


def contracts(sim: Sim, s: SymbolSpec, qty: Decimal) -> str:
    return fmt(qty / ct_val(sim, s))


# ---- parameters -----------------------------------------------------------------------------
def dec(p: dict, name: str, required: bool = True) -> Decimal | None:
    v = p.get(name)
    if v is None or v == "":
        if required:
            raise err_empty(name)
        return None
    try:
        d = D(str(v))
    except InvalidOperation:
        raise err_param(name) from None
    if not d.is_finite() or isinstance(v, bool):
        raise err_param(name)
    return d


def integer(p: dict, name: str, default: int | None = None) -> int | None:
    v = p.get(name)
    if v is None or v == "":
        return default
    try:
        return int(str(v))
    except ValueError:
        raise err_param(name) from None


def boolean(v: object) -> bool:
    return v is True or str(v).lower() == "true"


def limit_of(p: dict, default: int = 100, most: int = 100) -> int:
    return min(max(integer(p, "limit", default) or default, 1), most)


def page(rows: list, key, p: dict) -> list:
    """OKX pagination over rows sorted newest first: ``after`` (older than that id),
    ``before`` (newer than that id), ``begin`` / ``end`` (ms, on ``ts``), ``limit``."""
    after, before = integer(p, "after"), integer(p, "before")
    begin, end = integer(p, "begin"), integer(p, "end")
    out = [r for r in rows if (after is None or key(r)[0] < after) and (before is None or key(r)[0] > before)
           and (begin is None or key(r)[1] >= begin) and (end is None or key(r)[1] <= end)]
    return out[:limit_of(p)]


# ---- renderers ------------------------------------------------------------------------------
def shown_cid(cid: str) -> str:
    return "" if cid.startswith(INTERNAL_CID) else cid


def ord_type(o: Order) -> str:
    return "market" if o.type == "MARKET" else {"IOC": "ioc", "FOK": "fok", "GTX": "post_only",
                                                "ALO": "post_only"}.get(o.time_in_force, "limit")


#: cancelSource of an order the venue cancelled, and its cancelSourceReason (OKX's own texts)
CANCEL_SOURCES = {
    "14": "Order canceled: IOC order was partially canceled due to incompletely filled",
    "22": "Order canceled: Reduce-only orders only allow reducing your current position. System has already "
          "canceled this order.",
    "31": "The post-only order will take liquidity in taker orders",
}


def cancel_source(o: Order) -> str:
    if o.status == "CANCELED":
        return "1"
    if o.status != "EXPIRED":
        return ""
    if o.post_only and not o.executed_qty:
        return "31"
    if o.reduce_only and o.type == "LIMIT" and o.time_in_force not in ("IOC", "FOK"):
        return "22"
    return "14"


def order_json(sim: Sim, o: Order) -> dict:
    s = sim.market.specs.get(o.symbol)
    cv = ct_val(sim, s) if s else D(1)
    fills = [t for t in sim.engine.trades if t.order_id == o.order_id]
    fee = sum((t.commission for t in fills), ZERO)
    pnl = sum((t.realized_pnl for t in fills), ZERO)
    last = fills[-1] if fills else None
    typ = ord_type(o)
    return {
        "instType": INST_TYPE, "instId": inst_id(s) if s else o.symbol, "tgtCcy": "", "ccy": "",
        "ordId": str(o.order_id), "clOrdId": shown_cid(o.client_order_id), "tag": "",
        "px": fmt(o.price) if o.price else "", "pxUsd": "", "pxVol": "", "pxType": "",
        "sz": fmt(o.orig_qty / cv), "pnl": fmt(pnl), "ordType": typ, "side": o.side.lower(), "posSide": "net",
        "tdMode": "isolated" if sim.engine.is_isolated(o.symbol) else "cross",
        "accFillSz": fmt(o.executed_qty / cv), "fillPx": fmt(last.price) if last else "",
        "tradeId": str(last.id) if last else "", "fillSz": fmt(last.qty / cv) if last else "0",
        "fillTime": str(last.time) if last else "", "avgPx": fmt(o.avg_price) if o.executed_qty else "",
        "state": STATES.get(o.status, "canceled"), "stpId": "", "stpMode": "cancel_maker",
        "lever": str(sim.engine.get_leverage(o.symbol)), "attachAlgoClOrdId": "", "tpTriggerPx": "",
        "tpTriggerPxType": "", "tpOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "", "slOrdPx": "",
        "attachAlgoOrds": [], "linkedAlgoOrd": {"algoId": ""}, "feeCcy": "USDT", "fee": fmt(-fee),
        "rebateCcy": "USDT", "rebate": "0", "source": "", "category": "full_liquidation"
        if o.client_order_id.startswith("autoclose-") else "normal",
        "reduceOnly": "true" if o.reduce_only else "false", "isTpLimit": "false",
        "cancelSource": cancel_source(o), "cancelSourceReason": CANCEL_SOURCES.get(cancel_source(o), ""), "quickMgnType": "", "algoClOrdId": "", "algoId": "",
        "uTime": str(o.update_time), "cTime": str(o.time),
    }


def fill_json(sim: Sim, t: Trade) -> dict:
    s = sim.market.specs.get(t.symbol)
    cv = ct_val(sim, s) if s else D(1)
    o = sim.engine.orders.get(t.order_id)
    return {
        "instType": INST_TYPE, "instId": inst_id(s) if s else t.symbol, "tradeId": str(t.id),
        "ordId": str(t.order_id), "clOrdId": shown_cid(o.client_order_id) if o else "", "billId": str(t.id),
        "subType": "1" if t.side == "BUY" else "2", "tag": "", "fillPx": fmt(t.price), "fillSz": fmt(t.qty / cv),
        "fillIdxPx": "", "fillPnl": fmt(t.realized_pnl), "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "",
        "fillFwdPx": "", "fillMarkPx": "", "side": t.side.lower(), "posSide": "net", "execType": "M" if t.maker else "T",
        "feeCcy": "USDT", "fee": fmt(-t.commission), "feeRate": fmt(-sim.engine.fee_rate(t.maker)),
        "ts": str(t.time), "fillTime": str(t.time),
    }
