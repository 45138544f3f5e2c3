"""Reconciliation: what the venues hold against what hedgeflow thinks it holds.

One pass (``reconcile_once``), used by the ``reconcile`` activity (``ReconcileWorkflow``, every
``reconcile.interval_s``) and by ``hedgeflow reconcile``:

* positions: each venue's positions against the sum of the running trades' legs (trades in a
  transient state — opening, verifying, hedge check, closing, emergency closing — trades that
  cannot be queried, and trades started after the positions were read are skipped for their
  symbol and venues). A position no trade accounts for is an **orphan** (e.g. a terminated
  workflow); a different size is a **position mismatch**. One consistent picture: positions are
  read *first*, the trades listed *after*; whatever disagrees is read again after ``SETTLE_S``
  and the trades listed again, and only what disagrees in both pictures is reported (a trade
  opening or closing between two reads is never an orphan);
* orders: the ledger's recent orders of finished trades against the venue's record of them
  (**order missing** / **order mismatch**);
* every finding is an incident in the ledger (one open incident per key) and an alert when it
  is new; an incident whose condition is gone resolves itself; while any is open the scanner
  opens nothing (``Ledger.open_incident_count`` / activity ``open_incidents``);
* ``flatten``: orphans whose incident keys are given are closed with reduce-only market orders
  until the venue is flat, under deterministic client ids per attempt (incident key + attempt
  number ``f1``, ``f2``, …); an attempt id the venue already has is never sent again, so a
  partly filled flatten is retried with the next id (at most ``FLATTEN_SENDS`` per run);
* operational alerts: venue unhealthy, balance drop since the start of the UTC day, no trade
  for ``alerts.no_trade_hours``, venue error rate above ``alerts.venue_error_rate`` (this
  worker's calls since the last pass), and a daily summary when the UTC day changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ports import TradeDirectory
from config import Settings
from domain.ids import client_order_id
from ledger import Ledger
from ledger.repository import TERMINAL_STATES
from messages.trade import Discrepancy, ReconcileReport, ReconcileRequest, ReconcileState
from telemetry import metrics as m
from telemetry.alerts import AlertDeliveryError, Notifier
from venues.errors import VenueError
from venues.models import Position, Side
from venues.pool import GatewayPool

log = logging.getLogger("hedgeflow.reconcile")
ZERO = Decimal(0)
TOLERANCE = Decimal("1e-9")
RECONCILE_KINDS = ("orphan", "position_mismatch", "order_mismatch", "order_missing")


SETTLE_S = 1.0  # a suspect (venue, symbol) is read again after this long (``Reconciler.confirm``)
START_MARGIN_MS = 2000  # clock margin: trades started this long before the positions read are busy too
FLATTEN_SENDS = 5  # new flatten orders per orphan per run
MAX_FLATTEN_STEPS = 50  # flatten attempt ids per incident over all runs


@dataclass
class TradeView:
    """One listing of the running trades: what they account for, pairs not to judge, and their
    ids (which also answer which leases a running trade still holds)."""

    expected: dict[tuple[str, str], Decimal]
    busy: set[tuple[str, str]]
    running: set[str]


@dataclass
class FlattenResult:
    left: Decimal
    flat: bool = False
    sent: int = 0
    cids: list[str] = field(default_factory=list)  # sent this run
    earlier: list[str] = field(default_factory=list)  # attempt ids the venue already had
    error: str | None = None

    def summary(self) -> str:
        parts = [f"{self.sent} order(s) sent" + (f" ({', '.join(self.cids)})" if self.cids else "")]
        if self.earlier:
            parts.append(f"{len(self.earlier)} earlier attempt(s) not resent")
        parts.append("flat" if self.flat else f"{self.left} left")
        if self.error:
            parts.append(self.error)
        return "; ".join(parts)


def incident_key(d: Discrepancy, cid: str | None = None) -> str:
    return f"{d.kind}:{d.venue}:{d.symbol}" + (f":{cid}" if cid else "")


class Reconciler:
    """One pass of reconciliation; keeps per-process counters for the error-rate alert."""

    def __init__(self, settings: Settings, pool: GatewayPool, ledger: Ledger, notifier: Notifier,
                 trades: TradeDirectory, *, settle_s: float = SETTLE_S, flatten_sends: int = FLATTEN_SENDS) -> None:
        self.settings = settings
        self.settle_s = settle_s
        self.flatten_sends = flatten_sends
        self.trades = trades  # control.trades: what the running trades account for
        self.pool = pool
        self.ledger = ledger
        self.notifier = notifier
        self._last_counts: dict[str, tuple[float, float]] = {}

    async def _alert(self, report: ReconcileReport, kind: str, message: str, severity: str) -> None:
        report.alerts.append(kind)
        try:
            await self.notifier.send(kind, message, severity)
        except AlertDeliveryError as exc:  # the log has it; the next pass does not repeat it
            log.error("alert %s not delivered: %s", kind, exc)

    async def read_positions(self, report: ReconcileReport | None = None,
                             only: dict[str, set[str]] | None = None
                             ) -> tuple[dict[str, list[Position]], dict[str, Decimal]]:
        """Each venue's positions and balance (``report``: note which venues answered). ``only``:
        re-read just these venues' symbols (the confirmation read; no balance)."""
        positions: dict[str, list[Position]] = {}
        balances: dict[str, Decimal] = {}
        for v in self.settings.venues:
            if only is not None and v.name not in only:
                continue
            gw = self.pool.get(v.name)
            try:
                if only is not None:
                    positions[v.name] = await gw.positions(sorted(only[v.name]))
                    continue
                pos, bal = await asyncio.gather(gw.positions(None), gw.balance())
            except VenueError as exc:
                if report is not None:
                    report.venues_down[v.name] = exc.type_name
                    m.VENUE_UP.labels(v.name).set(0)
                continue
            positions[v.name] = pos
            balances[v.name] = bal.total
            if report is not None:
                report.venues_ok.append(v.name)
                m.VENUE_UP.labels(v.name).set(1)
        return positions, balances

    async def read_trades(self, client: Any, positions_read_ms: int) -> TradeView:
        """What the running trades account for, listed *after* the positions were read at
        ``positions_read_ms``; trades started since then (less a clock margin) are busy."""
        return TradeView(*await self.trades.expected_positions(
            client, self.settings.temporal.task_queue, started_after_ms=positions_read_ms - START_MARGIN_MS))

    async def _release_stale_leases(self, client: Any, report: ReconcileReport,
                                    running: Collection[str] = ()) -> None:
        """A lease whose trade no longer runs (terminated, or its final release never landed)
        would keep the symbol closed to trading: release it once it is older than a minute.
        ``running``: trade ids this pass's trades list showed running (no question asked of
        them); only a lease of a trade not listed (ended, or on another task queue) is asked
        about, trade by trade."""
        now = int(time.time() * 1000)
        asked: dict[str, bool] = {}
        for lease in await asyncio.to_thread(self.ledger.leases):
            if now - lease.acquired_ms < 60_000 or lease.trade_id in running:
                continue
            if lease.trade_id not in asked:  # one question per trade, however many pairs it holds
                asked[lease.trade_id] = await self.trades.trade_running(client, lease.trade_id)
            if asked[lease.trade_id]:
                continue
            await asyncio.to_thread(self.ledger.release_leases, lease.trade_id)
            log.warning("reconcile: released the lease of %s on %s %s (trade not running)",
                        lease.trade_id, lease.venue, lease.symbol)
            report.alerts.append(f"lease_released:{lease.venue}:{lease.symbol}")

    @staticmethod
    def compare(positions: dict[str, list[Position]], view: TradeView,
                only: dict[str, set[str]] | None = None) -> dict[tuple[str, str], Discrepancy]:
        """(venue, symbol) → orphan / position mismatch between one positions read and one trades
        list (pairs a busy trade touches are not judged)."""
        out: dict[tuple[str, str], Discrepancy] = {}
        for venue, pos in positions.items():
            held: dict[str, Decimal] = {}
            for p in pos:
                if p.qty != 0:
                    held[p.symbol] = held.get(p.symbol, ZERO) + p.qty
            symbols = set(held) | {sym for (vn, sym) in view.expected if vn == venue}
            if only is not None:
                symbols &= only.get(venue, set())
            for sym in sorted(symbols):
                if (venue, sym) in view.busy:
                    continue
                qty, exp = held.get(sym, ZERO), view.expected.get((venue, sym), ZERO)
                if abs(qty - exp) <= TOLERANCE:
                    continue
                if exp == 0:
                    d = Discrepancy(kind="orphan", venue=venue, symbol=sym, qty=qty, expected_qty=ZERO,
                                    detail=f"{venue} holds {qty} {sym} that no running trade accounts for")
                else:
                    d = Discrepancy(kind="position_mismatch", venue=venue, symbol=sym, qty=qty, expected_qty=exp,
                                    detail=f"{venue} holds {qty} {sym}; the running trades expect {exp}")
                out[(venue, sym)] = d
        return out

    async def confirm(self, client: Any, suspects: dict[tuple[str, str], Discrepancy], positions_read_ms: int
                      ) -> tuple[list[Discrepancy], set[tuple[str, str]]]:
        """Second look at the suspects of the first (positions → trades) picture: after
        ``settle_s`` re-read just their positions, then list the trades again (busy: transient,
        unqueryable, or started since the *first* positions read). A suspect is a finding only
        if the second picture shows it too (its values are reported). Returns (findings, pairs
        left undecided because their venue did not answer the re-read)."""
        if not suspects:
            return [], set()
        await asyncio.sleep(self.settle_s)
        only: dict[str, set[str]] = {}
        for venue, sym in suspects:
            only.setdefault(venue, set()).add(sym)
        positions, _ = await self.read_positions(None, only)
        view = await self.read_trades(client, positions_read_ms)
        again = self.compare(positions, view, only)
        undecided = {k for k in suspects if k[0] not in positions}
        confirmed = [again[k] for k in suspects if k in again]
        for k in suspects:
            if k not in again and k not in undecided:
                log.info("reconcile: %s %s settled on the second look (%s)", k[0], k[1], suspects[k].detail)
        return confirmed, undecided

    async def run(self, client: Any, state: ReconcileState | None = None,
                  flatten: Collection[str] = ()) -> ReconcileReport:
        """One consistent pass: positions first, then the trades (trades started since are busy),
        then a settled second look at whatever disagrees (``confirm``)."""
        state = (state or ReconcileState()).model_copy(deep=True)
        report = ReconcileReport(at_ms=int(time.time() * 1000), state=state)
        positions_read_ms = report.at_ms
        positions, balances = await self.read_positions(report)
        view = await self.read_trades(client, positions_read_ms)
        report.trades_checked = len(view.running)
        await self._release_stale_leases(client, report, view.running)
        confirmed_d, undecided = await self.confirm(client, self.compare(positions, view), positions_read_ms)

        found: list[tuple[Discrepancy, str]] = [(d, incident_key(d)) for d in confirmed_d]
        found += await self._check_orders(report, positions)

        seen: set[str] = set()
        for venue, sym in undecided:  # not judged this pass: their open incidents stay open
            seen |= {f"orphan:{venue}:{sym}", f"position_mismatch:{venue}:{sym}"}
        for d, key in found:
            seen.add(key)
            d.incident_id, d.new = await asyncio.to_thread(
                self.ledger.record_incident, key, d.kind, d.detail, venue=d.venue, symbol=d.symbol, qty=d.qty
            )
            report.discrepancies.append(d)
            if d.new:
                kind = {"orphan": "orphan_found", "position_mismatch": "position_mismatch"}.get(d.kind, "order_mismatch")
                await self._alert(report, kind, d.detail, "critical")

        confirmed = set(flatten)
        for d, key in found:
            if d.kind == "orphan" and key in confirmed and d.qty:
                res = await self._flatten(d)
                d.detail += f"; flatten: {res.summary()}"
                if res.flat:
                    report.flattened.append(key)
                    seen.discard(key)
                    await asyncio.to_thread(self.ledger.resolve_incident, key, "flattened by operator")
                else:
                    await self._alert(report, "flatten_incomplete",
                                      f"{d.venue} {d.symbol}: orphan not flat after this run's flatten "
                                      f"({res.summary()}); run `hedgeflow reconcile --flatten-orphans` again",
                                      "critical")

        for inc in await asyncio.to_thread(self.ledger.open_incidents):
            if inc.kind in RECONCILE_KINDS and inc.key not in seen and inc.venue in positions:
                if await asyncio.to_thread(self.ledger.resolve_incident, inc.key, "cleared: not seen by reconciliation"):
                    report.resolved += 1

        await self._operational_alerts(report, state, balances)
        m.ORPHAN_POSITIONS.set(sum(1 for d in report.discrepancies if d.kind == "orphan") - len(report.flattened))
        m.RECONCILE_LAST.set(time.time())
        await asyncio.to_thread(m.refresh_from_ledger, self.ledger)
        report.open_incidents = await asyncio.to_thread(self.ledger.open_incident_count)
        report.state = state
        return report

    async def _check_orders(self, report: ReconcileReport, positions: dict[str, list[Position]]
                            ) -> list[tuple[Discrepancy, str]]:
        rc = self.settings.reconcile
        if rc.max_orders == 0:
            return []
        since = report.at_ms - int(rc.order_lookback_s * 1000)
        orders = await asyncio.to_thread(self.ledger.orders, None, since, rc.max_orders)
        finished = {t.trade_id for t in await asyncio.to_thread(self.ledger.trades, TERMINAL_STATES, 5000)}
        out = []
        for o in orders:
            if o.venue not in positions or (o.trade_id is not None and o.trade_id not in finished):
                continue
            report.orders_checked += 1
            try:
                got = await self.pool.get(o.venue).get_order(o.symbol, o.client_order_id)
            except VenueError:
                continue
            if got is None:
                d = Discrepancy(kind="order_missing", venue=o.venue, symbol=o.symbol,
                                detail=f"ledger order {o.client_order_id} ({o.side} {o.filled_qty}) unknown to {o.venue}")
            elif got.filled_qty != o.filled_qty or str(got.status) != o.status:
                d = Discrepancy(kind="order_mismatch", venue=o.venue, symbol=o.symbol,
                                detail=f"order {o.client_order_id}: ledger {o.status} {o.filled_qty}, "
                                       f"{o.venue} {got.status} {got.filled_qty}")
            else:
                continue
            out.append((d, incident_key(d, o.client_order_id)))
        return out

    async def _flatten(self, d: Discrepancy) -> FlattenResult:
        """Reduce-only market orders until the venue is flat. Attempt n of incident #i uses the
        client id ``client_order_id("orphan-<venue>-<symbol>-<i>", leg, "f<n>")``; an attempt id
        the venue already knows (an earlier run, a partly filled order) is never sent again, the
        next n is. At most ``flatten_sends`` new orders per run (and ``MAX_FLATTEN_STEPS`` ids
        per incident in all); the remainder is re-read from the venue before every order."""
        from activities.ledger import order_row

        assert d.qty is not None and d.incident_id is not None
        gw = self.pool.get(d.venue)
        base = f"orphan-{d.venue}-{d.symbol}-{d.incident_id}"
        leg = "long" if d.qty > 0 else "short"  # reduce-only: the sign cannot flip
        res = FlattenResult(left=d.qty)
        try:
            for n in range(1, MAX_FLATTEN_STEPS + 1):
                res.left = sum((p.qty for p in await gw.positions([d.symbol]) if p.symbol == d.symbol), ZERO)
                if abs(res.left) <= TOLERANCE:
                    res.flat = True
                    break
                if res.sent >= self.flatten_sends:
                    break
                cid = client_order_id(base, leg, f"f{n}")
                prior = await gw.get_order(d.symbol, cid)
                if prior is not None:  # attempt n was made before: never twice
                    res.earlier.append(cid)
                    continue
                side = Side.SELL if res.left > 0 else Side.BUY
                log.warning("flattening orphan %s %s on %s: %s %s (attempt %d, cid %s)",
                            res.left, d.symbol, d.venue, side, abs(res.left), n, cid)
                order = await gw.place_market_order(d.symbol, side, abs(res.left), cid, reduce_only=True,
                                                    lookup_first=True)
                res.sent += 1
                res.cids.append(cid)
                await asyncio.to_thread(self.ledger.upsert_orders, [order_row(order, None, None)])
        except VenueError as exc:
            log.error("flatten %s on %s failed: %s", d.symbol, d.venue, exc)
            res.error = f"{exc.type_name}: {exc}"
        return res

    async def _operational_alerts(self, report: ReconcileReport, state: ReconcileState,
                                  balances: dict[str, Decimal]) -> None:
        a = self.settings.alerts
        now = datetime.fromtimestamp(report.at_ms / 1000, UTC)
        for venue, why in report.venues_down.items():
            if venue not in state.unhealthy:
                state.unhealthy.append(venue)
                await self._alert(report, "venue_unhealthy", f"{venue} unreachable during reconciliation ({why})",
                                  "critical")
        state.unhealthy = [v for v in state.unhealthy if v in report.venues_down]

        today = now.date().isoformat()
        if state.day != today:
            if state.day is not None:
                await self._daily_summary(report, state.day)
            state.day, state.balance_alerted = today, []
            state.day_start_balances = dict(balances)
        for venue, bal in balances.items():
            start = state.day_start_balances.setdefault(venue, bal)
            if start > 0 and venue not in state.balance_alerted and (start - bal) / start >= a.balance_drop_pct:
                state.balance_alerted.append(venue)
                await self._alert(report, "balance_drop",
                                  f"{venue} balance {bal:.2f} is {(start - bal) / start:.1%} below today's start "
                                  f"{start:.2f}", "warning")

        last_open = await asyncio.to_thread(self.ledger.last_trade_open_ms)
        quiet_ms = a.no_trade_hours * 3600 * 1000
        ref = last_open or state.no_trade_alert_ms or report.at_ms
        if last_open is None and not state.no_trade_alert_ms:
            state.no_trade_alert_ms = report.at_ms  # start the clock on the first pass
        elif report.at_ms - max(ref, state.no_trade_alert_ms) >= quiet_ms:
            state.no_trade_alert_ms = report.at_ms
            await self._alert(report, "no_trade", f"no trade opened for {a.no_trade_hours:g} h", "warning")

        for venue in self.pool.names:
            req = sum(s.value for s in _samples(m.VENUE_REQUESTS, "venue", venue))
            err = sum(s.value for s in _samples(m.VENUE_ERRORS, "venue", venue))
            prev_req, prev_err = self._last_counts.get(venue, (0.0, 0.0))
            self._last_counts[venue] = (req, err)
            d_req, d_err = req - prev_req, err - prev_err
            if d_req >= a.min_venue_requests and d_err / d_req > a.venue_error_rate:
                await self._alert(report, "venue_error_rate",
                                  f"{venue}: {d_err:.0f} of {d_req:.0f} calls failed since the last check "
                                  f"({d_err / d_req:.0%} > {a.venue_error_rate:.0%})", "warning")

    async def _daily_summary(self, report: ReconcileReport, day: str) -> None:
        totals = await asyncio.to_thread(self.ledger.totals)
        by_state = await asyncio.to_thread(self.ledger.trades_by_state)
        await self._alert(
            report, "daily_summary",
            f"{day}: trades {sum(by_state.values())} ({', '.join(f'{k} {v}' for k, v in sorted(by_state.items()))}); "
            f"realised PnL {totals['realized_pnl_usd']:.2f} USD, funding {totals['funding_usd']:.2f}, "
            f"fees {totals['fees_usd']:.2f}; open incidents {len(await asyncio.to_thread(self.ledger.open_incidents))}",
            "info",
        )


def _samples(metric: Any, label: str, value: str) -> list[Any]:
    return [s for fam in metric.collect() for s in fam.samples
            if s.name.endswith("_total") and s.labels.get(label) == value]


class ReconcileActivities:
    def __init__(self, settings: Settings, pool: GatewayPool, trades: TradeDirectory) -> None:
        self.settings = settings
        self.pool = pool
        self.trades = trades  # control.trades, injected by the worker
        self._reconciler: Reconciler | None = None

    @activity.defn(name="reconcile")
    async def reconcile(self, req: ReconcileRequest) -> ReconcileReport:
        if self._reconciler is None:
            ledger = await asyncio.to_thread(Ledger.for_settings, self.settings)
            self._reconciler = Reconciler(self.settings, self.pool, ledger, Notifier.from_settings(self.settings),
                                          self.trades)
        try:
            return await self._reconciler.run(activity.client(), req.state)
        except VenueError as exc:
            raise ApplicationError(f"{exc.type_name}: {exc}", type=exc.type_name) from None

    def all(self) -> list:
        return [self.reconcile]
