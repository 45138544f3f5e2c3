"""SQLite persistence of one simulated venue (stdlib sqlite3, WAL, write-through)."""

from __future__ import annotations

import json
import os
import sqlite3
from decimal import Decimal

from .engine import Engine
from .records import Income, Mutation, Order, Position, Trade

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leverage (symbol TEXT PRIMARY KEY, leverage INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS income (tran_id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pinned (symbol TEXT PRIMARY KEY, price TEXT, rate TEXT);
CREATE TABLE IF NOT EXISTS funding_rates (symbol TEXT NOT NULL, time INTEGER NOT NULL, rate TEXT NOT NULL,
    mark TEXT NOT NULL, PRIMARY KEY (symbol, time));
"""


class Store:
    def __init__(self, path: str) -> None:
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    # ---- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def meta_items(self, prefix: str) -> dict[str, str]:
        """Meta rows whose key starts with ``prefix`` (keys returned without it)."""
        rows = self.db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return {k[len(prefix):]: v for k, v in rows}

    def set_meta(self, **kv: object) -> None:
        with self.db:
            self.db.execute("BEGIN")
            for k, v in kv.items():
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, str(v)))

    # ---- load -------------------------------------------------------------------------------
    def load_engine(self, engine: Engine) -> bool:
        """Fill ``engine`` from the file; return False when the file had no account yet."""
        wallet = self.get_meta("wallet")
        if wallet is None:
            return False
        lev = {s: int(v) for s, v in self.db.execute("SELECT symbol, leverage FROM leverage")}
        positions = [Position.from_row(json.loads(d)) for (d,) in self.db.execute("SELECT data FROM positions")]
        orders = [Order.from_row(json.loads(d)) for (d,) in self.db.execute("SELECT data FROM orders ORDER BY order_id")]
        trades = [Trade.from_row(json.loads(d)) for (d,) in self.db.execute("SELECT data FROM trades ORDER BY id")]
        income = [Income.from_row(json.loads(d)) for (d,) in self.db.execute("SELECT data FROM income ORDER BY tran_id")]
        engine.load(wallet=Decimal(wallet), leverage=lev, positions=positions, orders=orders, trades=trades, income=income)
        engine.wallet_update_time = int(self.get_meta("wallet_update_time") or 0)
        return True

    def load_pinned(self) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        prices, rates = {}, {}
        for sym, p, r in self.db.execute("SELECT symbol, price, rate FROM pinned"):
            if p is not None:
                prices[sym] = Decimal(p)
            if r is not None:
                rates[sym] = Decimal(r)
        return prices, rates

    def funding_history(self, symbol: str | None, start: int | None, end: int | None, limit: int) -> list[tuple]:
        q = "SELECT symbol, time, rate, mark FROM funding_rates WHERE 1=1"
        args: list = []
        if symbol:
            q += " AND symbol=?"
            args.append(symbol)
        if start is not None:
            q += " AND time>=?"
            args.append(start)
        if end is not None:
            q += " AND time<=?"
            args.append(end)
        q += " ORDER BY time DESC LIMIT ?"
        args.append(limit)
        return list(reversed(self.db.execute(q, args).fetchall()))

    # ---- write-through ----------------------------------------------------------------------
    def save(self, engine: Engine, mut: Mutation) -> None:
        with self.db:
            self.db.execute("BEGIN")
            for o in mut.orders:
                self.db.execute("INSERT OR REPLACE INTO orders(order_id, data) VALUES (?, ?)",
                                (o.order_id, json.dumps(o.to_row())))
            for t in mut.trades:
                self.db.execute("INSERT OR REPLACE INTO trades(id, data) VALUES (?, ?)", (t.id, json.dumps(t.to_row())))
            for i in mut.income:
                self.db.execute("INSERT OR REPLACE INTO income(tran_id, data) VALUES (?, ?)",
                                (i.tran_id, json.dumps(i.to_row())))
            for p in mut.positions:
                self.db.execute("INSERT OR REPLACE INTO positions(symbol, data) VALUES (?, ?)",
                                (p.symbol, json.dumps(p.to_row())))
            if mut.wallet:
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('wallet', ?)", (str(engine.wallet),))
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('wallet_update_time', ?)",
                                (str(engine.wallet_update_time),))
            for k, v in mut.meta.items():
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, str(v)))

    def save_leverage(self, symbol: str, leverage: int) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO leverage(symbol, leverage) VALUES (?, ?)", (symbol, leverage))

    def save_pinned(self, symbol: str, price: Decimal | None, rate: Decimal | None) -> None:
        with self.db:
            self.db.execute("BEGIN")
            if price is None and rate is None:
                self.db.execute("DELETE FROM pinned WHERE symbol=?", (symbol,))
            else:
                self.db.execute("INSERT OR REPLACE INTO pinned(symbol, price, rate) VALUES (?, ?, ?)",
                                (symbol, None if price is None else str(price), None if rate is None else str(rate)))

    def save_funding_rate(self, symbol: str, time_ms: int, rate: Decimal, mark: Decimal) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO funding_rates(symbol, time, rate, mark) VALUES (?, ?, ?, ?)",
                            (symbol, time_ms, str(rate), str(mark)))
