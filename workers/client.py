"""One way to get a Temporal client: pydantic data converter (Decimal money end to end),
the ``temporal`` connection profile (address, namespace, TLS, API key), bounded connect retry, and
an operator-facing error when the server is not there or refuses this client.

The profile is resolved when the settings load (config/temporal.py: the settings first, Temporal's
own ``TEMPORAL_*`` environment configuration filling what they leave out); ``connect(settings)``
uses it as it is, ``connect("host:port")`` is plaintext (tests, the dev server).

``owned_runtime()`` is how a short-lived process (the command line) gets rid of the SDK's Rust
threads before the interpreter finalizes; see its docstring for why that matters.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from config.temporal import DEFAULT_ADDRESS, DEFAULT_NAMESPACE

if TYPE_CHECKING:  # temporalio is imported when a client is made
    from temporalio.client import Client
    from temporalio.runtime import Runtime, TelemetryConfig

    from config import Settings
    from config.temporal import TemporalConfig

#: a connection closed right after the TLS handshake, seen this many times in a row: give up rather
#: than retry until the deadline. From the client's side a refused client certificate looks like that
#: (TLS 1.3 checks it after the handshake), and so does a TLS proxy that lost its server, which may
#: pass; a certificate or name the client rejects itself does not, and ends the first attempt.
REFUSED_ATTEMPTS = 3


class TemporalUnavailable(RuntimeError):
    """The Temporal frontend could not be reached within the connect budget."""

    def __init__(self, address: str, cause: BaseException | None = None) -> None:
        self.address, self.cause = address, cause
        detail = f" ({cause})" if cause else ""
        super().__init__(f"cannot reach Temporal at {address}; is `hedgeflow up` running?{detail}")


class TemporalRefused(TemporalUnavailable):
    """The frontend (or a TLS proxy before it) answered but refused this client: a certificate,
    TLS on one side only, or the API key. ``reason`` is one line naming the setting to fix."""

    def __init__(self, address: str, reason: str) -> None:
        RuntimeError.__init__(self, f"Temporal at {address} refused the connection: {reason}")
        self.address, self.reason = address, reason


def temporal_target(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(address, namespace): ``settings.temporal`` (resolved at load with Temporal's own
    environment configuration filling what the settings leave out, see config/temporal.py); without
    settings ``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE``, then 127.0.0.1:7233 / default."""
    if settings is not None:
        return settings.temporal.address, settings.temporal.namespace
    env = os.environ if environ is None else environ
    return env.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS, env.get("TEMPORAL_NAMESPACE") or DEFAULT_NAMESPACE


def connect_options(temporal: TemporalConfig) -> dict[str, object]:
    """``Client.connect`` keyword arguments of the ``temporal`` section: namespace, ``tls`` (a
    ``TLSConfig`` with the PEMs read at load, or False) and ``api_key``."""
    from temporalio.service import TLSConfig

    opts: dict[str, object] = {"namespace": temporal.namespace, "tls": False}
    if temporal.tls is not None:
        ca, cert, key = temporal.tls.pems()
        opts["tls"] = TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key,
                                domain=temporal.tls.server_name)
    if temporal.api_key is not None:
        opts["api_key"] = temporal.api_key.get_secret_value()
    return opts


