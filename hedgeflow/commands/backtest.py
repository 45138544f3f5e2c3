"""``hedgeflow backtest``: the scanner and the trade over a replay CSV in virtual time
(``domain.backtest``), printed per trade and in total beside the hindsight bound; ``--sweep``
runs one backtest per combination of settings on both cores."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

HELP = ("virtual-time backtest over a replay CSV: the scanner's and the trade's own rules, per trade and in "
        "total, beside the hindsight bound; --sweep for a grid of settings")

SECTIONS = ("scanner", "trade", "limits")
PLOT_FORMATS = (".png", ".svg", ".pdf")  # what matplotlib writes
#: settings of the backtest's own models (domain.backtest_model), set with --set / --sweep
MODEL_KEYS = {"capital_per_venue_usd", "maintenance_margin", "qty_step", "min_qty", "min_notional", "taker_fee",
              "book_levels", "book_half_spread_bps", "book_level_step_bps", "book_level_notional_usd"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE", required=True, help="replay CSV (time,venue,symbol,funding_rate,mark_price)")
    p.add_argument("--from", dest="start", metavar="ISO", help="first settlement time counted (UTC)")
    p.add_argument("--to", dest="end", metavar="ISO", help="last settlement time counted (UTC)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    p.add_argument("--plot", metavar="FILE", help="plot equity, funding, fees and the bound over time (.png, .svg, .pdf)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for this run: scanner/trade/limits keys (min_spread_bps, horizon_h, "
                        "exit_spread_bps, max_hold_s, max_open_trades, …, or section.key), taker_fee[.VENUE], "
                        "capital_per_venue_usd, maintenance_margin, book_level_notional_usd")
    p.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="one backtest per combination of these values (repeatable); one row each")
    p.add_argument("--workers", type=int, default=2, help="processes for --sweep (default 2)")
    p.add_argument("--rows", type=int, default=40, help="trade rows printed (default 40; JSON has all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--profile", choices=("replay", "demo", "live"), default="replay",
                   help="whose built-in defaults (default replay: the scanner's real-time tuning)")


# ---------------------------------------------------------------------------- settings
def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    from hedgeflow.cli import CliError

    out = []
    for it in items:
        name, sep, value = it.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise CliError(f"{flag} {it!r}: expected NAME=VALUE", 2)
        out.append((name.strip(), value.strip()))
    return out


def resolve(settings: Any, name: str) -> tuple[str, str]:
    """(section, key) of a --set / --sweep name: ``section.key``, a backtest model key, or the first
    of the scanner, trade and limits sections that has it."""
    from hedgeflow.cli import CliError

    if name in MODEL_KEYS or name.startswith("taker_fee."):
        return "backtest", name
    if "." in name:
        sec, key = name.split(".", 1)
        if sec in SECTIONS and key in type(getattr(settings, sec)).model_fields:
            return sec, key
    for sec in SECTIONS:
        if name in type(getattr(settings, sec)).model_fields:
            return sec, name
    raise CliError(f"unknown setting {name!r}: a key of {', '.join(SECTIONS)} or one of {', '.join(sorted(MODEL_KEYS))}", 2)


def params_for(settings: Any, overrides: list[tuple[str, str]], venues: list[str]):
    """BacktestParams from the settings with ``overrides``: the scanner's edge parameters and
    portfolio limits (``ScannerParams``, at time scale 1: virtual time is venue time), the
    trade's hold rules, the venues' taker fees."""
    from pydantic import ValidationError

    from config.venue import VenueConfig
    from domain.backtest_model import BacktestParams, BookModel, HoldRules
    from hedgeflow.cli import CliError
    from messages.scanner import ScannerParams

    sections: dict[str, dict[str, str]] = {}
    model: dict[str, str] = {}
    for name, value in overrides:
        sec, key = resolve(settings, name)
        (model if sec == "backtest" else sections.setdefault(sec, {}))[key] = value
    try:
        upd = {sec: type(getattr(settings, sec)).model_validate({**getattr(settings, sec).model_dump(), **kv})
               for sec, kv in sections.items()}
        s = settings.model_copy(update=upd)
        # virtual time is venue time: the time scale is 1 *before* the durations are built (a
        # replay's HEDGEFLOW__SCANNER__TIME_SCALE left in the environment must not divide them)
        scanner = (upd.get("scanner") or s.scanner).model_copy(update={"time_scale": Decimal(1)})
        s = s.model_copy(update={"scanner": scanner})
        sp = ScannerParams.from_settings(s)
        d = {k: Decimal(v) for k, v in model.items()}
    except (ValidationError, ArithmeticError, ValueError) as exc:
        raise CliError(f"invalid setting ({', '.join(f'{n}={v}' for n, v in overrides)}): {exc}", 2) from None
    default_fee = d.get("taker_fee", VenueConfig.model_fields["taker_fee"].default)
    fees = {v.name: v.taker_fee for v in s.venues}
    fees.update({k.split(".", 1)[1]: v for k, v in d.items() if k.startswith("taker_fee.")})
    h = s.trade.hold()
    bm = BookModel()
    book = BookModel(int(d.get("book_levels", bm.levels)), d.get("book_half_spread_bps", bm.half_spread_bps),
                     d.get("book_level_step_bps", bm.level_step_bps),
                     d.get("book_level_notional_usd", bm.level_notional_usd))
    # the backtest fills every leg as a taker, so it also ranks as one: scanner.styles does not apply
    edge = dataclasses.replace(sp.edge_params(), styles=("taker",))
    base = BacktestParams(edge=edge, limits=sp.risk_limits())
    return BacktestParams(
        edge=edge, limits=sp.risk_limits(),
        hold=HoldRules(h.exit_spread_bps, h.exit_checks, int(h.monitor_interval_s * 1000), int(h.max_hold_s * 1000),
                       h.reduce_liq_distance, h.close_liq_distance, int(h.reduce_cooldown_s * 1000)),
        cycle_ms=int(sp.cycle_s * 1000), top_n_books=sp.top_n_books, max_candidates=sp.max_candidates,
        leverage=s.limits.leverage,
        margin_buffer=s.limits.margin_buffer, max_order_notional_usd=s.limits.max_order_notional_usd,
        taker_fees={v: fees.get(v, default_fee) for v in venues}, default_taker_fee=default_fee, book=book,
        qty_step=d.get("qty_step", base.qty_step), min_qty=d.get("min_qty", base.min_qty),
        min_notional=d.get("min_notional", base.min_notional),
        maintenance_margin=d.get("maintenance_margin", base.maintenance_margin),
        capital_per_venue_usd=d.get("capital_per_venue_usd", base.capital_per_venue_usd),
        max_trades_bound=s.limits.max_open_trades,
    )


# ---------------------------------------------------------------------------- running
_ROWS: list = []


def _init_worker(rows: list) -> None:
    global _ROWS
    _ROWS = rows


def run_one(rows: list, params: Any, start_ms: int | None, end_ms: int | None, progress=None):
    """One backtest over fresh series (a run moves their cursors): (result, series)."""
    from domain.backtest import Backtest
    from domain.backtest_model import load_series

    series = load_series(rows, start_ms, end_ms)
    return Backtest(series, params).run(progress), series


def sweep_row(job: tuple[dict[str, str], Any, int | None, int | None]) -> dict[str, Any]:
    """One sweep combination, in a worker process: its settings and headline figures."""
    from domain.backtest_stats import daily_pnl, max_drawdown, money, sharpe

    combo, params, start_ms, end_ms = job
    t0 = time.perf_counter()
    res, series = run_one(_ROWS, params, start_ms, end_ms)
    net = sum((t.net(*res.marks(series, t)) if t.closed_ms is None else t.net() for t in res.trades), Decimal(0))
    return {**combo, "trades": len(res.trades), "net_usd": money(net),
            "sharpe": round(sharpe(daily_pnl(res.curve.t_ms, res.curve.equity)), 3),
            "max_drawdown_usd": money(max_drawdown(res.curve.equity)), "wall_s": round(time.perf_counter() - t0, 3)}


def run_sweep(rows: list, jobs: list, workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(jobs) == 1:
        _init_worker(rows)
        return [sweep_row(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=_init_worker, initargs=(rows,)) as ex:
        return list(ex.map(sweep_row, jobs))


def run(args: argparse.Namespace) -> int:
    from domain.replay_data import ReplayDataError, parse_time_ms, read_rows
    from hedgeflow.cli import CliError, settings_from

    t0 = time.perf_counter()
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_FORMATS:
        raise CliError(f"--plot {args.plot}: use {', '.join(PLOT_FORMATS)}", 2)
    settings = settings_from(args)
    try:
        start_ms = parse_time_ms(args.start) if args.start else None
        end_ms = parse_time_ms(args.end) if args.end else None
    except ValueError as exc:
        raise CliError(f"--from/--to: not an ISO time ({exc})", 2) from None
    try:
        rows = [r for r in read_rows(args.data)
                if (start_ms is None or r.t_ms >= start_ms) and (end_ms is None or r.t_ms <= end_ms)]
    except ReplayDataError as exc:
        raise CliError(f"--data {exc}", 2) from None
    if not rows:
        raise CliError(f"--data {args.data}: no rows in the chosen period", 2)
    venues = sorted({r.venue for r in rows})
    sets = _pairs(args.sets, "--set")
    if args.sweep:
        return _sweep(args, settings, rows, venues, sets, start_ms, end_ms, t0)
    params = params_for(settings, sets, venues)
    return _single(args, params, rows, start_ms, end_ms, t0)


def _sweep(args, settings, rows, venues, sets, start_ms, end_ms, t0) -> int:
    axes = [(name, [v.strip() for v in values.split(",") if v.strip()]) for name, values in _pairs(args.sweep, "--sweep")]
    names = [n for n, _ in axes]
    jobs = []
    for combo in itertools.product(*(vs for _, vs in axes)):
        c = dict(zip(names, combo, strict=True))
        jobs.append((c, params_for(settings, sets + list(c.items()), venues), start_ms, end_ms))
    out = run_sweep(rows, jobs, args.workers)
    wall = time.perf_counter() - t0
    if args.json != "-":  # JSON on stdout stands alone
        print_sweep(out, names, wall, args.workers)
    if args.json:
        _write_json(args.json, {"sweep": out, "wall_s": round(wall, 3)})
    return 0


def _single(args, params, rows, start_ms, end_ms, t0) -> int:
    from domain.backtest_stats import summarise
    from domain.report import RateRow, hindsight_bound_curve

    with progress_bar(disabled=args.no_progress) as tick:
        res, series = run_one(rows, params, start_ms, end_ms, tick)
    t_run = time.perf_counter() - t0
    curve = hindsight_bound_curve([RateRow(r.t_ms, r.venue, r.symbol, r.rate) for r in rows],
                                  params.edge.notional_usd, params.max_trades_bound)
    bound = curve[-1][1] if curve else Decimal(0)
    wall = time.perf_counter() - t0
    out = summarise(res, series, bound, wall)
    out["run_s"] = round(t_run, 3)
    out["params"] = {"notional_usd": str(params.edge.notional_usd), "horizon_h": params.edge.horizon_ms / 3_600_000,
                     "min_spread_bps": str(params.edge.min_spread_bps), "taker_fees": {k: str(v) for k, v in params.taker_fees.items()}}
    if args.json != "-":
        print_result(out, params, args.rows)
    if args.json:
        _write_json(args.json, out)
    if args.plot:
        write_plot(Path(args.plot), res, curve, out)
        print(f"plot written to {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
    return 0


def _write_json(dest: str, obj: dict[str, Any]) -> None:
    text = json.dumps(obj, indent=2)
    if dest == "-":
        print(text)
    else:
        Path(dest).write_text(text + "\n")


# ---------------------------------------------------------------------------- printing
@contextlib.contextmanager
def progress_bar(disabled: bool = False):
    """A rich progress bar over virtual time (on stderr, only on a terminal): yields the
    engine's ``progress(done, total)`` callback."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if disabled or not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.percentage:>3.0f}% of the data's time"),
                  TimeElapsedColumn(), console=console, transient=True) as prog:
        task = prog.add_task("backtest", total=1)
        yield lambda done, total: prog.update(task, completed=done, total=total)


