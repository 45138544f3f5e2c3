"""``hedgeflow bootstrap``: prepare a Temporal cluster for hedgeflow (docker compose's one-shot
job, or once by hand for an external cluster such as Temporal Cloud): register the search
attributes, migrate the ledger, start the ``scanner`` and ``reconcile`` workflows (running ones are
kept).

It connects with the ``temporal`` profile (address, namespace, TLS, API key; Temporal's own
``TEMPORAL_*`` environment configuration fills what the settings leave out). Search attributes are
added through the operator API where the client may (a self-hosted cluster, the dev server); where it
may not (Temporal Cloud: an API key or certificate without namespace-admin rights on that API) it
prints the exact ``tcld`` command and stops, exit 1, before starting workflows that would fail.
"""

from __future__ import annotations

import argparse
import asyncio

HELP = "register search attributes, migrate the ledger, ensure the scanner and reconcile workflows"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-scanner", action="store_true", help="do not start the scanner")
    p.add_argument("--wait", type=float, default=120, metavar="S", help="wait this long for Temporal")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import CliError, settings_from
    from ledger import Ledger, mask_url
    from workers.client import connect
    from workers.devserver import SEARCH_ATTRIBUTES
    from workers.supervisor import (
        SearchAttributesMissing,
        ensure_reconcile,
        ensure_scanner,
        ensure_search_attributes,
    )

    settings = settings_from(args)
    ledger = await asyncio.to_thread(Ledger.for_settings, settings)
    print(f"ledger migrated: {mask_url(ledger.url)}")
    client = await connect(settings, timeout_s=args.wait)
    t = settings.temporal
    print(f"temporal: {t.address} (namespace {t.namespace}, {t.security()})")
    try:
        added = await ensure_search_attributes(client)
    except SearchAttributesMissing as exc:
        raise CliError(str(exc), 1) from None
    print(f"search attributes: {', '.join(SEARCH_ATTRIBUTES)}" + (f" (added {', '.join(added)})" if added else ""))
    if not args.no_scanner:
        print("scanner: " + ("running" if await ensure_scanner(client, settings) else "not available"))
    print("reconcile: " + ("running" if await ensure_reconcile(client, settings) else "disabled"))
    return 0
