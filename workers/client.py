"""One way to get a Temporal client: pydantic data converter (Decimal money end to end),
bounded connect retry, and an operator-facing error when the server is not there.

Address and namespace: ``TEMPORAL_ADDRESS`` / ``TEMPORAL_NAMESPACE`` from the environment win
over ``settings.temporal`` (same variables as the ``temporal`` CLI), see ``temporal_target``.

``owned_runtime()`` is how a short-lived process (the command line) gets rid of the SDK's Rust
threads before the interpreter finalizes; see its docstring for why that matters.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # temporalio is imported when a client is made: `hedgeflow config check` needs none
    from temporalio.client import Client
    from temporalio.runtime import Runtime, TelemetryConfig

    from config import Settings

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"


class TemporalUnavailable(RuntimeError):
    """The Temporal frontend could not be reached within the connect budget."""

    def __init__(self, address: str, cause: BaseException | None = None) -> None:
        self.address = address
        detail = f" ({cause})" if cause else ""
        super().__init__(f"cannot reach Temporal at {address}; is `hedgeflow up` running?{detail}")


def temporal_target(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(address, namespace): environment ``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE`` first,
    then ``settings.temporal``, then 127.0.0.1:7233 / default."""
    env = os.environ if environ is None else environ
    address = env.get("TEMPORAL_ADDRESS") or (settings.temporal.address if settings else DEFAULT_ADDRESS)
    namespace = env.get("TEMPORAL_NAMESPACE") or (
        settings.temporal.namespace if settings else DEFAULT_NAMESPACE
    )
    return address, namespace


async def connect(
    settings_or_address: Settings | str | None = None,
    namespace: str | None = None,
    *,
    timeout_s: float = 10.0,
    runtime: Runtime | None = None,
    identity: str | None = None,
) -> Client:
    """Connect with the pydantic data converter, retrying for up to ``timeout_s`` seconds.

    ``settings_or_address``: a ``Settings`` (address/namespace via ``temporal_target``), an
    ``host:port`` string, or None (environment, then defaults). ``namespace`` overrides either.
    Raises ``TemporalUnavailable`` ("cannot reach Temporal at ADDRESS; is `hedgeflow up` running?").
    """
    if isinstance(settings_or_address, str):
        address, ns = settings_or_address, namespace or DEFAULT_NAMESPACE
    else:
        address, ns = temporal_target(settings_or_address)
        ns = namespace or ns
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    kwargs: dict[str, object] = {"namespace": ns, "data_converter": pydantic_data_converter}
    runtime = runtime if runtime is not None else _scope_runtime()
    if runtime is not None:
        kwargs["runtime"] = runtime
    if identity is not None:
        kwargs["identity"] = identity
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(
                Client.connect(address, **kwargs), timeout=max(1.0, min(5.0, remaining))  # type: ignore[arg-type]
            )
        except Exception as exc:  # includes TimeoutError
            last = exc
        if time.monotonic() + delay >= deadline:
            raise TemporalUnavailable(address, _short(last))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def _short(exc: BaseException | None) -> BaseException | None:
    """A one-line cause for the operator, not a Rust transport dump."""
    if exc is None:
        return None
    if isinstance(exc, TimeoutError):
        return RuntimeError("timed out")
    text = str(exc).strip()
    if "ConnectionRefused" in text or "Connection refused" in text:
        return RuntimeError("connection refused")
    first = text.splitlines()[0] if text else type(exc).__name__
    return RuntimeError(first if len(first) <= 160 else first[:157] + "...")


def telemetry_config(**kwargs: object) -> TelemetryConfig:
    """The SDK core's telemetry for a runtime this process makes: its Rust log lines (WARN and
    up) forwarded into Python logging as logger ``temporalio.core``, so they come out in the
    process's log format (JSON lines by default) instead of the core's own console format."""
    import logging

    from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryConfig, TelemetryFilter

    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    return TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding),
        **kwargs,  # type: ignore[arg-type]
    )


# --- one runtime per command-line invocation -------------------------------------------------
#
# Why: the SDK's default ``Runtime`` (used by ``Client.connect`` when given none) is a module
# global, so it lives until the interpreter finalizes. Its Rust core runs a Tokio thread pool;
# when that runtime is finally dropped *during* ``Py_Finalize`` the SDK cannot release the GIL
# around the drop any more (``CoreRuntimeHandle::drop`` in temporalio/bridge/src/runtime.rs only
# does so while Python is alive), so a Tokio thread that wakes up and needs the GIL then (a
# future completing, a task being cancelled at shutdown) finds the interpreter finalizing: CPython
# ends that thread from inside ``PyGILState_Ensure``, the unwinding runs pyo3's guard, which calls
# ``PyGILState_Release`` for a thread state that was never made current, and CPython aborts:
# "Fatal Python error: PyGILState_Release: thread state ... must be current when releasing /
# Python runtime state: finalizing", exit 134 (temporalio/sdk-python#300; pyo3-async-runtimes#40
# and lancedb#4175 are the same race in other Tokio-backed SDKs). It happened in about 2 of 40
# CLI runs, after the command's work was done and printed.
#
# The fix: while ``owned_runtime()`` is active, ``connect`` builds its clients on a runtime this
# scope owns; leaving the scope drops it — the last reference, with the interpreter fully alive —
# so the SDK shuts the Tokio pool down with the GIL released and joins its threads. By the time
# Python finalizes there is no Rust thread left to race it. ``foreign_threads()`` checks that;
# the command line falls back to ``os._exit`` after flushing if any survived (a runtime it does not
# own, e.g. the SDK default one created by code that bypassed ``connect``).
_scope: list[Runtime | None] | None = None  # None: no scope; [None]: scope, runtime not made yet


def _scope_runtime() -> Runtime | None:
    if _scope is None:
        return None
    if _scope[0] is None:
        from temporalio.runtime import Runtime

        _scope[0] = Runtime(telemetry=telemetry_config())
    return _scope[0]


@contextmanager
def owned_runtime() -> Iterator[None]:
    """Within: clients ``connect`` makes without an explicit ``runtime`` share one runtime this
    scope owns (made on first use). On exit it is dropped and collected, which stops and joins
    the SDK's Tokio threads while Python is alive. Clients must not outlive the scope."""
    global _scope
    outer, _scope = _scope, [None]
    try:
        yield
    finally:
        _scope = outer
        gc.collect()  # the runtime is reachable from clients left in frames or cycles


def foreign_threads() -> int | None:
    """Native threads of this process that Python did not start (the SDK's Tokio workers), or
    None where the OS does not list threads (no ``/proc``)."""
    try:
        tids = {int(t) for t in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return None
    ours = {t.native_id for t in threading.enumerate()}
    return len(tids - ours)
