"""Application metrics (prometheus-client), served by every worker next to the Temporal SDK's.

One registry, ``REGISTRY``. Counters and histograms are per process (sum them across workers);
the ledger-backed gauges (trades by state, realised PnL, funding, fees) are read from the
ledger, so every worker reports the same books (use ``max`` across workers).

Events are counted exactly once: ``activities.ledger.record_trade`` updates them only when the
ledger row actually changes state, so a retried activity counts nothing twice.

``serve_metrics(port, host, temporal_port)`` serves one ``/metrics`` page: this registry plus
the Temporal SDK's own exporter (bound to a private port), so one scrape target has both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from domain.lifecycle import TradeState

log = logging.getLogger("hedgeflow.metrics")
REGISTRY = CollectorRegistry(auto_describe=True)
TRADE_STATES = tuple(s.value for s in TradeState)

# --- trades ---------------------------------------------------------------------------------
TRADES = Gauge("hedgeflow_trades", "Trades in the ledger by state", ["state"], registry=REGISTRY)
TRADES_OPENED = Counter("hedgeflow_trades_opened_total", "Trades opened and hedged", registry=REGISTRY)
TRADES_CLOSED = Counter("hedgeflow_trades_closed_total", "Trades closed (both venues flat)", registry=REGISTRY)
TRADES_ABORTED = Counter("hedgeflow_trades_aborted_total", "Trades aborted while opening", ["reason"],
                         registry=REGISTRY)
EMERGENCY_CLOSES = Counter("hedgeflow_emergency_closes_total", "Trades that went through an emergency close",
                           registry=REGISTRY)
LEG_SKEW = Histogram(
    "hedgeflow_leg_skew_seconds", "Time between the two opening orders' venue timestamps",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY,
)
OPEN_TO_HEDGED = Histogram(
    "hedgeflow_open_to_hedged_seconds", "From the first order sent to both legs verified and hedged",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=REGISTRY,
)
ORPHAN_EXPOSURE = Histogram(
    "hedgeflow_orphan_exposure_seconds", "Time one leg was open without its hedge (aborted opens)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=REGISTRY,
)
HEDGE_GAP = Histogram(
    "hedgeflow_hedge_gap_ratio", "|long - short| / target at the hedge check",
    buckets=(0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1), registry=REGISTRY,
)
# --- money (from the ledger: totals over finished trades) -----------------------------------
REALIZED_PNL = Gauge("hedgeflow_realized_pnl_usd", "Realised PnL of finished trades (price - fees + funding)",
                     registry=REGISTRY)
FUNDING = Gauge("hedgeflow_funding_collected_usd", "Funding collected by finished trades (signed)",
                registry=REGISTRY)
FEES = Gauge("hedgeflow_fees_usd", "Trading fees paid by finished trades", registry=REGISTRY)
OPEN_INCIDENTS = Gauge("hedgeflow_open_incidents", "Unresolved incidents (the scanner opens nothing while > 0)",
                       ["kind"], registry=REGISTRY)
ORPHAN_POSITIONS = Gauge("hedgeflow_orphan_positions", "Venue positions no running trade accounts for",
                         registry=REGISTRY)
# --- venues ---------------------------------------------------------------------------------
VENUE_REQUESTS = Counter("hedgeflow_venue_requests_total", "Venue activity calls", ["venue", "activity"],
                         registry=REGISTRY)
VENUE_ERRORS = Counter("hedgeflow_venue_errors_total", "Failed venue activity calls by error class",
                       ["venue", "error"], registry=REGISTRY)
VENUE_UP = Gauge("hedgeflow_venue_up", "1 when the last reconciliation reached the venue", ["venue"],
                 registry=REGISTRY)
RECONCILE_LAST = Gauge("hedgeflow_reconcile_last_success_timestamp_seconds",
                       "Unix time of the last completed reconciliation", registry=REGISTRY)
ALERTS = Counter("hedgeflow_alerts_total", "Alerts sent, by kind", ["kind", "severity"], registry=REGISTRY)
# --- scanner (issue 4 updates these) --------------------------------------------------------
SCANNER_CYCLE = Histogram(
    "hedgeflow_scanner_cycle_seconds", "Duration of one scanner cycle",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=REGISTRY,
)
OPPORTUNITIES = Counter("hedgeflow_opportunities_total", "Scanner opportunities by outcome/reason", ["reason"],
                        registry=REGISTRY)

for _s in TRADE_STATES:
    TRADES.labels(_s)


def refresh_from_ledger(ledger: Any) -> None:
    """Set the ledger-backed gauges from the ledger (cheap queries)."""
    by_state = ledger.trades_by_state()
    for st in set(TRADE_STATES) | set(by_state):
        TRADES.labels(st).set(by_state.get(st, 0))
    totals = ledger.totals()
    REALIZED_PNL.set(float(totals["realized_pnl_usd"]))
    FUNDING.set(float(totals["funding_usd"]))
    FEES.set(float(totals["fees_usd"]))
    kinds: dict[str, int] = {}
    for inc in ledger.open_incidents():
        kinds[inc.kind] = kinds.get(inc.kind, 0) + 1
    for kind in set(kinds) | {"orphan", "position_mismatch", "order_mismatch", "order_missing"}:
        OPEN_INCIDENTS.labels(kind).set(kinds.get(kind, 0))


def seconds(ms: int | float | Decimal | None) -> float | None:
    return None if ms is None else float(ms) / 1000.0


def metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every series name the registry exposes (with _total/_bucket/_sum/_count suffixes)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("_sum", "_count", "_created")}
    names: set[str] = set()
    for fam in registry.collect():
        names |= {fam.name + sfx for sfx in suffixes.get(fam.type, ("",))}
        names |= {s.name for s in fam.samples}
    return names


# --- serving --------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    temporal_url: str | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = generate_latest(REGISTRY)
        if self.temporal_url:
            try:
                with urllib.request.urlopen(self.temporal_url, timeout=5) as resp:
                    body += b"\n" + resp.read()
            except OSError as exc:
                body += f"# temporal sdk metrics unavailable: {type(exc).__name__}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


class MetricsServer:
    def __init__(self, port: int, host: str = "127.0.0.1", temporal_port: int | None = None) -> None:
        handler = type("Handler", (_Handler,), {
            "temporal_url": f"http://127.0.0.1:{temporal_port}/metrics" if temporal_port else None
        })
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_metrics(port: int, host: str = "127.0.0.1", temporal_port: int | None = None) -> MetricsServer:
    return MetricsServer(port, host, temporal_port)


# --- venue call instrumentation (a worker interceptor) --------------------------------------
def worker_interceptors() -> list[Any]:
    """Interceptors counting every venue activity attempt (``hedgeflow_venue_requests_total``)
    and every failed one by error class (``hedgeflow_venue_errors_total``)."""
    from temporalio.exceptions import ApplicationError
    from temporalio.worker import (
        ActivityInboundInterceptor,
        ExecuteActivityInput,
        Interceptor,
    )

    class _Inbound(ActivityInboundInterceptor):
        async def execute_activity(self, input: ExecuteActivityInput) -> Any:
            venue = getattr(input.args[0], "venue", None) if input.args else None
            if not isinstance(venue, str):
                return await super().execute_activity(input)
            from temporalio import activity

            VENUE_REQUESTS.labels(venue, activity.info().activity_type).inc()
            try:
                return await super().execute_activity(input)
            except BaseException as exc:
                if isinstance(exc, ApplicationError):
                    VENUE_ERRORS.labels(venue, exc.type or "ApplicationError").inc()
                elif not isinstance(exc, asyncio.CancelledError):
                    VENUE_ERRORS.labels(venue, type(exc).__name__).inc()
                raise

    class _Interceptor(Interceptor):
        def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
            return _Inbound(next)

    return [_Interceptor()]
