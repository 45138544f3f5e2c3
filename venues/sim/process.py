"""A simulated venue as a child process (``python -m venues.sim``), for tests, ``hedgeflow
bench`` and ``hedgeflow chaos``: start it, wait until its admin API answers, call the admin
API, stop it. ``hedgeflow up`` supervises its simulators itself (workers/supervisor.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def http_json(url: str, body: object | None = None, method: str | None = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class SimProcess:
    """One ``python -m venues.sim`` child on 127.0.0.1:``port`` with its state in ``state``.

    The child gets this process's environment without ``HEDGEFLOW*`` variables (so nothing
    of the caller's configuration or credentials leaks in), plus ``env``; its output goes to
    ``log_file`` (default: the state file's name with ``.log``)."""

    def __init__(self, name: str, port: int, state: str | os.PathLike, *extra: str,
                 env: dict[str, str] | None = None, log_file: str | os.PathLike | None = None) -> None:
        self.name, self.port, self.state_path, self.extra = name, port, str(state), list(extra)
        self.url = f"http://127.0.0.1:{port}"
        self.env = env or {}
        self.log_file = Path(log_file) if log_file else Path(self.state_path).with_suffix(".log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> SimProcess:
        cmd = [sys.executable, "-m", "venues.sim", "--name", self.name, "--port", str(self.port),
               "--state", self.state_path, *self.extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
        env.update(self.env, PYTHONUNBUFFERED="1")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sim {self.name} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                http_json(self.url + "/_sim/state?orders_limit=0&income_limit=0", timeout=1)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"sim {self.name} did not answer on {self.url}: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

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
