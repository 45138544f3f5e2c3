"""``POST /exchange`` of the Hyperliquid dialect: signed actions.

Every action is checked as the venue does: the signer is recovered from the signature (L1
actions: the phantom agent over the msgpack hash of action + nonce (+ vault, + expiresAfter);
user-signed actions: their own EIP-712 message) and must be the account's wallet (``--api-key``),
else ``User or API Wallet 0x… does not exist.``; the nonce (ms) must lie within (venue time −
2 days, venue time + 1 day) and not repeat one of the 100 highest seen.

Actions: ``order`` (limit Gtc / Ioc / Alo, reduce-only, cloid; a "market" order is an Ioc limit at
a slippage-bounded price, as ccxt sends it; an Alo order that would take liquidity is refused
"Post only order would have immediately matched, bbo was …", a resting Gtc / Alo order fills
later as a maker: userFills ``crossed`` false), ``cancel``, ``cancelByCloid``, ``updateLeverage``
(cross or isolated), and the bookkeeping ccxt sends on its own (``approveBuilderFee``,
``setReferrer``: accepted, no effect; builder fees are not charged). Trigger (tp/sl) orders
are refused. Orders go through the core (``_execute`` / ``_accept_late``) with every order fault.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from aiohttp import web

from .. import dead_man
from ..api_orders import _accept_late, _execute, check_symbol_status
from ..errors import SimError, err_dropped
from ..records import Mutation, OrderRequest, floor_step, fmt, q8
from ..venue import Sim
from ..wire import ARRIVED_NS
from . import signing
from . import wire as w
from .info import find_order, read_body

D = Decimal


def _ok(kind: str, data: dict | None = None) -> dict:
    return {"status": "ok", "response": {"type": kind} | ({"data": data} if data is not None else {})}


def _err(text: str) -> dict:
    return {"status": "err", "response": text}


async def exchange(sim: Sim, request: web.Request, p: dict):
    st = w.state(sim)
    body = await read_body(request)
    action, nonce, sig = body.get("action"), body.get("nonce"), body.get("signature")
    vault, expires = body.get("vaultAddress"), body.get("expiresAfter")
    if (not isinstance(action, dict) or not isinstance(action.get("type"), str) or isinstance(nonce, bool)
            or not isinstance(nonce, int) or not (vault is None or isinstance(vault, str))
            or not (expires is None or isinstance(expires, int))):
        raise w.bad_request()
    kind = action["type"]
    if kind not in ACTIONS:
        raise w.bad_request()
    try:
        if kind in signing.USER_SIGNED:
            if action.get("nonce") != nonce:
                raise ValueError("nonce")
            signers = [signing.recover_address(signing.user_signed_digest(action), sig)]
        else:
            signers = [signing.recover_address(signing.l1_digest(action, vault, nonce, expires, src), sig)
                       for src in ("a", "b")]  # mainnet, testnet
    except (KeyError, TypeError, ValueError):
        raise w.bad_request() from None
    if w.wallet(sim) not in signers:
        return _err(f"User or API Wallet {signers[0]} does not exist.")
    now = sim.now_ms()
    if not now - w.NONCE_PAST_MS < nonce < now + w.NONCE_FUTURE_MS:
        return _err(f"Invalid nonce: {nonce} is too far from the current time {now}.")
    if nonce in st.nonces or (len(st.nonces) >= w.NONCES_KEPT and nonce <= min(st.nonces)):
        return _err(f"Invalid nonce: duplicate nonce {nonce}.")
    st.nonces.add(nonce)
    while len(st.nonces) > w.NONCES_KEPT:
        st.nonces.discard(min(st.nonces))
    if expires is not None and expires < now:
        return _err(f"Action expired at {expires}.")
    if vault is not None:
        return _err(f"Vault not registered: 0x{vault.removeprefix('0x')}")
    return ACTIONS[kind](sim, action, request[ARRIVED_NS], nonce)


# ---- orders -----------------------------------------------------------------------------------
def _parse_order(o: object) -> tuple:
    if not isinstance(o, dict):
        raise w.bad_request()
    a, b, px, sz, r, t, c = (o.get(k) for k in ("a", "b", "p", "s", "r", "t", "c"))
    if (isinstance(a, bool) or not isinstance(a, int) or not isinstance(b, bool) or not isinstance(r, bool | None)
            or not isinstance(px, str) or not isinstance(sz, str) or not isinstance(t, dict)
            or not (c is None or (isinstance(c, str) and w.CLOID_RE.match(c)))):
        raise w.bad_request()
    if "trigger" in t:
        return a, b, px, sz, bool(r), "TRIGGER", c
    tif = w.TIF.get((t.get("limit") or {}).get("tif") if isinstance(t.get("limit"), dict) else None)
    if tif is None:
        raise w.bad_request()
    return a, b, px, sz, bool(r), tif, c


def order(sim: Sim, action: dict, arrived: int, nonce: int) -> dict:
    orders = action.get("orders")
    if not isinstance(orders, list) or not orders:
        raise w.bad_request()
    parsed = [_parse_order(o) for o in orders]
    f = sim.faults
    if f.reject_orders > 0:
        f.reject_orders -= 1
        return _ok("order", {"statuses": [{"error": w.message(SimError(-2010, ""), o[0])} for o in parsed]})
    drop = False
    if f.drop_responses > 0:
        f.drop_responses -= 1
        drop = True
    statuses = [_place(sim, o, arrived, nonce, visible=not drop) for o in parsed]
    if drop:
        raise err_dropped()  # executed; the answer is lost (5xx)
    return _ok("order", {"statuses": statuses})


def _place(sim: Sim, o: tuple, arrived: int, nonce: int, visible: bool) -> dict:
    a, is_buy, px_s, sz_s, reduce_only, tif, cloid = o
    spec = w.spec_by_asset(sim, a)
    if spec is None:
        return {"error": w.message(SimError(-1121, ""), a)}
    if tif == "TRIGGER":
        return {"error": f"Trigger orders are not supported by the simulated venue. asset={a}"}
    szd = w.sz_decimals(spec)
    px, sz = w.dec(px_s), w.dec(sz_s)
    if sz is None or sz < 0:
        return {"error": f"Order has invalid size. asset={a}"}
    if sz == 0:
        return {"error": f"Order has zero size. asset={a}"}
    if px is None or not w.price_ok(px, szd):
        return {"error": f"Price must be divisible by tick size. asset={a}"}
    t = sim.now_ms()
    mark = sim.market.mark(spec.id, t)
    if abs(px - mark) > mark * D("0.8"):
        return {"error": f"Order price cannot be more than 80% away from the reference price. asset={a}"}
    if not reduce_only and sz * px < w.MIN_ORDER_VALUE:
        return {"error": f"Order must have minimum value of $10. asset={a}"}
    bids, asks = sim.market.depth(spec.id, t, 1)
    if tif == "ALO":
        best = asks[0][0] if is_buy and asks else bids[0][0] if not is_buy and bids else None
        if best is not None and (px >= best if is_buy else px <= best):
            bbo = f"{fmt(bids[0][0]) if bids else '0'}@{fmt(asks[0][0]) if asks else '0'}"
            return {"error": f"Post only order would have immediately matched, bbo was {bbo}. asset={a}"}
    # the core matches on its own tick inside its price band; the venue's limit is kept on the order
    # (2 % inside the core's band: a late execution meets a mark that has moved a little since)
    lo, hi = sim.engine.price_band(spec.id, mark)
    lo, hi = w.to_tick(mark - (mark - lo) * D("0.98"), spec.tick, True), w.to_tick(mark + (hi - mark) * D("0.98"), spec.tick, False)
    eng_px = min(w.to_tick(px, spec.tick, False), hi) if is_buy else max(w.to_tick(px, spec.tick, True), lo)
    f = sim.faults
    qty = sz
    if f.partial_fill_ratio is not None and tif == "IOC":
        qty = max(floor_step(sz * D(str(f.partial_fill_ratio)), spec.step), spec.min_qty)
    cid = cloid.lower() if cloid else "hl" + secrets.token_hex(8)
    req = OrderRequest(spec.id, "BUY" if is_buy else "SELL", "LIMIT", qty, cid, reduce_only, eng_px,
                       "GTX" if tif == "ALO" else tif, arrived)  # Alo: the core's post-only
    try:
        check_symbol_status(sim, spec, reduce_only)
        if f.execute_late_ms > 0:
            pending = _accept_late(sim, req, spec, {"timestamp": nonce, "recvWindow": w.NONCE_PAST_MS},
                                   f.execute_late_ms, visible=visible)
            return {"resting": {"oid": pending.order_id} | ({"cloid": cloid} if cloid else {})}
        od = _execute(sim, req, spec)
    except SimError as e:
        return {"error": w.message(e, a)}
    changed = False
    if qty != sz:  # partial_fill_ratio: the IOC filled that share; the rest is cancelled
        od.orig_qty, changed = sz, True
        if od.status == "FILLED":
            od.status = "EXPIRED"
    if not od.is_open and od.price != px:
        od.price, changed = px, True
    if changed:
        sim.persist(Mutation(orders=[od]))
    extra = {"cloid": cloid} if cloid else {}
    if od.is_open and not od.executed_qty:
        return {"resting": {"oid": od.order_id} | extra}
    if od.executed_qty:
        return {"filled": {"totalSz": fmt(od.executed_qty), "avgPx": fmt(q8(od.avg_price)), "oid": od.order_id}
                | extra}
    return {"error": f"Order could not immediately match against any resting orders. asset={a}"}


# ---- cancels, leverage, bookkeeping -------------------------------------------------------------
def _cancel(sim: Sim, action: dict, by_cloid: bool) -> dict:
    cancels = action.get("cancels")
    if not isinstance(cancels, list) or not all(isinstance(c, dict) for c in cancels):
        raise w.bad_request()
    statuses: list = []
    for c in cancels:
        a = c.get("asset") if by_cloid else c.get("a")
        ref = c.get("cloid") if by_cloid else c.get("o")
        if by_cloid and not (isinstance(ref, str) and w.CLOID_RE.match(ref)):
            raise w.bad_request()
        if not by_cloid and (isinstance(ref, bool) or not isinstance(ref, int)):
            raise w.bad_request()
        spec = w.spec_by_asset(sim, a)
        od = find_order(sim, ref) if spec is not None else None
        if od is None or od.symbol != spec.id or not od.is_open:  # type: ignore[union-attr]
            statuses.append({"error": f"Order was never placed, already canceled, or filled. asset={a}"})
            continue
        sim.persist(sim.engine.cancel(od, sim.now_ms()))
        statuses.append("success")
    return _ok("cancel", {"statuses": statuses})


def cancel(sim: Sim, action: dict, arrived: int, nonce: int) -> dict:
    return _cancel(sim, action, False)


def cancel_by_cloid(sim: Sim, action: dict, arrived: int, nonce: int) -> dict:
    return _cancel(sim, action, True)


def update_leverage(sim: Sim, action: dict, arrived: int, nonce: int) -> dict:
    a, is_cross, lev = action.get("asset"), action.get("isCross"), action.get("leverage")
    if not isinstance(is_cross, bool) or isinstance(lev, bool) or not isinstance(lev, int):
        raise w.bad_request()
    spec = w.spec_by_asset(sim, a)
    if spec is None:
        return _err(w.message(SimError(-1121, ""), a))  # type: ignore[arg-type]
    if not 1 <= lev <= spec.max_leverage:
        return _err("Invalid leverage value")
    e = sim.engine
    if is_cross == e.is_isolated(spec.id):  # a margin-mode change
        if e.position(spec.id).qty:
            return _err("Cannot switch leverage type with open position.")
        if is_cross:
            e.isolated.discard(spec.id)
        else:
            e.isolated.add(spec.id)
        sim.persist(Mutation(meta={f"margin_type:{spec.id}": "CROSSED" if is_cross else "ISOLATED"}))
    e.leverage[spec.id] = lev
    sim.store.save_leverage(spec.id, lev)
    return _ok("default")


def accept(sim: Sim, action: dict, arrived: int, nonce: int) -> dict:
    return _ok("default")


ACTIONS = {
    "order": order, "cancel": cancel, "cancelByCloid": cancel_by_cloid, "updateLeverage": update_leverage,
    "approveBuilderFee": accept, "setReferrer": accept, "scheduleCancel": dead_man.hyperliquid_schedule_cancel,
}
