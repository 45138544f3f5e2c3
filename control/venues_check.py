"""``hedgeflow venues check``: is every configured venue (simulator or real) fit to trade on?

For each venue one :class:`~venues.gateway.Gateway` is built and asked, read-only (nothing is
ever sent that could open, change or close anything):

* reachable: the markets load (a venue that cannot be reached is one problem, nothing more);
* clock skew: the gateway's clock offset (local − venue, :class:`venues.placing.Clock`),
  measured *before* any signed request, so before the gateway could re-sync on a -1021;
  a problem above :data:`SKEW_LIMIT_MS`;
* keys valid: a signed read (the balance) succeeds;
* permissions: trading permitted and withdrawal not, where the venue says so (Binance
  ``sapi`` apiRestrictions, Bybit ``/v5/user/query-api``, OKX ``account/config`` ``perm``);
  a simulator without such a read trades and cannot withdraw; elsewhere ``unknown`` (a warning);
* position mode (one-way required; skipped where the adapter says the venue has none or ccxt
  cannot read it) and margin mode (cross required; ``unknown`` is a warning) — what the
  trade's pre-trade check refuses on;
* fee tier: taker/maker from ``fetchTradingFee(s)`` where ccxt has it, else the configured fees;
* minimums (min qty, min notional, status) of the configured scanner symbols;
* the adapter's capabilities (:meth:`venues.adapters.base.Adapter.capabilities`).

Every problem is one line naming the venue and what to do; secrets are never part of a report
(venue messages are scrubbed of the key, secret and password).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from config.settings import Settings, VenueConfig, VenueKind
from venues.errors import (
    AuthenticationFailed,
    ClockSkew,
    VenueError,
    VenueNetworkError,
    VenueTimeout,
    VenueUnavailable,
    map_error,
    scrub,
)
from venues.gateway import Gateway

#: a clock further off the venue's than this (either way) is a problem
SKEW_LIMIT_MS = 1000
#: margin-mode reads per venue (the first configured symbols the venue lists)
MARGIN_SYMBOLS_MAX = 5
#: probe symbol when the scanner trades every symbol
PROBE_SYMBOL = "BTC/USDT:USDT"
MESSAGE_MAX = 240


@dataclass
class SymbolMinimums:
    symbol: str
    listed: bool
    active: bool | None = None
    status: str | None = None
    min_qty: str | None = None
    min_notional: str | None = None


@dataclass
class VenueReport:
    venue: str
    kind: str
    exchange: str
    family: str
    environment: str
    reachable: bool = False
    keys: str = "not checked"  # valid | invalid | not checked
    trading: str = "unknown"  # yes | no | unknown
    withdrawal: str = "unknown"
    permissions_source: str = ""
    clock_offset_ms: int | None = None  # local − venue (negative: the venue's clock is ahead)
    clock_uncertainty_ms: int | None = None
    position_mode: str = "not checked"  # one-way | hedge | skipped | not checked
    margin_mode: str = "not checked"  # cross | isolated | unknown | not checked
    taker_fee: str | None = None
    maker_fee: str | None = None
    fee_source: str = "config"  # venue | config
    markets: int | None = None
    symbols_configured: bool = False
    minimums: list[SymbolMinimums] = field(default_factory=list)
    capabilities: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.venue}: {text}")

    def warn(self, text: str) -> None:
        self.warnings.append(f"{self.venue}: {text}")


@dataclass
class CheckReport:
    venues: list[VenueReport]

    @property
    def problems(self) -> list[str]:
        return [p for v in self.venues for p in v.problems]

    @property
    def warnings(self) -> list[str]:
        return [w for v in self.venues for w in v.warnings]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "venues": [asdict(v) for v in self.venues], "problems": self.problems,
                "warnings": self.warnings}


def _secrets(venue: VenueConfig) -> list[str]:
    return [s.get_secret_value() for s in (venue.api_key, venue.api_secret, venue.api_password) if s is not None]


def _one_line(text: str, secrets: list[str]) -> str:
    text = " ".join(scrub(str(text), secrets).split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _why(exc: BaseException, venue: VenueConfig) -> str:
    """``Type: message`` of a venue error, on one line, scrubbed, without the venue's name prefix."""
    err = exc if isinstance(exc, VenueError) else map_error(exc, venue.name, secrets=_secrets(venue))
    msg = str(err).removeprefix(f"{venue.name}: ")
    return _one_line(f"{err.type_name}: {msg}", _secrets(venue))


