"""Child processes: the one way hedgeflow spawns, watches and stops a process of its own.

Everything that runs another program — ``hedgeflow up`` (workers/supervisor.py), the Temporal
dev server wrapper (workers/devserver.py), the simulator launcher (workers/simproc.py), the
lab (``hedgeflow bench`` / ``hedgeflow chaos``) and the tests — goes through :class:`Child`:

* ``Child(cmd, env=..., cwd=..., log_file=...)`` then ``spawn()``: output (stdout and stderr)
  is appended to ``log_file``; ``banner=True`` first writes a ``--- TIME starting: CMD`` line;
  ``supervised=True`` puts the child in its own session (a terminal Ctrl-C reaches only the
  parent, which stops its children in order), reads stdin from /dev/null and, on Linux, has the
  kernel send it SIGTERM should the parent die; ``pipe_output=True`` gives ``proc.stdout``
  (text) instead of a log file.
* ``wait_ready(check | url= | log_line=, timeout=)`` (``await_ready`` inside an event loop):
  poll until the check passes, a GET of ``url`` answers 2xx or ``log_line`` appears in the
  output written since this spawn. :class:`ChildExited` if the child dies first,
  :class:`ChildNotReady` (a ``TimeoutError``) when time runs out; both carry the log tail.
* ``stop(timeout)``: SIGTERM, SIGKILL after ``timeout`` s; ``kill()``: SIGKILL. Both reap the
  child and return its exit code.
* ``log_tail(n)``, ``new_output()``, ``alive``, ``pid``, ``returncode``; ``wait``/``send_signal``
  as on ``subprocess.Popen``. :class:`ChildOwner` gives a wrapper that holds one (``self.child``)
  its ``proc``, ``pid`` and ``alive``.

Plus the port helpers every launcher needs: :func:`free_port`, :func:`free_ports`,
:func:`port_is_free`, :func:`wait_port_free`, :func:`tcp_open`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

Check = Callable[[], Any]  # returns truthy when ready (may be async); an exception means "not yet"


# --------------------------------------------------------------------------- ports
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


#: ports handed out come from here, below the kernel's ephemeral range: a port the kernel picks
#: (bind to 0) is in that range, where any process's next outgoing connection may take it as its
#: local port before our server binds it ("address already in use": a dev server's UI port, seen)
PORT_POOL_LOW = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host`` now, drawn at random below the ephemeral range
    (``PORT_POOL_LOW`` up to it); where that range leaves too little room, the kernel picks them."""
    hi = _ephemeral_low() - 1
    if hi - PORT_POOL_LOW < 1000:
        return _kernel_ports(n, host)
    rng, chosen = random.SystemRandom(), []
    for _ in range(200 * n):
        if len(chosen) == n:
            break
        p = rng.randint(PORT_POOL_LOW, hi)
        if p not in chosen and port_is_free(p, host):
            chosen.append(p)
    return chosen if len(chosen) == n else _kernel_ports(n, host)


def _kernel_ports(n: int, host: str) -> list[int]:
    """``n`` distinct free ports picked by the kernel (held open together, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR like the servers themselves (Go, tokio, aiohttp): a port whose only
        # sockets are in TIME_WAIT counts as free; a LISTEN socket still makes bind() fail
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_free(port, host):
            return True
        time.sleep(0.1)
    return False


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- log files
def tail(path: str | os.PathLike | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (read from its last 64 KiB); "" if unreadable."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- die with parent
def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


#: resolved in the parent: the child must not import anything between fork and exec
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if its parent dies, so no server outlives ``up``."""
    try:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)  # type: ignore[misc]
    except Exception:
        pass


# --------------------------------------------------------------------------- the child
class ChildError(RuntimeError):
    """A child could not be started or did not become ready."""


class ChildExited(ChildError):
    """The child exited while we waited for it to become ready."""

    def __init__(self, child: Child) -> None:
        self.code = child.returncode
        self.log_file = child.log_file
        super().__init__(f"{child.name} exited with code {self.code} during start-up; "
                         f"log {child.log_file}:\n{child.log_tail(20)}")


class ChildNotReady(ChildError, TimeoutError):
    """The child did not become ready in time (it may still be running)."""

    def __init__(self, child: Child, timeout: float, last_error: BaseException | None) -> None:
        self.timeout = timeout
        self.last_error = last_error
        self.log_file = child.log_file
        super().__init__(f"{child.name} not ready within {timeout:.0f} s (last error: {last_error}); "
                         f"log {child.log_file}:\n{child.log_tail(20)}")


