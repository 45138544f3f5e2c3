"""The holding phase of ``hedgeflow bench``: N trades opened (at the opening limiter), then held
on ``workers`` worker processes at the production limiter (``hold_venue_rps``, default 40
weight/s per venue, Binance's 2,400 a minute: the workers are restarted with it), measured over a
window, then closed on one worker at the opening limiter.

Figures (JSON ``concurrency``):

* ``worker_cpu_pct`` — CPU of every holding worker over the window (``/proc/PID/stat``
  utime+stime), % of one core, summed over the workers (``worker_cpu_pct_each``: each one).
* ``cadence`` — monitor ticks achieved ÷ expected over the window, for an even sample of the
  trades (``cadence_sample``): a tick is one look at both venues, counted as the trade's
  ``monitor_read`` reads in the window (monitor-v2: one local activity a tick, counted by its
  marker; monitor-v1: one activity scheduled a tick; a run from before it: its
  ``market_snapshot`` activities ÷ 2, one per venue per tick), in every run of the trade
  (a continue-as-new inside the window is followed); expected is window ÷
  ``monitor_interval_s`` per trade. 1.0 = every trade ticked on time; a tick's own duration
  (the reads, the workflow tasks) lengthens the period and shows as less than 1.
* ``history_events_per_trade_hour`` — history events of the same sample stamped inside the
  window (every run), per trade, scaled to an hour (``history_events_per_min``: per minute).
* ``tick_period_s`` — seconds between one trade's consecutive ticks in the window (p50, p99);
  ``activity_s``: the sample's activities in the window, schedule-to-start and start-to-close
  seconds by type (where a tick's time goes).
* ``takeover_s`` — after the switch to the holding workers, seconds until they answered a status
  query for every trade (each trade is then loaded on a worker, replayed from its history); the
  window opens one monitor interval later. None: some trades were not taken over in time.
* ``venue_weight_per_s`` — request weight per second of the busiest venue over the window, as
  the venue itself counts it (its ``X-MBX-USED-WEIGHT-1M`` answer header, sampled every 0.25 s;
  our own pings taken off; the weight between the last sample of a venue minute and its end is
  missed, so the figure is low by at most one sample period a minute). ``venue_weight_by_venue``
  gives each venue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import TYPE_CHECKING, Any

from lab.figures import proc_cpu_seconds, proc_rss_mb, summary
from lab.harness import log

if TYPE_CHECKING:
    from lab.bench import BenchConfig
    from lab.harness import Lab

class WeightMeter:
    """Request weight each venue counts, sampled from its used-weight header (module doc)."""

    def __init__(self, lab: Lab, venues: list[str], every_s: float = 0.25) -> None:
        self.lab, self.venues, self.every_s = lab, venues, every_s
        self.total = dict.fromkeys(venues, 0)
        self._prev: dict[str, int | None] = dict.fromkeys(venues)
        self._task: asyncio.Task | None = None
        self._t0 = self._t1 = 0.0

    async def _sample(self, v: str) -> None:
        used = await self.lab.used_weight(v)
        prev = self._prev[v]
        if prev is not None:  # this ping itself weighs 1; a smaller count: a new venue minute
            self.total[v] += max(0, used - prev - 1 if used >= prev else used - 1)
        self._prev[v] = used

    async def _loop(self) -> None:
        while True:
            await asyncio.gather(*(self._sample(v) for v in self.venues))
            await asyncio.sleep(self.every_s)

    async def __aenter__(self) -> WeightMeter:
        await asyncio.gather(*(self._sample(v) for v in self.venues))
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await asyncio.gather(*(self._sample(v) for v in self.venues))
        self._t1 = time.monotonic()

    def per_s(self) -> dict[str, float]:
        span = max(self._t1 - self._t0, 1e-9)
        return {v: round(w / span, 2) for v, w in self.total.items()}


def _t(event: Any) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


async def window_events(lab: Lab, wf_id: str, t0: float, t1: float, waits: dict[str, list[float]] | None = None,
                        until: str | None = None) -> tuple[int, float, list[float]]:
    """(history events, monitor ticks, the ticks' times) of trade ``wf_id`` stamped in ``[t0, t1]``
    (wall s), over every run of it (back along continue-as-new until a run started before ``t0``).
    ``waits``: filled with the activities' (by type) and workflow tasks' schedule-to-start and
    start-to-close seconds. ``until``: the first run only, up to the state (search attribute
    ``TradeState``) ``until`` (``open``: seconds from the start to it)."""
    from temporalio.api.enums.v1 import EventType

    events, run_id, times, snaps = 0, None, [], []
    task_started = 0.0
    for _ in range(50):
        hist = await lab.client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        for e in hist.events:
            if not t0 <= _t(e) <= t1:
                continue
            events += 1
            if e.event_type in (EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                                EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) and waits is not None:
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                    scheduled[e.event_id] = ("workflow_task", _t(e))
                elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    task_started = _t(e)
                    sid = e.workflow_task_started_event_attributes.scheduled_event_id
                    if sid in scheduled:
                        started[sid] = _t(e)
                        waits.setdefault("workflow_task.schedule_to_start", []).append(_t(e) - scheduled[sid][1])
                else:
                    sid = e.workflow_task_completed_event_attributes.scheduled_event_id
                    if sid in started:
                        waits.setdefault("workflow_task.start_to_close", []).append(_t(e) - started[sid])
            if until and e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                state = e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields.get(
                    "TradeState")
                if state is not None and state.data == json.dumps(until).encode() and waits is not None:
                    waits.setdefault("open", []).append(_t(e) - _t(hist.events[0]))
                    return events, 0, []
            if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and local_activity_type(e) == "monitor_read":
                times.append(_t(e))  # monitor-v2: the tick's read is a local activity, recorded as a marker
                if waits is not None and task_started:  # its workflow task's start to the marker
                    waits.setdefault("monitor_read.local_in_task", []).append(_t(e) - task_started)
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                kind = e.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[e.event_id] = (kind, _t(e))
                if kind == "monitor_read":  # monitor-v1: one activity a tick
                    times.append(_t(e))
                elif kind == "market_snapshot":  # before: both venues' snapshots at once, a tick
                    snaps.append(_t(e))
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and waits is not None:
                sid = e.activity_task_started_event_attributes.scheduled_event_id
                if sid in scheduled:
                    started[sid] = _t(e)
                    waits.setdefault(f"{scheduled[sid][0]}.schedule_to_start", []).append(_t(e) - scheduled[sid][1])
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED and waits is not None:
                sid = e.activity_task_completed_event_attributes.scheduled_event_id
                if sid in started:
                    waits.setdefault(f"{scheduled[sid][0]}.start_to_close", []).append(_t(e) - started[sid])
        first = hist.events[0] if hist.events else None
        prev = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else ""
        if first is None or _t(first) <= t0 or not prev:
            break
        run_id = prev
    ticks = sorted(times + sorted(snaps)[::2])
    return events, len(times) + len(snaps) / 2, ticks


def local_activity_type(event: Any) -> str | None:
    """The activity type a local activity's marker records (None for any other marker)."""
    a = event.marker_recorded_event_attributes
    if a.marker_name != "core_local_activity" or "data" not in a.details or not a.details["data"].payloads:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(a.details["data"].payloads[0].data).get("activity_type")
    return None


def tick_periods(times: list[float]) -> list[float]:
    """Seconds between consecutive ticks of one trade."""
    return [b - a for a, b in zip(times, times[1:], strict=False)]


async def take_over(lab: Lab, ids: list[str], timeout: float) -> float | None:
    """Seconds until the new workers answer a status query for every trade (each is then loaded
    on a worker: replayed from its history); None if some did not within ``timeout``."""
    t0 = time.monotonic()
    gate = asyncio.Semaphore(8)  # a few at a time: the queries replay the trades too

    async def one(wf: str) -> bool:
        async with gate:
            while time.monotonic() - t0 < timeout:
                with contextlib.suppress(Exception):
                    await lab.status(wf)
                    return True
                await asyncio.sleep(0.5)
            return False

    done = await asyncio.gather(*(one(w) for w in ids))
    took = round(time.monotonic() - t0, 1)
    log(f"  concurrency: the new workers answer for {sum(done)}/{len(ids)} trades after {took:g}s")
    return took if all(done) else None


class StateWatch:
    """The trades' states from visibility: ONE list query per ``poll_s`` for every trade still
    opening (their ``TradeState`` search attribute). A status query per trade and poll, as
    before, is a task on the worker each: 20 trades polled every 0.25 s were 80 queries a second
    on the worker that was opening them."""

    DONE = ("holding", "aborted", "closed")

    def __init__(self, lab: Lab, poll_s: float = 0.25) -> None:
        self.lab, self.poll_s = lab, poll_s
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self._task: asyncio.Task | None = None

    async def wait(self, wf_id: str, timeout: float) -> str | None:
        """The trade's state once it is holding or ended; None after ``timeout``."""
        fut = self.waiting[wf_id] = asyncio.get_running_loop().create_future()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        finally:
            self.waiting.pop(wf_id, None)

    async def _loop(self) -> None:
        from config.names import SA_STATE

        while self.waiting:
            await asyncio.sleep(self.poll_s)
            ids = list(self.waiting)[:200]
            names = ", ".join(f"'{w}'" for w in ids)
            states = ", ".join(f"'{x}'" for x in self.DONE)
            query = f"WorkflowId IN ({names}) AND (TradeState IN ({states}) OR ExecutionStatus != 'Running')"
            with contextlib.suppress(Exception):  # a slow server: the next poll asks again
                async for w in self.lab.client.list_workflows(query):
                    fut = self.waiting.get(w.id)
                    if fut is not None and not fut.done():
                        fut.set_result(w.typed_search_attributes.get(SA_STATE) or "ended")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def open_holding(lab: Lab, symbols: list[str], cfg: BenchConfig) -> tuple[list[str], list[str], dict]:
    """Open a trade on each symbol, ``open_batch`` opening at any time (the next starts as soon
    as one is holding or has ended: no batch waits for its slowest trade). Returns the holding
    trades, the others (refused, ended or not holding after 120 s: closed at the end all the
    same) and the opening's figures: wall time, each ``open_trade`` call (the duplicate check
    and the start) and each trade's start → holding."""
    lv, sv = lab.venue_names[:2]
    ids: list[str] = []
    others: list[str] = []
    calls: list[float] = []
    took: list[float] = []
    gate, watch = asyncio.Semaphore(cfg.open_batch), StateWatch(lab)
    t_start = time.monotonic()
    every = max(cfg.open_batch, len(symbols) // 10)

    async def one(k: int, sym: str) -> None:
        async with gate:
            t0 = time.monotonic()
            wf = await lab.open(sym, lv, sv, cfg.notional, stamp=f"bc{k}x{time.time_ns()}",
                                monitor_interval_s=cfg.monitor_interval_s)
            t1 = time.monotonic()
            state = await watch.wait(wf, timeout=120)
        calls.append(t1 - t0)
        took.append(time.monotonic() - t1)
        if state == "holding":
            ids.append(wf)
            if len(ids) % every == 0 or len(ids) == len(symbols):
                log(f"  concurrency: {len(ids)}/{len(symbols)} trades holding ({time.monotonic() - t_start:.0f}s)")
        else:  # an opening refused under load: reported, not held
            others.append(wf)
            with contextlib.suppress(Exception):
                st = await lab.status(wf)
                state = f"{st.state}: {st.abort_reason}"
            log(f"  concurrency: {wf} {state or 'not holding after 120 s'} while opening")

    try:
        await asyncio.gather(*(one(k, sym) for k, sym in enumerate(symbols)))
    finally:
        await watch.close()
    wall = time.monotonic() - t_start
    log(f"  concurrency: {len(ids)}/{len(symbols)} trades holding after {wall:.0f}s")
    return ids, others, {"wall_s": round(wall, 1), "in_flight": cfg.open_batch,
                         "open_call_s": summary(calls), "start_to_holding_s": summary(took)}


async def measure_concurrency(lab: Lab, symbols: list[str], cfg: BenchConfig) -> dict[str, Any]:
    ids, others, opening = await open_holding(lab, symbols, cfg)
    # where an opening's time went: a sample of the trades' histories from start to holding
    phases: dict[str, list[float]] = {}
    for w in ids[:: max(1, len(ids) // 20)][:20]:
        await window_events(lab, w, 0.0, time.time(), phases, until="holding")
    opening["phases_s"] = {k: {q: v for q, v in summary(x).items() if q in ("p50", "p99", "n")}
                           for k, x in sorted(phases.items())}
    log(f"  concurrency: opening {json.dumps(opening)}")
    hold_rps = cfg.hold_venue_rps or cfg.venue_rps
    moved = cfg.workers > 1 or hold_rps != lab.venue_rps
    if moved:
        log(f"  concurrency: holding on {cfg.workers} worker(s) at {hold_rps:g} weight/s per venue")
        await lab.restart_workers(cfg.workers, venue_rps=hold_rps)
    takeover = await take_over(lab, ids, timeout=max(60.0, len(ids) * 1.0)) if moved else None
    await asyncio.sleep(min(5.0, cfg.monitor_interval_s) if not moved else cfg.monitor_interval_s)  # settles
    workers = [c for c in lab.workers if c.alive]
    pids, server_pid = [c.pid for c in workers], lab.server.pid
    step = max(1, len(ids) // max(1, cfg.cadence_sample))
    sample = ids[::step][: cfg.cadence_sample]
    c0, s0 = [proc_cpu_seconds(p) for p in pids], proc_cpu_seconds(server_pid)
    w0, t0 = time.monotonic(), time.time()
    log(f"  concurrency: measuring {len(ids)} holding trades for {cfg.window_s:.0f}s "
        f"(monitor every {cfg.monitor_interval_s:g}s, {len(pids)} worker(s))")
    async with WeightMeter(lab, list(lab.venue_names)) as meter:
        await asyncio.sleep(cfg.window_s)
    c1, s1 = [proc_cpu_seconds(p) for p in pids], proc_cpu_seconds(server_pid)
    w1, t1 = time.monotonic(), time.time()
    load = os.getloadavg()[0]  # the machine's 1-minute load average: about the window's
    rss = [proc_rss_mb(p) for p in pids]
    elapsed = w1 - w0
    waits: dict[str, list[float]] = {}
    counted = await asyncio.gather(*(window_events(lab, w, t0, t1, waits) for w in sample))
    # a trade whose workflow task is failing (timed out on a saturated worker) answers no query
    statuses = await asyncio.gather(*(lab.status(w) for w in ids), return_exceptions=True)
    unanswered = sum(1 for st in statuses if isinstance(st, BaseException))
    still = sum(1 for st in statuses if not isinstance(st, BaseException) and st.state == "holding")
    runs = [st.runs for st in statuses if not isinstance(st, BaseException)]
    each = [round((b - a) / elapsed * 100, 1) for a, b in zip(c0, c1, strict=True)]
    weights = meter.per_s()
    expected = len(sample) * elapsed / cfg.monitor_interval_s
    ticks = sum(t for _, t, _ in counted)
    per_hour = sum(e for e, _, _ in counted) / len(sample) / elapsed * 3600 if sample else None
    periods = [p for _, _, times in counted for p in tick_periods(times)]
    hist_now = await asyncio.gather(*(_history_len(lab, w) for w in sample[: cfg.history_sample]))
    out = {
        "trades": len(ids),
        "opening": opening,
        "workers": len(pids),
        "hold_venue_rps": hold_rps,
        "holding_during_window": still,
        "status_unanswered": unanswered,
        "takeover_s": takeover,
        "monitor_interval_s": cfg.monitor_interval_s,
        "window_s": round(elapsed, 1),
        "worker_cpu_pct": round(sum(each), 1),
        "worker_cpu_pct_each": each,
        "server_cpu_pct": round((s1 - s0) / elapsed * 100, 1),
        "loadavg_1m_window_end": round(load, 2),
        "worker_rss_mb": round(sum(r for r, _ in rss), 1),
        "worker_peak_rss_mb": round(sum(h for _, h in rss), 1),
        "cadence": round(ticks / expected, 3) if expected else None,
        "cadence_sample": len(sample),
        "tick_period_s": summary(periods),
        "activity_s": {k: {q: v for q, v in summary(x).items() if q in ("p50", "p99", "n")}
                       for k, x in sorted(waits.items())},
        "venue_weight_per_s": max(weights.values()) if weights else None,
        "venue_weight_by_venue": weights,
        "history_events_per_trade_hour": round(per_hour, 1) if per_hour is not None else None,
        "history_events_per_min": round(per_hour / 60, 1) if per_hour is not None else None,
        "history_events_per_run": summary(hist_now),
        "runs_per_trade": max(runs) if runs else None,
    }
    log(f"  concurrency figures: {json.dumps(out)}")  # before the closes (minutes, for N trades)
    if moved:  # closed on one worker at the opening limiter: closing N trades at 40 weight/s takes minutes
        await lab.restart_workers(1, venue_rps=cfg.venue_rps)
    await asyncio.gather(*(lab.signal_close(w) for w in ids + others), return_exceptions=True)
    finals = await asyncio.gather(*(lab.result(w, timeout=max(300.0, len(ids) * 0.6)) for w in ids),
                                  return_exceptions=True)
    await asyncio.gather(*(lab.result(w, timeout=120) for w in others), return_exceptions=True)
    closed = sum(1 for f in finals if not isinstance(f, BaseException) and f.state == "closed")
    log(f"  concurrency: closed {closed}/{len(ids)}")
    out["closed_after"] = closed
    return out


async def _history_len(lab: Lab, wf_id: str) -> int:
    hist = await lab.client.get_workflow_handle(wf_id).fetch_history()
    return len(hist.events)