async def _raw(gw: Gateway, method: str, *args: Any) -> Any:
    """A ccxt call outside the gateway's port (permission and fee reads), errors mapped and scrubbed."""
    try:
        return gw.adapter.from_venue(await getattr(gw.exchange, method)(*gw.adapter.to_venue(args)))
    except VenueError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every ccxt / transport error is mapped
        raise map_error(exc, gw.name, secrets=_secrets(gw.venue)) from None


def _where(venue: VenueConfig) -> str:
    return venue.base_url if venue.kind is VenueKind.SIM else f"{venue.exchange_id} ({venue.environment})"


def _key_hint(venue: VenueConfig) -> str:
    names = [venue.env_key("API_KEY"), venue.env_key("API_SECRET")]
    if venue.kind is VenueKind.CCXT and venue.exchange_id in VenueConfig.PASSPHRASE_EXCHANGES:
        names.append(venue.env_key("API_PASSWORD"))
    return "check " + " / ".join(names)


# ---------------------------------------------------------------------------- permissions
async def _permissions(gw: Gateway) -> tuple[str, str, str]:
    """(trading, withdrawal, source): yes / no / unknown each."""
    family, sim = gw.adapter.family, gw.venue.kind is VenueKind.SIM
    if family == "binance" and not sim:  # the simulator serves no sapi
        r = await _raw(gw, "sapi_get_account_apirestrictions")
        trading = _yes(r.get("enableFutures"))
        return trading, _yes(r.get("enableWithdrawals")), "sapi apiRestrictions"
    if family == "bybit":
        r = await _raw(gw, "private_get_v5_user_query_api")
        res = r.get("result") or {}
        perms = res.get("permissions") or {}
        read_only = str(res.get("readOnly", "")) == "1"
        contract = perms.get("ContractTrade") or []
        trading = "no" if read_only else ("yes" if "Order" in contract or perms.get("Derivatives") else "no")
        return trading, "yes" if "Withdraw" in (perms.get("Wallet") or []) else "no", "/v5/user/query-api"
    if family == "okx":
        r = await _raw(gw, "private_get_account_config")
        rows = r.get("data") or [{}]
        perm = {p.strip() for p in str(rows[0].get("perm", "")).split(",") if p.strip()}
        if not perm:
            return "unknown", "unknown", "account/config (no perm)"
        return ("yes" if "trade" in perm else "no"), ("yes" if "withdraw" in perm else "no"), "account/config perm"
    if sim:
        return "yes", "no", "simulator (no withdrawals)"
    return "unknown", "unknown", "not readable through ccxt"


def _yes(value: object) -> str:
    if value is None:
        return "unknown"
    return "yes" if value is True or str(value).lower() == "true" else "no"


# ---------------------------------------------------------------------------- one venue
def _symbols(settings: Settings) -> list[str]:
    return list(settings.scanner.symbols)


async def _check_clock(gw: Gateway, rep: VenueReport) -> None:
    clock = gw.clock  # the gateway's one clock measurement (venues.placing.Clock)
    if not gw.exchange.has.get("fetchTime"):
        rep.warn("clock offset not measurable (ccxt has no fetchTime here)")
        return
    if not await clock.refresh(force=True):
        rep.warn("clock offset not measured (the venue's time could not be read)")
        return
    rep.clock_offset_ms, rep.clock_uncertainty_ms = clock.offset_ms, clock.uncertainty_ms
    off = clock.offset_ms
    if abs(off) > SKEW_LIMIT_MS:
        side = "ahead of" if off < 0 else "behind"
        rep.problem(f"clock skew {abs(off)} ms (the venue's clock is {side} this machine's; limit "
                    f"{SKEW_LIMIT_MS} ms); sync this machine's clock (NTP)")


