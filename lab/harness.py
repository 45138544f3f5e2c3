"""The :class:`Lab`: a Temporal dev server on free ports, simulated venues (``python -m
venues.sim`` children) and one worker child (``python -m hedgeflow worker``; with
``spare_workers`` more beside it, as compose runs replicas), all private to one run with a
temporary state dir. Nothing touches a running ``hedgeflow up``. Shared by
``hedgeflow bench`` (lab/bench.py) and ``hedgeflow chaos`` (lab/chaos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from config.settings import DEMO_API_KEY, DEMO_API_SECRET
from workers.proc import Child, ChildExited, ChildNotReady, free_port, wait_port_free
from workers.simproc import SimProcess

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def lab_sim(name: str, port: int, workdir: Path, symbols: int, extra: Sequence[str] = ()) -> SimProcess:
    """A simulator child for the lab: demo credentials, no weight limit worth hitting."""
    return SimProcess(
        name, port, workdir / f"{name}.sqlite", "--symbols", str(symbols), "--weight-limit", "100000000",
        "--api-key", DEMO_API_KEY, "--api-secret", DEMO_API_SECRET, *extra,
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
        worker_env_extra: dict[str, str] | None = None,
        spare_workers: int = 0,
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
        self.worker_log = self.workdir / "worker.log"
        self.worker = Child([sys.executable, "-m", "hedgeflow", "worker", "--graceful-timeout", "2"],
                            name="worker", cwd=ROOT, log_file=self.worker_log)
        #: more workers on the same task queue; :meth:`kill_worker` kills only the first, so these
        #: pick up its trades (after the sticky queue timeout and the activity heartbeat timeout)
        self.spares = [Child([sys.executable, "-m", "hedgeflow", "worker", "--graceful-timeout", "2"],
                             name=f"worker-{i + 2}", cwd=ROOT, log_file=self.workdir / f"worker-{i + 2}.log")
                       for i in range(spare_workers)]
        self.worker_starts = 0
        # extra environment of the worker (read at each start), e.g. HEDGEFLOW__ALERTS__WEBHOOK_URL
        self.worker_env_extra: dict[str, str] = dict(worker_env_extra or {})
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
        await self.ensure_spares()
        return self

    async def close(self) -> None:
        for c in self.spares:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(c.stop, 15)
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
        env.update(self.worker_env_extra)
        return env

    # ------------------------------------------------------------------ worker
    async def start_worker(self, timeout: float = 90) -> Child:
        return await self._start(self.worker, timeout)

    async def _start(self, child: Child, timeout: float = 90) -> Child:
        child.env = self.worker_env()
        child.spawn()
        self.worker_starts += 1
        try:
            return await child.await_ready(log_line="worker ready", timeout=timeout, interval=0.1)
        except ChildExited as exc:
            raise RuntimeError(f"{child.name} exited with {exc.code}:\n{child.log_tail(60)}") from None
        except ChildNotReady:
            raise RuntimeError(f"{child.name} not ready after {timeout:.0f}s:\n{child.log_tail(60)}") from None

    async def ensure_spares(self) -> None:
        """Start every spare worker that is not running (e.g. one that exited while the server was down)."""
        await asyncio.gather(*(self._start(c) for c in self.spares if not c.alive))

    def worker_log_lines(self) -> list[str]:
        """The lines of every worker's log (the first worker's, then the spares')."""
        out: list[str] = []
        for f in [self.worker_log, *(c.log_file for c in self.spares)]:
            if f is not None and Path(f).exists():
                out += Path(f).read_text(errors="replace").splitlines()
        return out

    def worker_log_tail(self, lines: int = 60) -> str:
        return self.worker.log_tail(lines)

    @property
    def workers(self) -> list[Child]:
        """Every worker child: the first, then the spares."""
        return [self.worker, *self.spares]

    async def restart_workers(self, n: int, *, venue_rps: float | None = None, timeout: float = 120) -> None:
        """Stop every worker and start ``n`` (the first and ``n - 1`` spares), with the venues'
        client-side limit set to ``venue_rps`` when given (``hedgeflow bench`` holds its trades at
        the production limiter on N workers). Running trades carry on on the new workers."""
        await asyncio.gather(*(asyncio.to_thread(c.stop, 15) for c in self.spares if c.alive))
        await self.stop_worker()
        if venue_rps is not None:
            self.venue_rps = venue_rps
        while len(self.spares) < n - 1:
            i = len(self.spares)
            self.spares.append(Child([sys.executable, "-m", "hedgeflow", "worker", "--graceful-timeout", "2"],
                                     name=f"worker-{i + 2}", cwd=ROOT, log_file=self.workdir / f"worker-{i + 2}.log"))
        await self._start(self.worker, timeout)
        await asyncio.gather(*(self._start(c, timeout) for c in self.spares[: n - 1]))

    async def used_weight(self, venue: str) -> int:
        """The request weight the venue counted in its current minute, after one ping (weight 1):
        its ``X-MBX-USED-WEIGHT-1M`` answer header (Binance dialect)."""
        assert self._http is not None
        async with self._http.get(self.sims[venue].url + "/fapi/v1/ping") as r:
            return int(r.headers.get("X-MBX-USED-WEIGHT-1M", "0"))

    def kill_worker(self) -> None:
        self.worker.kill()  # SIGKILL: no graceful shutdown, in-flight activities are lost

    async def stop_worker(self) -> None:
        await asyncio.to_thread(self.worker.stop, 15)

    async def restart_server(self, down_s: float = 1.0) -> None:
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
                   execution: dict[str, Any] | None = None, **hold: Any) -> str:
        """Start a trade; ``execution``: TradeExecution fields of this trade (e.g. its ``style``)."""
        from control.trades import open_trade

        return await open_trade(self.client, self.settings, symbol, long_venue, short_venue, notional,
                                stamp=stamp, opened_by="bench", check_halt=False,
                                hold_overrides=hold or None, **(execution or {}))

    async def status(self, wf_id: str):
        from workflows.trade import TradeWorkflow

        return await self.client.get_workflow_handle(wf_id).query(TradeWorkflow.status)

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
        raise RuntimeError(
            f"{wf_id}: not in {sorted(want)} after {timeout:.0f}s (last state {last and last.state}, "
            f"last query error {err!r}, worker {'alive' if self.worker.alive else 'exited'}); "
            f"lab kept in {self.workdir}"
        )

    async def signal_close(self, wf_id: str, reason: str = "bench", emergency: bool = False) -> None:
        from messages.trade import CloseRequest

        await self.client.get_workflow_handle(wf_id).signal(
            "emergency_close" if emergency else "close", CloseRequest(reason=reason))

    async def result(self, wf_id: str, timeout: float = 120):
        from messages.trade import TradeStatus

        handle = self.client.get_workflow_handle(wf_id, result_type=TradeStatus)
        return await asyncio.wait_for(handle.result(), timeout)