def _console():
    """stdout; a pipe or file gets the whole table (no terminal width to fit)."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=200)


def _usd(x: float | None) -> str:
    return "" if x is None else f"{x:,.2f}"


def print_result(out: dict[str, Any], params: Any, rows: int) -> None:
    from rich.table import Table

    console = _console()
    trades = out["trades"]
    t = Table(title=f"backtest {out['period']['from']} → {out['period']['to']}: {len(trades)} trades", title_justify="left")
    for col in ("symbol", "long", "short", "opened", "closed", "exit", "edge bps"):
        t.add_column(col)
    for col in ("funding", "fees", "slippage", "basis", "net"):
        t.add_column(col, justify="right")
    for r in trades[:rows]:
        t.add_row(r["symbol"], r["long_venue"], r["short_venue"], r["opened_at"][:16], (r["closed_at"] or "open")[:16],
                  r["exit_reason"] or "(open, marked)", f"{r['entry_edge']:.2f}", _usd(r["funding_usd"]),
                  _usd(r["fees_usd"]), _usd(r["slippage_usd"]), _usd(r["basis_usd"]), _usd(r["net_usd"]))
    if len(trades) > rows:
        t.caption = f"… {len(trades) - rows} more in --json"
    console.print(t)
    tot = out["totals"]
    s = Table(title="totals (USD)", title_justify="left", show_header=False)
    s.add_column("what")
    s.add_column("value", justify="right")
    win = "" if tot["win_rate"] is None else f"{tot['win_rate']:.0%}"
    for k, v in (("trades (open at the end)", f"{tot['trades']} ({tot['open_trades']})"),
                 ("funding received", _usd(tot["funding_usd"])), ("fees", _usd(tot["fees_usd"])),
                 ("slippage (book model)", _usd(tot["slippage_usd"])), ("basis (price PnL of both legs)", _usd(tot["basis_usd"])),
                 ("net = funding − fees − slippage + basis", _usd(tot["net_usd"])), ("win rate (closed trades)", win),
                 ("Sharpe (daily PnL, annualised)", f"{tot['sharpe']:.2f}"), ("max drawdown", _usd(tot["max_drawdown_usd"])),
                 ("capital used (peak margin, both legs)", _usd(tot["capital_used_usd"])),
                 ("hindsight bound (no costs, best pairs, per hour)", _usd(out["hindsight_bound_usd"])),
                 ("net / bound", "" if out["net_over_bound"] is None else f"{out['net_over_bound']:.1%}"),
                 ("scanner cycles evaluated", f"{out['cycles']:,}"), ("wall time", f"{out['wall_s']:.2f} s")):
        s.add_row(k, v)
    console.print(s)
    if out["refusals"]:
        console.print("refused after the ranking: " + ", ".join(f"{k} {v}" for k, v in sorted(out["refusals"].items())))


def print_sweep(rows: list[dict[str, Any]], names: list[str], wall: float, workers: int) -> None:
    from rich.table import Table

    t = Table(title=f"sweep: {len(rows)} combinations, {wall:.1f} s on {workers} process(es)", title_justify="left")
    for n in names:
        t.add_column(n)
    for col in ("trades", "net USD", "Sharpe", "max drawdown USD", "s"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(*(str(r[n]) for n in names), str(r["trades"]), _usd(r["net_usd"]), f"{r['sharpe']:.2f}",
                  _usd(r["max_drawdown_usd"]), f"{r['wall_s']:.1f}")
    _console().print(t)


def write_plot(path: Path, res: Any, bound: list[tuple[int, Decimal]], out: dict[str, Any]) -> None:
    """Equity, cumulative funding, fees and slippage over time, and the hindsight bound beside
    them (matplotlib, any format it writes: .png, .svg, .pdf)."""
    from datetime import UTC, datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    def dt(ms: list[int]) -> list[datetime]:
        return [datetime.fromtimestamp(t / 1000, UTC) for t in ms]

    c = res.curve
    x = dt(c.t_ms)
    fig, (top, low) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.plot(x, [float(v) for v in c.equity], color="black", lw=1.8, label="net equity (open trades marked)")
    top.plot(x, [float(v) for v in c.funding], color="tab:green", lw=1.2, label="funding received")
    top.plot(x, [-float(v) for v in c.fees], color="tab:red", lw=1.2, label="− fees")
    top.plot(x, [-float(v) for v in c.slippage], color="tab:orange", lw=1.2, label="− slippage")
    for tr in res.trades:
        end = tr.closed_ms if tr.closed_ms is not None else res.end_ms
        top.axvspan(*dt([tr.opened_ms, end]), color="tab:blue", alpha=0.07, lw=0)
    top.axhline(0, color="grey", lw=0.6)
    top.set_ylabel("USD")
    tot = out["totals"]
    top.set_title(f"hedgeflow backtest: {tot['trades']} trades, net {tot['net_usd']:,.2f} USD, Sharpe {tot['sharpe']:.2f}, "
                  f"max drawdown {tot['max_drawdown_usd']:,.2f} USD (blue: a trade holding)", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    if bound:
        low.plot(dt([t for t, _ in bound]), [float(v) for _, v in bound], color="tab:purple", lw=1.4,
                 label=f"hindsight bound: {out['hindsight_bound_usd']:,.2f} USD (no costs, best pairs every hour)")
    low.plot(x, [float(v) for v in c.funding], color="tab:green", lw=1.2, label="funding received")
    low.plot(x, [float(v) for v in c.equity], color="black", lw=1.2, label="net equity")
    low.set_ylabel("USD, cumulative")
    low.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