async def _check_keys(gw: Gateway, rep: VenueReport) -> bool:
    venue = gw.venue
    for attempt in (1, 2):
        try:
            await gw.balance()
            rep.keys = "valid"
            return True
        except AuthenticationFailed as exc:
            rep.keys = "invalid"
            rep.problem(f"keys rejected by the venue ({_why(exc, venue)}); {_key_hint(venue)}")
            return False
        except ClockSkew as exc:  # the gateway re-synced; one retry signs with the measured offset
            if attempt == 2:
                rep.keys = "not checked"
                rep.problem(f"keys not checked: the venue refuses our timestamps ({_why(exc, venue)})")
                return False
        except VenueError as exc:
            rep.keys = "not checked"
            rep.problem(f"keys not checked: the signed balance read failed ({_why(exc, venue)})")
            return False
    return False


async def _check_permissions(gw: Gateway, rep: VenueReport) -> None:
    try:
        rep.trading, rep.withdrawal, rep.permissions_source = await _permissions(gw)
    except VenueError as exc:
        rep.trading = rep.withdrawal = "unknown"
        rep.permissions_source = f"unreadable ({exc.type_name})"
    if rep.trading == "no":
        rep.problem("the API key may not trade futures; enable trading (derivatives/futures) on the key")
    if rep.withdrawal == "yes":
        rep.problem("the API key may withdraw; use a key without withdrawal permission")
    unknown = [what for what, v in (("trading", rep.trading), ("withdrawal", rep.withdrawal)) if v == "unknown"]
    if unknown:
        rep.warn(f"{' and '.join(unknown)} permission unknown ({rep.permissions_source}); check the key's "
                 "settings on the venue: trading on, withdrawal off")


async def _check_position_mode(gw: Gateway, rep: VenueReport) -> None:
    read = gw.adapter.position_mode_read
    if not read or (read == "fetchPositionMode" and not gw.exchange.has.get("fetchPositionMode")):
        rep.position_mode = "skipped"
        return
    try:
        one_way = await gw.is_one_way_mode()
    except VenueError as exc:
        rep.position_mode = "unknown"
        rep.problem(f"position mode could not be read ({_why(exc, gw.venue)}); trades would be refused")
        return
    rep.position_mode = "one-way" if one_way else "hedge"
    if not one_way:
        rep.problem("position mode is hedge; switch the account to one-way")


async def _check_margin_mode(gw: Gateway, rep: VenueReport, symbols: list[str]) -> None:
    modes: dict[str, str] = {}
    for symbol in symbols[:MARGIN_SYMBOLS_MAX]:
        try:
            modes[symbol] = await gw.margin_mode(symbol)
        except VenueError as exc:
            modes[symbol] = "unknown"
            rep.warn(f"margin mode of {symbol} could not be read ({_why(exc, gw.venue)})")
    if not modes:
        return
    isolated = [s for s, m in modes.items() if m == "isolated"]
    found = set(modes.values())
    rep.margin_mode = "isolated" if isolated else (found.pop() if len(found) == 1 else "mixed")
    if isolated:
        rep.problem(f"margin mode is isolated for {', '.join(isolated)}; switch to cross margin")
    elif "unknown" in modes.values():
        rep.warn("margin mode unknown (not readable here); make sure the account uses cross margin")


async def _check_fees(gw: Gateway, rep: VenueReport, symbol: str | None) -> None:
    rep.taker_fee, rep.maker_fee = str(gw.venue.taker_fee), str(gw.venue.maker_fee)
    has = gw.exchange.has
    if symbol is None or not (has.get("fetchTradingFee") or has.get("fetchTradingFees")):
        return
    try:
        if has.get("fetchTradingFee"):
            fee = await _raw(gw, "fetch_trading_fee", symbol)
        else:
            fee = (await _raw(gw, "fetch_trading_fees")).get(symbol) or {}
    except VenueError as exc:
        rep.warn(f"fee tier not readable ({exc.type_name}); using the configured taker_fee {gw.venue.taker_fee}")
        return
    taker, maker = fee.get("taker"), fee.get("maker")
    if taker is None:
        return
    rep.taker_fee, rep.maker_fee, rep.fee_source = str(Decimal(str(taker))), (
        None if maker is None else str(Decimal(str(maker)))), "venue"
    if Decimal(str(taker)) > gw.venue.taker_fee:
        rep.warn(f"the venue's taker fee {rep.taker_fee} is above the configured taker_fee {gw.venue.taker_fee}: "
                 "edges are overestimated; raise taker_fee")


