"""A simulated venue as a child process (``python -m venues.sim``), built on
:class:`workers.proc.Child`: start it, wait until its admin API answers, call the admin API,
stop it. Used by the tests and the lab (``hedgeflow bench`` / ``hedgeflow chaos``);
``hedgeflow up`` builds the same command (:func:`sim_command`) for its supervised simulators.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.proc import Child, ChildExited, ChildNotReady, ChildOwner, free_port

if TYPE_CHECKING:
    from config.settings import VenueConfig

#: cheap readiness probe: the state without orders and income
READY_PATH = "/_sim/state?orders_limit=0&income_limit=0"


def http_json(url: str, body: object | None = None, method: str | None = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - local admin URL
        return json.loads(r.read() or b"null")


def sim_command(name: str, port: int, state: str | os.PathLike, *extra: str) -> list[str]:
    """``python -m venues.sim --name NAME --port PORT --state STATE [extra...]``."""
    return [sys.executable, "-m", "venues.sim", "--name", name, "--port", str(port), "--state", str(state),
            *extra]


def sim_venue_args(v: VenueConfig) -> tuple[list[str], dict[str, str]]:
    """The simulator arguments and environment of sim venue ``v``, so that the gateway's
    credentials for it (its configured ones, else the demo defaults of its dialect) sign in:
    ``--dialect``; the API key and secret, and OKX's passphrase (what ``--api-passphrase`` sets),
    in the environment only (the command line is written to the logs); for Hyperliquid the
    wallet address, public, as ``--api-key``."""
    args: list[str] = []
    env: dict[str, str] = {}
    if v.dialect != "binance":
        args += ["--dialect", v.dialect]
    wallet = v.sim_wallet()
    if wallet is not None:
        args += ["--api-key", wallet]  # the simulator checks signatures recover to this wallet
    else:
        if v.api_key is not None:
            env["HEDGEFLOW_SIM_API_KEY"] = v.api_key.get_secret_value()
        if v.api_secret is not None:
            env["HEDGEFLOW_SIM_API_SECRET"] = v.api_secret.get_secret_value()
    if v.dialect == "okx" and v.api_password is not None:
        env["HEDGEFLOW_SIM_API_PASSPHRASE"] = v.api_password.get_secret_value()
    return args, env


class SimProcess(ChildOwner):
    """One ``python -m venues.sim`` child on 127.0.0.1:``port`` with its state in ``state``.

    The child gets this process's environment without ``HEDGEFLOW*`` variables (so nothing
    of the caller's configuration or credentials leaks in; ``clean_env=False`` keeps them),
    plus ``env``; its output goes to ``log_file`` (default: the state file's name with ``.log``)."""

    def __init__(self, name: str, port: int, state: str | os.PathLike, *extra: str,
                 env: dict[str, str] | None = None, log_file: str | os.PathLike | None = None,
                 cwd: str | os.PathLike | None = None, clean_env: bool = True) -> None:
        self.name, self.port, self.state_path, self.extra = name, port, str(state), list(extra)
        self.url = f"http://127.0.0.1:{port}"
        self.env = env or {}
        self.clean_env = clean_env
        self.log_file = Path(log_file) if log_file else Path(self.state_path).with_suffix(".log")
        self.child = Child(sim_command(name, port, self.state_path, *self.extra), name=f"sim {name}",
                           cwd=cwd, log_file=self.log_file)

    def start(self, timeout: float = 30.0) -> SimProcess:
        env = {k: v for k, v in os.environ.items() if not (self.clean_env and k.startswith("HEDGEFLOW"))}
        env.update(self.env, PYTHONUNBUFFERED="1")
        self.child.env = env
        self.child.spawn()
        try:
            self.child.wait_ready(url=self.url + READY_PATH, timeout=timeout, interval=0.05, request_timeout=1)
        except ChildExited as exc:
            raise RuntimeError(f"sim {self.name} exited {exc.code}: {self.log_tail()}") from None
        except ChildNotReady:
            self.stop()
            raise TimeoutError(f"sim {self.name} did not answer on {self.url}: {self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        return self.child.log_tail(lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        return self.child.stop(timeout, sig)

    def kill(self) -> None:
        self.child.kill()

    # --- admin API (unsigned) ---------------------------------------------------------
    def admin(self, path: str, body: object | None = None) -> Any:
        return http_json(self.url + path, body)

    def state_snapshot(self) -> dict[str, Any]:
        return self.admin("/_sim/state")

    def faults(self, **faults: Any) -> None:
        self.admin("/_sim/faults", faults)

    def market(self, symbol: str, **values: Any) -> None:
        self.admin("/_sim/market", {"symbol": symbol, **{k: None if v is None else str(v) for k, v in values.items()}})

    def settle(self, symbol: str | None = None) -> Any:
        return self.admin("/_sim/settle", {"symbol": symbol} if symbol else {})


@contextlib.contextmanager
def spawn_sim(name: str, state: str | os.PathLike, *extra: str, port: int | None = None,
              env: dict[str, str] | None = None) -> Iterator[SimProcess]:
    """Start ``python -m venues.sim`` on a free port; wait until /_sim/state answers; stop on exit."""
    p = SimProcess(name, port or free_port(), state, *extra, env=env).start()
    try:
        yield p
    finally:
        p.stop()
