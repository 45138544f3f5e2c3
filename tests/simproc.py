"""Helpers for tests that talk to simulated venues over real HTTP with real ccxt.

- :func:`make_ccxt_client` — the one way to point ``ccxt.async_support.binanceusdm`` at a sim.
- :func:`spawn_sim` / :class:`SimProcess` — run ``python -m venues.sim`` as a subprocess.
- :func:`in_process_sim` — async context manager around :func:`venues.sim.start_sim`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import ccxt.async_support as ccxt_async

from venues.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET

REPO = Path(__file__).resolve().parent.parent
BINANCE_FAPI = "https://fapi.binance.com"


def make_ccxt_client(base_url: str, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_API_SECRET,
                     **options) -> ccxt_async.binanceusdm:
    """An unmodified ccxt binanceusdm client whose fapi URLs point at ``base_url``.

    ccxt picks Binance's USD-M-specific error codes (-2019 Margin is insufficient →
    InsufficientFunds, -2022 ReduceOnly rejected → InvalidOrder, -4164 min notional →
    InvalidOrder, -4116 duplicate client id → InvalidOrder, ...) only when the request URL
    starts with ``https://fapi.binance.com/``. With the URLs rewritten to the simulator those
    would fall back to a bare ExchangeError, so the USD-M table is merged into the generic one
    here (USD-M entries win, as they do on the real host). The gateway must do the same.
    """
    base_url = base_url.rstrip("/")
    ex = ccxt_async.binanceusdm({
        "apiKey": api_key,
        "secret": secret,
        "options": {
            "fetchMarkets": ["linear"],
            "fetchCurrencies": False,
            "adjustForTimeDifference": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            **options.pop("options", {}),
        },
        **options,
    })
    for k, v in list(ex.urls["api"].items()):
        if isinstance(v, str) and v.startswith(BINANCE_FAPI):
            ex.urls["api"][k] = base_url + v[len(BINANCE_FAPI):]
    linear = ex.exceptions.get("linear", {})
    ex.exceptions["exact"] = {**ex.exceptions["exact"], **linear.get("exact", {})}
    ex.exceptions["broad"] = {**ex.exceptions["broad"], **linear.get("broad", {})}
    return ex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: object | None = None, method: str | None = None, timeout: float = 5.0) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class SimProcess:
    """A ``python -m venues.sim`` subprocess."""

    def __init__(self, name: str, port: int, state: str | os.PathLike, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.port, self.state, self.extra = name, port, str(state), list(extra)
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> SimProcess:
        cmd = [sys.executable, "-m", "venues.sim", "--name", self.name, "--port", str(self.port),
               "--state", self.state, *self.extra]
        env = dict(os.environ)
        if self.env is None:  # demo credentials unless the caller says otherwise
            env.pop("HEDGEFLOW_SIM_API_KEY", None)
            env.pop("HEDGEFLOW_SIM_API_SECRET", None)
        env.update(self.env or {})
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sim {self.name} exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                http_json(self.url + "/_sim/state?orders_limit=0&income_limit=0", timeout=1)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"sim {self.name} did not answer on {self.url}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def admin(self, path: str, body: object | None = None) -> object:
        return http_json(self.url + path, body)


@contextlib.contextmanager
def spawn_sim(name: str, state: str | os.PathLike, *extra: str, port: int | None = None,
              env: dict[str, str] | None = None) -> Iterator[SimProcess]:
    """Start ``python -m venues.sim`` on a free port; wait until /_sim/state answers; kill on exit."""
    p = SimProcess(name, port or free_port(), state, *extra, env=env).start()
    try:
        yield p
    finally:
        p.stop()


@contextlib.asynccontextmanager
async def in_process_sim(tmp_path: Path | str, name: str = "sim-t", **kw) -> AsyncIterator:
    """Start a sim inside the running event loop on a free port with a state file under tmp_path."""
    from venues.sim import SimOptions, start_sim

    kw.setdefault("state", str(Path(tmp_path) / f"{name}.sqlite"))
    handle = await start_sim(SimOptions(name=name, port=0, **kw))
    try:
        yield handle
    finally:
        await handle.stop()