class Child:
    """One child process: ``cmd`` run with ``env`` (None: ours) in ``cwd``, output to ``log_file``."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        log_file: str | os.PathLike | None = None,
        banner: bool = False,
        supervised: bool = False,
        pipe_output: bool = False,
    ) -> None:
        self.cmd = [str(c) for c in cmd]
        self.name = name or (Path(self.cmd[0]).name if self.cmd else "child")
        self.env = env
        self.cwd = cwd
        self.log_file: Path | None = Path(log_file) if log_file is not None else None
        self.banner = banner
        self.supervised = supervised
        self.pipe_output = pipe_output
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0  # time.monotonic() of the last spawn
        self.log_offset = 0  # size of the log file at the last spawn

    def __repr__(self) -> str:
        return f"<Child {self.name} pid={self.pid} alive={self.alive}>"

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    # ------------------------------------------------------------------ spawn
    def spawn(self) -> Child:
        """Start the process without waiting for it (see ``wait_ready``)."""
        if self.alive:
            raise ChildError(f"{self.name} already running (pid {self.pid})")
        kw: dict[str, Any] = {"env": self.env, "cwd": self.cwd}
        if self.supervised:
            # PDEATHSIG follows the spawning thread: spawn from the thread that outlives the child
            kw.update(stdin=subprocess.DEVNULL, start_new_session=True,
                      preexec_fn=_set_pdeathsig if _PRCTL is not None else None)
        if self.pipe_output:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        elif self.log_file is None:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **kw)
        else:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "ab") as out:
                self.log_offset = out.tell()
                if self.banner:
                    out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(self.cmd)}\n".encode())
                    out.flush()
                self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.started_at = time.monotonic()
        return self

    # ------------------------------------------------------------------ readiness
    def _check(self, check: Check | None, url: str | None, log_line: str | None,
               request_timeout: float) -> Check:
        if sum(x is not None for x in (check, url, log_line)) != 1:
            raise ValueError("give exactly one of check, url, log_line")
        if url is not None:
            def get() -> bool:
                with urllib.request.urlopen(url, timeout=request_timeout) as r:  # noqa: S310 - local URL
                    r.read()
                return True
            return get
        if log_line is not None:
            return lambda: log_line in self.new_output()
        assert check is not None
        return check

    def wait_ready(self, check: Check | None = None, *, url: str | None = None, log_line: str | None = None,
                   timeout: float = 30.0, interval: float = 0.1, request_timeout: float = 2.0) -> Child:
        """Block until ready (see the module docstring); raise ChildExited / ChildNotReady."""
        probe = self._check(check, url, log_line, request_timeout)
        return _run_unsuspended(self._poll_ready(probe, timeout, interval, _blocking_sleep))

    async def await_ready(self, check: Check | None = None, *, url: str | None = None,
                          log_line: str | None = None, timeout: float = 30.0, interval: float = 0.1,
                          request_timeout: float = 2.0) -> Child:
        """``wait_ready`` for code inside an event loop: ``check`` may be async; a URL is
        fetched in a thread."""
        probe = self._check(check, url, log_line, request_timeout)
        if url is not None:
            probe = functools.partial(asyncio.to_thread, probe)
        return await self._poll_ready(probe, timeout, interval, asyncio.sleep)

    async def _poll_ready(self, probe: Check, timeout: float, interval: float,
                          sleep: Callable[[float], Awaitable[None]]) -> Child:
        """The one readiness loop of ``wait_ready`` (blocking ``sleep``) and ``await_ready``."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.alive:
                raise ChildExited(self)
            try:
                got = probe()
                if inspect.isawaitable(got):
                    got = await got
                if got:
                    return self
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
            await sleep(interval)
        raise ChildNotReady(self, timeout, last)

    # ------------------------------------------------------------------ stop
    def send_signal(self, sig: int) -> None:
        if self.alive:
            try:
                self.proc.send_signal(sig)  # type: ignore[union-attr]
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the child exited; None if it still runs after ``timeout`` s."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """SIGTERM (or ``sig``), then SIGKILL after ``timeout`` s; the exit code (None if never run)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL and reap; the exit code (None if never run)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        return self.proc.wait()

    # ------------------------------------------------------------------ output
    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_file, lines)

    def new_output(self) -> str:
        """What the child wrote to its log since the last spawn."""
        if self.log_file is None:
            return ""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


async def _blocking_sleep(seconds: float) -> None:
    time.sleep(seconds)  # noqa: ASYNC251 - only run without an event loop, by _run_unsuspended


def _run_unsuspended(coro: Coroutine[Any, Any, Child]) -> Child:
    """Run a coroutine that never suspends (every await in it is of plain blocking code, as in
    ``wait_ready``) to its end, without an event loop; its exception propagates."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a blocking readiness check awaited something that suspends; use await_ready")


class ChildOwner:
    """For wrappers around one :class:`Child` (``self.child``): its ``proc``, ``pid`` and ``alive``."""

    child: Child

    @property
    def proc(self) -> subprocess.Popen | None:
        """The ``subprocess.Popen`` of the last spawn (None before)."""
        return self.child.proc

    @property
    def pid(self) -> int | None:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.alive
