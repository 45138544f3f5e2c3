"""``hedgeflow bench``: leg skew, open-to-hedged latency, orphan exposure, a plain asyncio +
ccxt baseline, the scanner cycle and a 200-trade concurrency run — all measured in one run.

Everything is self-contained: a Temporal dev server on free ports with a temporary state dir,
simulated venues (``python -m venues.sim`` subprocesses) and one worker subprocess
(``python -m hedgeflow worker``). Nothing touches a running ``hedgeflow up``.

Definitions (all loopback, the same simulators for hedgeflow and the baseline):

* **leg skew** — ``|arrived_ns(long open order) − arrived_ns(short open order)|`` as stamped by
  the venues when each request arrived (``/_sim/state``), per open.
* **open-to-hedged** — from the decision (wall clock just before ``open_trade`` is called) to
  the workflow time at which both fills were verified and the hedge gap checked
  (``TradeStatus.hedged_at``). Includes the pre-trade venue checks, leverage, both orders and
  their verification. The baseline does the same venue calls and stops its clock when both
  fills are verified.
* **orphan exposure** — one venue rejects the next order (``reject_orders: 1``), so one leg
  fills alone: ``arrived_ns(lone leg's last close order) − arrived_ns(lone leg's open order)``,
  i.e. venue time from the lone fill to flat. The workflow's own figure
  (``TradeStatus.orphan_exposure_ms``: workflow time from both results known to flat) is
  reported beside it as ``workflow_p50``/``workflow_p99``.
* **concurrency** — N trades holding on one worker at ``monitor_interval_s``; worker CPU from
  ``/proc/PID/stat`` (utime+stime delta over the window, % of one core), RSS from
  ``/proc/PID/status``, history events of a sample of runs.

The :class:`Lab` (dev server + sims + worker subprocess) is shared with ``hedgeflow chaos``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import aiohttp

from venues.sim.process import SimProcess

ROOT = Path(__file__).resolve().parents[1]
BINANCE_FAPI = "https://fapi.binance.com"
DEMO_KEY = "hedgeflow-demo-key"
DEMO_SECRET = "hedgeflow-demo-secret"

# targets of the issue (loopback, 2-core machine)
TARGETS = {
    "leg_skew_ms_p99": 20.0,
    "open_to_hedged_ms_p99": 400.0,
    "open_to_hedged_ratio_p99": 2.0,
    "orphan_exposure_ms_p99": 500.0,
    "concurrency_cpu_pct": 50.0,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = max(1, math.ceil(q / 100 * len(xs)))
    return float(xs[min(k, len(xs)) - 1])


def summary(values: Sequence[float], **extra: Any) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"p50": None, "p99": None, "n": len(vals)}
    if vals:
        out.update(p50=round(percentile(vals, 50), 3), p99=round(percentile(vals, 99), 3),
                   mean=round(sum(vals) / len(vals), 3), max=round(max(vals), 3))
    out.update(extra)
    return out


def iso_ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


# ---------------------------------------------------------------------------------- lab
def lab_sim(name: str, port: int, workdir: Path, symbols: int, extra: Sequence[str] = ()) -> SimProcess:
    """A simulator child for the lab: demo credentials, no weight limit worth hitting."""
    return SimProcess(
        name, port, workdir / f"{name}.sqlite", "--symbols", str(symbols), "--weight-limit", "100000000",
        "--api-key", DEMO_KEY, "--api-secret", DEMO_SECRET, *extra,
    )


class Lab:
    """A Temporal dev server, simulated venues and one worker subprocess, all private."""

    def __init__(
        self,
        *,
        venues: Sequence[str] = ("sim-a", "sim-b"),
        symbols: int = 40,
        venue_rps: float = 1000.0,
        venue_timeout_ms: int = 10_000,
        persistent_server: bool = False,
        sim_args: Sequence[str] = (),
        trade: dict[str, Any] | None = None,
        workdir: Path | None = None,
        keep: bool = False,
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hedgeflow-lab-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.venue_names = list(venues)
        self.symbols = symbols
        self.venue_rps = venue_rps
        self.venue_timeout_ms = venue_timeout_ms
        self.persistent_server = persistent_server
        self.sim_args = list(sim_args)
        self.trade = {"monitor_interval_s": 10, "verify_timeout_s": 5, "close_retry_max_s": 2,
                      "exit_spread_bps": -1000000, **(trade or {})}
        self.task_queue = "hedgeflow-lab"
        self.sims: dict[str, SimProcess] = {}
        self.server = None
        self.client = None
        self.settings = None
        self.worker: subprocess.Popen | None = None
        self.worker_log = self.workdir / "worker.log"
        self.worker_starts = 0
        self._http: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> Lab:
        from workers.client import connect
        from workers.devserver import DevServer

        for name in self.venue_names:
            self.sims[name] = lab_sim(name, free_port(), self.workdir, self.symbols, self.sim_args)
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in self.sims.values()))
        port, ui_port = free_port(), free_port()
        self.server = DevServer(
            port=port, ui_port=ui_port, headless=True,
            db_file=self.workdir / "temporal.sqlite" if self.persistent_server else None,
            log_file=self.workdir / "devserver.log",
        )
        await self.server.astart(timeout_s=90)
        self.settings = self._settings()
        self.client = await connect(self.server.address, "default")
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self.start_worker()
        return self

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_worker()
        if self._http is not None:
            await self._http.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.astop(timeout_s=10)
        for s in self.sims.values():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(s.stop)
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self) -> Lab:
        try:
            return await self.start()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.keep = True  # logs of a failed run stay for diagnosis
        await self.close()

    def venue_json(self) -> str:
        return json.dumps([
            {"name": s.name, "kind": "sim", "base_url": s.url, "requests_per_second": self.venue_rps,
             "timeout_ms": self.venue_timeout_ms}
            for s in self.sims.values()
        ])

    def _settings(self):
        from config import load_settings

        env = {"HEDGEFLOW__VENUES": self.venue_json(), "HEDGEFLOW__METRICS_PORT": "0",
               "HEDGEFLOW__STATE_DIR": str(self.workdir),
               "HEDGEFLOW__TEMPORAL__TASK_QUEUE": self.task_queue,
               "HEDGEFLOW__TEMPORAL__ADDRESS": self.server.address}
        for k, v in self.trade.items():
            env[f"HEDGEFLOW__TRADE__{k.upper()}"] = str(v)
        return load_settings(environ=env)

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
        env.update(
            TEMPORAL_ADDRESS=self.server.address,
            TEMPORAL_NAMESPACE="default",
            HEDGEFLOW__VENUES=self.venue_json(),
            HEDGEFLOW__METRICS_PORT="0",
            HEDGEFLOW__STATE_DIR=str(self.workdir),
            HEDGEFLOW__TEMPORAL__TASK_QUEUE=self.task_queue,
            PYTHONUNBUFFERED="1",
        )
        return env

    async def start_worker(self, timeout: float = 90) -> subprocess.Popen:
        offset = self.worker_log.stat().st_size if self.worker_log.exists() else 0
        self.worker = self._spawn_worker()
        self.worker_starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.worker_log.open("rb") as f:
                f.seek(offset)
                if b"worker ready" in f.read():
                    return self.worker
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited with {self.worker.returncode}:\n{self.worker_log_tail()}")
            await asyncio.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout:.0f}s:\n{self.worker_log_tail()}")

    def _spawn_worker(self) -> subprocess.Popen:
        with self.worker_log.open("ab") as logf:
            return subprocess.Popen(
                [sys.executable, "-m", "hedgeflow", "worker", "--graceful-timeout", "2"],
                cwd=ROOT, env=self.worker_env(), stdout=logf, stderr=subprocess.STDOUT,
            )

    def worker_log_tail(self, n: int = 4000) -> str:
        try:
            return self.worker_log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait(10)

    async def stop_worker(self) -> None:
        w = self.worker
        if w is None or w.poll() is not None:
            return
        w.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(w.wait, 15)
        except subprocess.TimeoutExpired:
            w.kill()
            await asyncio.to_thread(w.wait, 5)

    async def restart_server(self, down_s: float = 1.0) -> None:
        from workers.devserver import wait_port_free

        await self.server.astop(timeout_s=10)
        await asyncio.to_thread(wait_port_free, self.server.port, self.server.ip, 10)
        await asyncio.sleep(down_s)
        await self.server.astart(timeout_s=90)

    # ------------------------------------------------------------------ venue admin
    async def admin(self, venue: str, method: str, path: str, body: Any = None) -> Any:
        assert self._http is not None
        url = self.sims[venue].url + path
        async with self._http.request(method, url, json=body) as r:
            return await r.json(content_type=None)

    async def state(self, venue: str) -> dict[str, Any]:
        return await self.admin(venue, "GET", "/_sim/state")

    async def states(self) -> dict[str, dict[str, Any]]:
        names = list(self.sims)
        got = await asyncio.gather(*(self.state(n) for n in names))
        return dict(zip(names, got, strict=True))

    async def faults(self, venue: str, **faults: Any) -> None:
        await self.admin(venue, "POST", "/_sim/faults", faults)

    async def clear_faults(self) -> None:
        await asyncio.gather(*(self.faults(n) for n in self.sims))

    async def symbol_list(self) -> list[str]:
        """Synthetic symbols (S001/USDT:USDT, ...) that every venue lists."""
        per = []
        for n in self.sims:
            rows = await self.admin(n, "GET", "/_sim/market")
            per.append({r["symbol"] for r in rows})
        common = set.intersection(*per)
        return sorted(s for s in common if s.startswith("S"))

    # ------------------------------------------------------------------ trades
    async def open(self, symbol: str, long_venue: str, short_venue: str, notional: Decimal, stamp: str,
                   **hold: Any) -> str:
        from hedgeflow.trades import open_trade

        return await open_trade(self.client, self.settings, symbol, long_venue, short_venue, notional,
                                stamp=stamp, opened_by="bench", check_halt=False,
                                hold_overrides=hold or None)

    async def status(self, wf_id: str):
        from workflows.models import TradeStatus

        return await self.client.get_workflow_handle(wf_id).query("status", result_type=TradeStatus)

    async def wait_state(self, wf_id: str, states: Iterable[str], timeout: float = 60, poll: float = 0.05):
        want = set(states)
        deadline = time.monotonic() + timeout
        last = None
        err: Exception | None = None
        while time.monotonic() < deadline:
            try:
                last = await self.status(wf_id)
                if last.state in want:
                    return last
            except Exception as exc:  # noqa: BLE001 - server or worker still coming back
                err = exc
            await asyncio.sleep(poll)
        alive = self.worker is not None and self.worker.poll() is None
        raise RuntimeError(
            f"{wf_id}: not in {sorted(want)} after {timeout:.0f}s (last state {last and last.state}, "
            f"last query error {err!r}, worker {'alive' if alive else 'exited'}); lab kept in {self.workdir}"
        )

    async def signal_close(self, wf_id: str, reason: str = "bench", emergency: bool = False) -> None:
        from workflows.models import CloseRequest

        await self.client.get_workflow_handle(wf_id).signal(
            "emergency_close" if emergency else "close", CloseRequest(reason=reason))

    async def result(self, wf_id: str, timeout: float = 120):
        from workflows.models import TradeStatus

        handle = self.client.get_workflow_handle(wf_id, result_type=TradeStatus)
        return await asyncio.wait_for(handle.result(), timeout)


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def arrivals(states: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(venue, clientOrderId) → orders with that id, from /_sim/state of every venue."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for venue, st in states.items():
        for o in st.get("orders", []):
            out.setdefault((venue, o["clientOrderId"]), []).append(o)
    return out


def _arrived(idx: dict, venue: str, cid: str) -> int | None:
    got = idx.get((venue, cid))
    return int(got[0]["arrived_ns"]) if got else None


# ---------------------------------------------------------------------------------- baseline
def make_ccxt(base_url: str, rps: float = 1000.0):
    """Unmodified ccxt binanceusdm pointed at a simulator (the baseline's only venue client)."""
    import ccxt.async_support as ccxt_async

    ex = ccxt_async.binanceusdm({
        "apiKey": DEMO_KEY, "secret": DEMO_SECRET, "enableRateLimit": True, "rateLimit": 1000.0 / rps,
        "options": {"fetchMarkets": ["linear"], "fetchCurrencies": False, "adjustForTimeDifference": False,
                    "warnOnFetchOpenOrdersWithoutSymbol": False},
    })
    for k, v in list(ex.urls["api"].items()):
        if isinstance(v, str) and v.startswith(BINANCE_FAPI):
            ex.urls["api"][k] = base_url.rstrip("/") + v[len(BINANCE_FAPI):]
    linear = ex.exceptions.get("linear", {})
    ex.exceptions["exact"] = {**ex.exceptions["exact"], **linear.get("exact", {})}
    ex.exceptions["broad"] = {**ex.exceptions["broad"], **linear.get("broad", {})}
    return ex


class Baseline:
    """The same open/close as a TradeWorkflow, in plain asyncio + ccxt, no Temporal: pre-trade
    reads on both venues, leverage, both legs with ``asyncio.gather``, verify the fills; on a
    lone fill, close that leg reduce-only."""

    def __init__(self, lab: Lab, long_venue: str, short_venue: str, leverage: int = 3) -> None:
        self.lab = lab
        self.venues = (long_venue, short_venue)
        self.leverage = leverage
        self.ex: dict[str, Any] = {}

    async def __aenter__(self) -> Baseline:
        for v in self.venues:
            self.ex[v] = make_ccxt(self.lab.sims[v].url, self.lab.venue_rps)
        await asyncio.gather(*(ex.load_markets() for ex in self.ex.values()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(ex.close() for ex in self.ex.values()), return_exceptions=True)

    async def _check(self, venue: str, symbol: str) -> Decimal:
        ex = self.ex[venue]
        _bal, _pos, rates, _mode = await asyncio.gather(
            ex.fetch_balance(), ex.fetch_positions([symbol]), ex.fetch_funding_rates(), ex.fetch_position_mode(symbol)
        )
        return Decimal(str(rates[symbol]["markPrice"]))

    def _qty(self, venue: str, symbol: str, notional: Decimal, mark: Decimal) -> Decimal:
        m = self.ex[venue].market(symbol)
        step = Decimal(str(m["precision"]["amount"]))
        return (notional / mark / step).to_integral_value(ROUND_DOWN) * step

    async def _verified(self, venue: str, symbol: str, order: dict[str, Any]) -> dict[str, Any]:
        ex = self.ex[venue]
        while order.get("status") != "closed":
            await asyncio.sleep(0.01)
            order = await ex.fetch_order(order["id"], symbol)
        return order

    async def open_close(self, symbol: str, notional: Decimal, tag: str) -> dict[str, Any]:
        """One open (timed to both fills verified) and its close. Returns timings and ids."""
        lv, sv = self.venues
        t0 = time.time_ns()
        lmark, smark = await asyncio.gather(self._check(lv, symbol), self._check(sv, symbol))
        qty = min(self._qty(lv, symbol, notional, lmark), self._qty(sv, symbol, notional, smark))
        await asyncio.gather(*(self.ex[v].set_leverage(self.leverage, symbol) for v in self.venues))
        lcid, scid = f"{tag}L", f"{tag}S"
        lo, so = await asyncio.gather(
            self.ex[lv].create_order(symbol, "market", "buy", float(qty), None, {"newClientOrderId": lcid}),
            self.ex[sv].create_order(symbol, "market", "sell", float(qty), None, {"newClientOrderId": scid}),
        )
        lo, so = await asyncio.gather(self._verified(lv, symbol, lo), self._verified(sv, symbol, so))
        t1 = time.time_ns()
        await asyncio.gather(
            self.ex[lv].create_order(symbol, "market", "sell", lo["filled"], None,
                                     {"reduceOnly": True, "newClientOrderId": f"{tag}LC"}),
            self.ex[sv].create_order(symbol, "market", "buy", so["filled"], None,
                                     {"reduceOnly": True, "newClientOrderId": f"{tag}SC"}),
        )
        return {"t0_ns": t0, "hedged_ns": t1, "long_cid": lcid, "short_cid": scid}

    async def orphan(self, symbol: str, notional: Decimal, tag: str) -> dict[str, Any]:
        """The short venue rejects its order: the lone long leg is closed reduce-only and
        checked flat."""
        lv, sv = self.venues
        await self.lab.faults(sv, reject_orders=1)
        lmark, smark = await asyncio.gather(self._check(lv, symbol), self._check(sv, symbol))
        qty = min(self._qty(lv, symbol, notional, lmark), self._qty(sv, symbol, notional, smark))
        lcid, scid = f"{tag}L", f"{tag}S"
        lo, so = await asyncio.gather(
            self.ex[lv].create_order(symbol, "market", "buy", float(qty), None, {"newClientOrderId": lcid}),
            self.ex[sv].create_order(symbol, "market", "sell", float(qty), None, {"newClientOrderId": scid}),
            return_exceptions=True,
        )
        if isinstance(lo, BaseException) or not isinstance(so, BaseException):
            raise RuntimeError(f"baseline orphan: unexpected outcome long={lo!r} short={so!r}")
        lo = await self._verified(lv, symbol, lo)
        ccid = f"{tag}LC"
        await self.ex[lv].create_order(symbol, "market", "sell", lo["filled"], None,
                                       {"reduceOnly": True, "newClientOrderId": ccid})
        pos = await self.ex[lv].fetch_positions([symbol])
        if any(float(p.get("contracts") or 0) for p in pos):
            raise RuntimeError(f"baseline orphan: {symbol} not flat on {lv}")
        return {"long_cid": lcid, "close_cid": ccid}


# ---------------------------------------------------------------------------------- bench
@dataclass
class BenchConfig:
    opens: int = 200
    orphans: int = 50
    concurrent: int = 200
    window_s: float = 60.0
    monitor_interval_s: float = 10.0
    notional: Decimal = Decimal("200")
    venue_rps: float = 1000.0
    scan: bool = True
    scan_symbols: int = 300
    scan_venues: int = 3
    open_batch: int = 20
    history_sample: int = 10

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(opens=30, orphans=10, concurrent=50, window_s=20.0)

    @classmethod
    def tiny(cls) -> BenchConfig:
        """Smoke-test size (tests/test_bench.py)."""
        return cls(opens=3, orphans=2, concurrent=3, window_s=3.0, monitor_interval_s=1.0, scan=False,
                   history_sample=2)


def _progress(what: str, i: int, n: int, every: int, t0: float) -> None:
    if i == n or i % every == 0:
        log(f"  {what}: {i}/{n} ({time.monotonic() - t0:.0f}s)")


async def measure_opens(lab: Lab, symbols: list[str], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Sequential hedgeflow opens: decision → hedged; each closed before the next starts."""
    lv, sv = lab.venue_names[:2]
    out = []
    t_start = time.monotonic()
    every = max(1, len(symbols) // 10)
    for i, sym in enumerate(symbols, 1):
        t0 = time.time_ns()
        wf = await lab.open(sym, lv, sv, cfg.notional, stamp=f"bo{i}x{t0}")
        st = await lab.wait_state(wf, ("holding", "closed", "aborted"), timeout=60, poll=0.02)
        if st.state != "holding" or not st.hedged_at:
            raise RuntimeError(f"bench open {wf} ended {st.state}: {st.abort_reason}")
        await lab.signal_close(wf)
        final = await lab.result(wf, timeout=60)
        if final.state != "closed":
            raise RuntimeError(f"bench trade {wf} ended {final.state}")
        out.append({
            "id": wf, "t0_ns": t0, "hedged_ms": iso_ms(st.hedged_at), "open_ms": st.open_ms,
            "long_cid": st.legs[0].client_order_ids[0], "short_cid": st.legs[1].client_order_ids[0],
        })
        _progress("hedgeflow opens", i, len(symbols), every, t_start)
    return out


async def measure_orphans(lab: Lab, symbols: list[str], cfg: BenchConfig) -> list[dict[str, Any]]:
    lv, sv = lab.venue_names[:2]
    out = []
    t_start = time.monotonic()
    every = max(1, len(symbols) // 5)
    for i, sym in enumerate(symbols, 1):
        await lab.faults(sv, reject_orders=1)
        wf = await lab.open(sym, lv, sv, cfg.notional, stamp=f"bx{i}x{time.time_ns()}")
        final = await lab.result(wf, timeout=90)
        await lab.clear_faults()
        if final.state != "aborted":
            raise RuntimeError(f"orphan trade {wf} ended {final.state}, expected aborted")
        long_leg = final.legs[0]
        out.append({"id": wf, "venue": lv, "open_cid": long_leg.client_order_ids[0],
                    "close_cids": long_leg.client_order_ids[1:], "workflow_ms": final.orphan_exposure_ms})
        _progress("hedgeflow orphans", i, len(symbols), every, t_start)
    return out


async def measure_baseline(lab: Lab, symbols: list[str], orphan_symbols: list[str],
                           cfg: BenchConfig) -> tuple[list[dict], list[dict]]:
    lv, sv = lab.venue_names[:2]
    opens, orphans = [], []
    t_start = time.monotonic()
    async with Baseline(lab, lv, sv, leverage=lab.settings.limits.leverage) as bl:
        run = f"{time.time_ns() % 10**8}"
        for i, sym in enumerate(symbols, 1):
            opens.append(await bl.open_close(sym, cfg.notional, f"bl{run}n{i}"))
            _progress("baseline opens", i, len(symbols), max(1, len(symbols) // 5), t_start)
        for i, sym in enumerate(orphan_symbols, 1):
            r = await bl.orphan(sym, cfg.notional, f"bo{run}n{i}")
            r["venue"] = lv
            orphans.append(r)
        await lab.clear_faults()
    return opens, orphans


def skew_and_latency(rows: list[dict], idx: dict, lv: str, sv: str, hedged_key: str) -> tuple[list, list]:
    skews, lats = [], []
    for r in rows:
        a, b = _arrived(idx, lv, r["long_cid"]), _arrived(idx, sv, r["short_cid"])
        if a is not None and b is not None:
            skews.append(abs(a - b) / 1e6)
        if hedged_key == "hedged_ms":
            lats.append(r["hedged_ms"] - r["t0_ns"] / 1e6)
        else:
            lats.append((r["hedged_ns"] - r["t0_ns"]) / 1e6)
    return skews, lats


def orphan_times(rows: list[dict], idx: dict) -> list[float]:
    out = []
    for r in rows:
        opened = _arrived(idx, r["venue"], r["open_cid"] if "open_cid" in r else r["long_cid"])
        closes = r.get("close_cids") or [r.get("close_cid")]
        ends = [x for x in (_arrived(idx, r["venue"], c) for c in closes if c) if x is not None]
        if opened is not None and ends:
            out.append((max(ends) - opened) / 1e6)
    return out


async def measure_concurrency(lab: Lab, symbols: list[str], cfg: BenchConfig) -> dict[str, Any]:
    lv, sv = lab.venue_names[:2]
    ids: list[str] = []
    t_start = time.monotonic()
    for k in range(0, len(symbols), cfg.open_batch):
        chunk = symbols[k:k + cfg.open_batch]
        got = await asyncio.gather(*(
            lab.open(sym, lv, sv, cfg.notional, stamp=f"bc{k + j}x{time.time_ns()}",
                     monitor_interval_s=cfg.monitor_interval_s)
            for j, sym in enumerate(chunk)
        ))
        ids += got
        await asyncio.gather(*(lab.wait_state(w, ("holding",), timeout=120, poll=0.25) for w in got))
        log(f"  concurrency: {len(ids)}/{len(symbols)} trades holding ({time.monotonic() - t_start:.0f}s)")
    pid = lab.worker.pid
    server_pid = lab.server.pid
    await asyncio.sleep(min(5.0, cfg.monitor_interval_s))  # let the opening burst settle
    sample = ids[: cfg.history_sample]
    h0 = await asyncio.gather(*(_history_len(lab, w) for w in sample))
    c0, s0, w0 = proc_cpu_seconds(pid), proc_cpu_seconds(server_pid), time.monotonic()
    log(f"  concurrency: measuring {len(ids)} holding trades for {cfg.window_s:.0f}s "
        f"(monitor every {cfg.monitor_interval_s:g}s)")
    await asyncio.sleep(cfg.window_s)
    c1, s1, w1 = proc_cpu_seconds(pid), proc_cpu_seconds(server_pid), time.monotonic()
    rss, hwm = proc_rss_mb(pid)
    h1 = await asyncio.gather(*(_history_len(lab, w) for w in sample))
    runs = [(await lab.status(w)).runs for w in sample]
    elapsed = w1 - w0
    still = sum(1 for st in await asyncio.gather(*(lab.status(w) for w in ids)) if st.state == "holding")
    # close everything
    await asyncio.gather(*(lab.signal_close(w) for w in ids))
    finals = await asyncio.gather(*(lab.result(w, timeout=300) for w in ids), return_exceptions=True)
    closed = sum(1 for f in finals if not isinstance(f, BaseException) and f.state == "closed")
    log(f"  concurrency: closed {closed}/{len(ids)}")
    per_min = [(b - a) / elapsed * 60 for a, b in zip(h0, h1, strict=True)]
    return {
        "trades": len(ids),
        "holding_during_window": still,
        "monitor_interval_s": cfg.monitor_interval_s,
        "window_s": round(elapsed, 1),
        "worker_cpu_pct": round((c1 - c0) / elapsed * 100, 1),
        "server_cpu_pct": round((s1 - s0) / elapsed * 100, 1),
        "worker_rss_mb": round(rss, 1),
        "worker_peak_rss_mb": round(hwm, 1),
        "history_events_per_run": summary(h1),
        "history_events_per_min": round(sum(per_min) / len(per_min), 1) if per_min else None,
        "runs_per_trade": max(runs) if runs else None,
        "closed_after": closed,
    }


async def _history_len(lab: Lab, wf_id: str) -> int:
    hist = await lab.client.get_workflow_handle(wf_id).fetch_history()
    return len(hist.events)


def measure_scan(cfg: BenchConfig) -> dict[str, Any]:
    try:
        from hedgeflow.bench_scan import bench_scan_cycle
    except ImportError as exc:
        return {"available": False, "reason": f"hedgeflow.bench_scan not importable ({exc})"}
    try:
        r = bench_scan_cycle(symbols=cfg.scan_symbols, venues=cfg.scan_venues)
    except Exception as exc:  # noqa: BLE001 - report, don't lose the rest of the bench
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"available": True, "symbols": cfg.scan_symbols, "venues": cfg.scan_venues, **dict(r)}


async def run_bench(cfg: BenchConfig, *, progress: Callable[[str], None] = log) -> dict[str, Any]:
    started = time.time()
    n_sym = max(cfg.opens, cfg.orphans, cfg.concurrent) + 5
    async with Lab(symbols=n_sym + 3, venue_rps=cfg.venue_rps) as lab:
        syms = await lab.symbol_list()
        if len(syms) < max(cfg.opens, cfg.orphans, cfg.concurrent):
            raise RuntimeError(f"simulators list only {len(syms)} synthetic symbols")
        lv, sv = lab.venue_names[:2]
        progress(f"bench: lab up in {lab.workdir} (server {lab.server.address}, worker pid {lab.worker.pid})")
        # warm-up: first open loads markets, sandboxes, connections (not measured)
        await measure_opens(lab, syms[:1], cfg)
        progress(f"bench: {cfg.opens} hedgeflow opens (sequential)")
        opens = await measure_opens(lab, syms[: cfg.opens], cfg)
        progress(f"bench: {cfg.orphans} single-leg failures (reject_orders=1 on {sv})")
        orphans = await measure_orphans(lab, syms[: cfg.orphans], cfg)
        progress(f"bench: baseline (asyncio + ccxt): {cfg.opens} opens, {cfg.orphans} single-leg failures")
        b_opens, b_orphans = await measure_baseline(lab, syms[: cfg.opens], syms[: cfg.orphans], cfg)
        states = await lab.states()
        idx = arrivals(states)
        skew, lat = skew_and_latency(opens, idx, lv, sv, "hedged_ms")
        b_skew, b_lat = skew_and_latency(b_opens, idx, lv, sv, "hedged_ns")
        orph = orphan_times(orphans, idx)
        b_orph = orphan_times(b_orphans, idx)
        wf_orph = [r["workflow_ms"] for r in orphans if r["workflow_ms"] is not None]
        progress(f"bench: concurrency — {cfg.concurrent} trades holding, monitor every {cfg.monitor_interval_s:g}s")
        conc = await measure_concurrency(lab, syms[: cfg.concurrent], cfg)
        flat = all(not st["positions"] for st in (await lab.states()).values())
    scan = {"available": False, "reason": "skipped"}
    if cfg.scan:
        progress(f"bench: scanner cycle ({cfg.scan_symbols} symbols x {cfg.scan_venues} venues)")
        scan = await asyncio.to_thread(measure_scan, cfg)
    result: dict[str, Any] = {
        "leg_skew_ms": summary(skew),
        "open_to_hedged_ms": summary(lat),
        "orphan_exposure_ms": summary(orph, workflow_p50=_r(percentile(wf_orph, 50)),
                                      workflow_p99=_r(percentile(wf_orph, 99))),
        "baseline": {
            "leg_skew_ms": summary(b_skew),
            "open_to_hedged_ms": summary(b_lat),
            "orphan_exposure_ms": summary(b_orph),
        },
        "scan_cycle": scan,
        "concurrency": conc,
    }
    result["ratios"] = {
        k: {q: _ratio(result[k][q], result["baseline"][k][q]) for q in ("p50", "p99")}
        for k in ("leg_skew_ms", "open_to_hedged_ms", "orphan_exposure_ms")
    }
    result["targets"] = evaluate_targets(result)
    result["meta"] = {
        "mode": "quick" if cfg.opens < 200 else "full",
        "opens": cfg.opens, "orphans": cfg.orphans, "concurrent": cfg.concurrent,
        "notional_usd": str(cfg.notional), "venue_requests_per_second": cfg.venue_rps,
        "venues_flat_after": flat,
        "cpus": os.cpu_count(), "loadavg_at_end": list(os.getloadavg()),
        "python": sys.version.split()[0], "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 1),
    }
    return result


def _r(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    def row(name: str, value: float | None, target: float) -> dict[str, Any]:
        ok = value is not None and value <= target
        miss = None if ok or value is None else round(value - target, 2)
        return {"target": name, "value": value, "limit": target, "met": ok, "missed_by": miss}

    return [
        row("leg skew p99 ≤ 20 ms", r["leg_skew_ms"]["p99"], TARGETS["leg_skew_ms_p99"]),
        row("open-to-hedged p99 ≤ 400 ms", r["open_to_hedged_ms"]["p99"], TARGETS["open_to_hedged_ms_p99"]),
        row("open-to-hedged p99 ≤ 2× baseline", r["ratios"]["open_to_hedged_ms"]["p99"],
            TARGETS["open_to_hedged_ratio_p99"]),
        row("orphan exposure p99 ≤ 500 ms", r["orphan_exposure_ms"]["p99"], TARGETS["orphan_exposure_ms_p99"]),
        row(f"{r['concurrency']['trades']} holding trades ≤ 50 % of one core",
            r["concurrency"]["worker_cpu_pct"], TARGETS["concurrency_cpu_pct"]),
    ]


def format_table(r: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        if x is None:
            return "-"
        return f"{x:,.1f}" if isinstance(x, float) else str(x)

    lines = [
        f"{'figure':<24} {'hedgeflow p50':>13} {'p99':>9} {'n':>5}   {'baseline p50':>12} {'p99':>9}   {'ratio p99':>9}",
        "-" * 92,
    ]
    for key, label in (("leg_skew_ms", "leg skew (ms)"), ("open_to_hedged_ms", "open-to-hedged (ms)"),
                       ("orphan_exposure_ms", "orphan exposure (ms)")):
        h, b = r[key], r["baseline"][key]
        lines.append(f"{label:<24} {f(h['p50']):>13} {f(h['p99']):>9} {h['n']:>5}   {f(b['p50']):>12} "
                     f"{f(b['p99']):>9}   {f(r['ratios'][key]['p99']):>9}")
    o = r["orphan_exposure_ms"]
    lines.append(f"{'  (workflow clock)':<24} {f(o.get('workflow_p50')):>13} {f(o.get('workflow_p99')):>9}")
    c = r["concurrency"]
    lines += [
        "",
        f"concurrency: {c['trades']} trades holding, monitor every {c['monitor_interval_s']:g}s, "
        f"{c['window_s']:g}s window: worker CPU {f(c['worker_cpu_pct'])}% of one core, "
        f"RSS {f(c['worker_rss_mb'])} MB (peak {f(c['worker_peak_rss_mb'])}), "
        f"dev server CPU {f(c['server_cpu_pct'])}%",
        f"  history events per run: p50 {f(c['history_events_per_run']['p50'])}, "
        f"max {f(c['history_events_per_run'].get('max'))}; {f(c['history_events_per_min'])} events/min per trade",
    ]
    s = r["scan_cycle"]
    if s.get("available"):
        extra = {k: v for k, v in s.items() if k not in ("available", "symbols", "venues")}
        lines.append(f"scanner cycle {s['symbols']} symbols x {s['venues']} venues: "
                     + ", ".join(f"{k} {f(v) if not isinstance(v, dict) else v}" for k, v in extra.items()))
    else:
        lines.append(f"scanner cycle: not measured ({s.get('reason')})")
    lines += ["", "targets:"]
    for t in r["targets"]:
        mark = "met" if t["met"] else (f"MISSED by {t['missed_by']}" if t["missed_by"] is not None else "n/a")
        lines.append(f"  {t['target']:<42} value {f(t['value']):>8}  {mark}")
    m = r["meta"]
    lines.append(f"\n{m['mode']} run, {m['wall_s']:g}s wall, {m['cpus']} CPUs, load avg at end "
                 f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_end'])}")
    return "\n".join(lines)
