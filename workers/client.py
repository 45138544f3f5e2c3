"""One way to get a Temporal client: pydantic data converter (Decimal money end to end),
bounded connect retry, and an operator-facing error when the server is not there.

Address and namespace: ``TEMPORAL_ADDRESS`` / ``TEMPORAL_NAMESPACE`` from the environment win
over ``settings.temporal`` (same variables as the ``temporal`` CLI), see ``temporal_target``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

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
    kwargs: dict[str, object] = {"namespace": ns, "data_converter": pydantic_data_converter}
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
