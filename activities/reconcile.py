"""Reconciliation: what the venues hold against what hedgeflow thinks it holds.

One pass (``reconcile_once``), used by the ``reconcile`` activity (``ReconcileWorkflow``, every
``reconcile.interval_s``) and by ``hedgeflow reconcile``:

* positions: each venue's positions against the sum of the running trades' legs (trades in a
  transient state — opening, verifying, hedge check, closing — and trades that cannot be
  queried are skipped for their symbol and venues). A position no trade accounts for is an
  **orphan** (e.g. a terminated workflow); a different size is a **position mismatch**;
* orders: the ledger's recent orders of finished trades against the venue's record of them
  (**order missing** / **order mismatch**);
* every finding is an incident in the ledger (one open incident per key) and an alert when it
  is new; an incident whose condition is gone resolves itself; while any is open the scanner
  opens nothing (``Ledger.open_incident_count`` / activity ``open_incidents``);
* ``flatten``: orphans whose incident keys are given are closed with reduce-only market orders
  under deterministic client ids (``orphan-<incident id>``), so a retry never sends twice;
* operational alerts: venue unhealthy, balance drop since the start of the UTC day, no trade
  for ``alerts.no_trade_hours``, venue error rate above ``alerts.venue_error_rate`` (this
  worker's calls since the last pass), and a daily summary when the UTC day changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
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


def incident_key(d: Discrepancy, cid: str | None = None) -> str:
    return f"{d.kind}:{d.venue}:{d.symbol}" + (f":{cid}" if cid else "")


class Reconciler:
    """One pass of reconciliation; keeps per-process counters for the error-rate alert."""

    def __init__(self, settings: Settings, pool: GatewayPool, ledger: Ledger, notifier: Notifier,
                 trades: TradeDirectory) -> None:
        self.settings = settings
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

    async def run(self, client: Any, state: ReconcileState | None = None,
                  flatten: Collection[str] = ()) -> ReconcileReport:
        s = self.settings
        state = (state or ReconcileState()).model_copy(deep=True)
        report = ReconcileReport(at_ms=int(time.time() * 1000), state=state)
        expected, busy, report.trades_checked = await self.trades.expected_positions(client, s.temporal.task_queue)

        positions: dict[str, list[Position]] = {}
        balances: dict[str, Decimal] = {}
        for v in s.venues:
            gw = self.pool.get(v.name)
            try:
                pos, bal = await asyncio.gather(gw.positions(None), gw.balance())
            except VenueError as exc:
                report.venues_down[v.name] = exc.type_name
                m.VENUE_UP.labels(v.name).set(0)
                continue
            positions[v.name] = pos
            balances[v.name] = bal.total
            report.venues_ok.append(v.name)
            m.VENUE_UP.labels(v.name).set(1)

        found: list[tuple[Discrepancy, str]] = []
        for venue, pos in positions.items():
            held = {p.symbol: p.qty for p in pos if p.qty != 0}
            symbols = set(held) | {sym for (vn, sym) in expected if vn == venue}
            for sym in sorted(symbols):
                if (venue, sym) in busy:
                    continue
                qty, exp = held.get(sym, ZERO), expected.get((venue, sym), ZERO)
                if abs(qty - exp) <= TOLERANCE:
                    continue
                if exp == 0:
                    d = Discrepancy(kind="orphan", venue=venue, symbol=sym, qty=qty, expected_qty=ZERO,
                                    detail=f"{venue} holds {qty} {sym} that no running trade accounts for")
                else:
                    d = Discrepancy(kind="position_mismatch", venue=venue, symbol=sym, qty=qty, expected_qty=exp,
                                    detail=f"{venue} holds {qty} {sym}; the running trades expect {exp}")
                found.append((d, incident_key(d)))
        found += await self._check_orders(report, positions)

        seen: set[str] = set()
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
                if await self._flatten(d):
                    report.flattened.append(key)
                    seen.discard(key)
                    await asyncio.to_thread(self.ledger.resolve_incident, key, "flattened by operator")

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

    async def _flatten(self, d: Discrepancy) -> bool:
        from activities.ledger import order_row

        assert d.qty is not None and d.incident_id is not None
        gw = self.pool.get(d.venue)
        side = Side.SELL if d.qty > 0 else Side.BUY
        cid = client_order_id(f"orphan-{d.venue}-{d.symbol}-{d.incident_id}", "long" if d.qty > 0 else "short", "f1")
        log.warning("flattening orphan %s %s on %s: %s %s (cid %s)", d.qty, d.symbol, d.venue, side, abs(d.qty), cid)
        try:
            order = await gw.place_market_order(d.symbol, side, abs(d.qty), cid, reduce_only=True, lookup_first=True)
            await asyncio.to_thread(self.ledger.upsert_orders, [order_row(order, None, None)])
            left = [p for p in await gw.positions([d.symbol]) if p.symbol == d.symbol and p.qty != 0]
        except VenueError as exc:
            log.error("flatten %s on %s failed: %s", d.symbol, d.venue, exc)
            return False
        return not left

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