async def connect(
    settings_or_address: Settings | str | None = None,
    namespace: str | None = None,
    *,
    timeout_s: float = 10.0,
    runtime: Runtime | None = None,
    identity: str | None = None,
) -> Client:
    """Connect with the pydantic data converter, retrying for up to ``timeout_s`` seconds.

    ``settings_or_address``: a ``Settings`` (its ``temporal`` profile: address, namespace, TLS,
    API key), a plaintext ``host:port`` string, or None (``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE``,
    then the defaults). ``namespace`` overrides either.
    Raises ``TemporalRefused`` (one line: what was refused and the setting to fix) when the server
    or a TLS proxy refuses this client, else ``TemporalUnavailable`` ("cannot reach Temporal at
    ADDRESS; is `hedgeflow up` running?").
    """
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    temporal = None if isinstance(settings_or_address, str) or settings_or_address is None \
        else settings_or_address.temporal
    if temporal is not None:
        address, kwargs = temporal.address, connect_options(temporal)
    else:
        address, ns = (settings_or_address, DEFAULT_NAMESPACE) if isinstance(settings_or_address, str) \
            else temporal_target(None)
        kwargs = {"namespace": ns}
    if namespace:
        kwargs["namespace"] = namespace
    kwargs["data_converter"] = pydantic_data_converter
    runtime = runtime if runtime is not None else _scope_runtime()
    if runtime is not None:
        kwargs["runtime"] = runtime
    if identity is not None:
        kwargs["identity"] = identity
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    last: BaseException | None = None
    streak, last_reason = 0, None  # the same refusal, attempts in a row
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(
                Client.connect(address, **kwargs), timeout=max(1.0, min(5.0, remaining))  # type: ignore[arg-type]
            )
        except Exception as exc:  # includes TimeoutError
            last = exc
        reason = refusal(last, temporal)
        streak, last_reason = (streak + 1 if reason == last_reason else 1) if reason else 0, reason
        if "after connection" not in str(last):
            needed = 1  # the client itself rejected the server: that does not pass
        else:  # closed after connecting: a plaintext server restarting can look so; it gets the whole budget
            needed = REFUSED_ATTEMPTS if temporal is not None and temporal.tls is not None else 1 << 30
        if reason and (streak >= needed or time.monotonic() + delay >= deadline):
            raise TemporalRefused(address, reason)
        if time.monotonic() + delay >= deadline:
            raise TemporalUnavailable(address, _short(last))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def _setting(temporal: TemporalConfig | None, key: str) -> str:
    return temporal.setting(key) if temporal is not None else f"temporal.{key}"


def refusal(exc: BaseException | None, temporal: TemporalConfig | None) -> str | None:
    """One line for a connect error that means "this client is refused" (TLS on one side only, a
    certificate not trusted either way, the API key), naming the setting to fix; None for an
    error that may pass (nothing listening yet, a timeout)."""
    text = str(exc or "")
    tls = temporal.tls if temporal is not None else None
    if "InvalidCertificate(NotValidForName" in text:
        expected = re.search(r'expected: \w+\("([^"]+)"\)', text)
        names = re.findall(r'(?:DnsName|IpAddress)\(\\?"?([^"\\)]+)', text.split("presented:", 1)[-1])
        return (f"TLS: the server's certificate is not valid for {expected.group(1) if expected else 'this name'}"
                f"{' (it names ' + ', '.join(names) + ')' if names else ''}; set {_setting(temporal, 'tls.server_name')} "
                "to a name it carries, or connect by that name")
    if "InvalidCertificate(Expired" in text:
        return "TLS: the server's certificate has expired"
    if "InvalidCertificate(" in text:
        ca = f"the CA in {_setting(temporal, 'tls.ca')}" if tls is not None and tls.ca_data else "a CA this machine trusts"
        return (f"TLS: the server's certificate is not signed by {ca}; set {_setting(temporal, 'tls.ca')} "
                "to the CA that signed it")
    if "InvalidContentType" in text or "InvalidMessage(" in text or "CorruptMessage" in text:
        return (f"TLS: the server does not speak TLS on this port; remove {_setting(temporal, 'tls')} "
                "(and the API key) for a plaintext server, or check temporal.address")
    if "AlertReceived(" in text or "call error after connection" in text and (
            "connection closed" in text or "BrokenPipe" in text or "ConnectionReset" in text):
        if tls is None:
            return (f"it closed the connection: does it expect TLS? set {_setting(temporal, 'tls')} "
                    "(and the client certificate, if it asks for one)")
        proxy = ", or a TLS proxy there cannot reach its server"
        if tls.cert_data is None:
            return ("TLS: it closed the connection after the handshake: it requires a client certificate "
                    f"(set {_setting(temporal, 'tls.cert')} and {_setting(temporal, 'tls.key')}){proxy}")
        return (f"TLS: it closed the connection after the handshake: it does not accept the client certificate "
                f"in {_setting(temporal, 'tls.cert')} (signed by a CA it does not trust?){proxy}")
    if "Unauthenticated" in text or "PermissionDenied" in text:
        said = re.search(r'message: "([^"]*)"', text)
        return (f"the credentials were refused ({said.group(1) if said else 'unauthenticated'}); check "
                f"{_setting(temporal, 'api_key')} (or api_key_file) and temporal.namespace")
    return None


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