async def _minimums(gw: Gateway, rep: VenueReport, settings: Settings) -> list[str]:
    """Fill the minimums; return the symbols to read the margin mode and fees of."""
    markets = await gw.markets()
    rep.markets = len(markets)
    configured = _symbols(settings)
    rep.symbols_configured = bool(configured)
    if not configured:  # every symbol: show one probe market
        active = sorted(s for s, m in markets.items() if m.active)
        configured = [PROBE_SYMBOL] if PROBE_SYMBOL in markets else active[:1]
    listed = []
    for symbol in configured:
        m = markets.get(symbol)
        if m is None:
            rep.minimums.append(SymbolMinimums(symbol, listed=False))
            rep.warn(f"{symbol} is not listed; the scanner will not trade it here")
            continue
        rep.minimums.append(SymbolMinimums(symbol, True, m.active, m.status, str(m.min_qty), str(m.min_notional)))
        listed.append(symbol)
        if not m.active:
            rep.warn(f"{symbol} is not trading now (status {m.status})")
        if m.min_notional > settings.scanner.notional_usd:
            rep.problem(f"{symbol} minimum notional {m.min_notional} is above the scanner's notional_usd "
                        f"{settings.scanner.notional_usd}; raise scanner.notional_usd")
    return listed


async def check_venue(venue: VenueConfig, settings: Settings) -> VenueReport:
    """The report of one venue; never raises (every failure is a problem line)."""
    kind = venue.kind.value
    rep = VenueReport(venue=venue.name, kind=kind, exchange=venue.exchange_id, family="?",
                      environment="sim" if venue.kind is VenueKind.SIM else venue.environment)
    try:
        gw = Gateway(venue)
    except Exception as exc:  # noqa: BLE001 - unknown exchange id, environment not offered ...
        rep.problem(f"cannot be set up: {_one_line(str(exc), _secrets(venue))}")
        return rep
    rep.exchange, rep.family = gw.exchange.id, gw.adapter.family
    rep.capabilities = {k: str(v) for k, v in asdict(gw.adapter.capabilities()).items()}
    try:
        try:
            symbols = await _minimums(gw, rep, settings)
        except (VenueUnavailable, VenueNetworkError, VenueTimeout) as exc:
            rep.problem(f"unreachable at {_where(venue)} ({_why(exc, venue)}); is the venue up and the URL right?")
            return rep
        except VenueError as exc:
            rep.problem(f"markets could not be loaded from {_where(venue)} ({_why(exc, venue)})")
            return rep
        rep.reachable = True
        await _check_clock(gw, rep)  # before any signed request: the offset as it is, not re-synced
        if await _check_keys(gw, rep):
            await _check_permissions(gw, rep)
            await _check_position_mode(gw, rep)
            await _check_margin_mode(gw, rep, symbols)
            await _check_fees(gw, rep, symbols[0] if symbols else None)
        else:
            rep.taker_fee, rep.maker_fee = str(venue.taker_fee), str(venue.maker_fee)
    except Exception as exc:  # noqa: BLE001 - a report, never a traceback
        rep.problem(f"check failed ({_one_line(f'{type(exc).__name__}: {exc}', _secrets(venue))})")
    finally:
        await gw.close()
    return rep


async def check_venues(settings: Settings, *, timeout_s: float | None = None) -> CheckReport:
    """Every configured venue, concurrently, each within ``timeout_s`` (default: a few of the
    venue's request timeouts)."""

    async def one(v: VenueConfig) -> VenueReport:
        limit = timeout_s if timeout_s is not None else 4 * v.timeout_ms / 1000 + 5
        try:
            return await asyncio.wait_for(check_venue(v, settings), limit)
        except TimeoutError:
            rep = VenueReport(venue=v.name, kind=v.kind.value, exchange=v.exchange_id, family="?",
                              environment="sim" if v.kind is VenueKind.SIM else v.environment)
            rep.problem(f"did not answer within {limit:.0f} s at {_where(v)}; is the venue up?")
            return rep

    return CheckReport(list(await asyncio.gather(*(one(v) for v in settings.venues))))
