"""``hedgeflow bootstrap``: prepare a Temporal cluster for hedgeflow (docker compose's one-shot
job): register the search attributes, migrate the ledger, start the ``scanner`` and
``reconcile`` workflows (running ones are kept)."""

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
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    from hedgeflow.cli import settings_from
    from ledger import Ledger, mask_url
    from workers.client import connect
    from workers.devserver import SEARCH_ATTRIBUTES
    from workers.supervisor import ensure_reconcile, ensure_scanner

    settings = settings_from(args)
    ledger = await asyncio.to_thread(Ledger.for_settings, settings)
    print(f"ledger migrated: {mask_url(ledger.url)}")
    client = await connect(settings, timeout_s=args.wait)
    ns = client.namespace
    have = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=ns))
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in have.custom_attributes}
    if missing:
        kinds = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=ns, search_attributes={k: kinds[v] for k, v in missing.items()})
        )
    print(f"search attributes: {', '.join(SEARCH_ATTRIBUTES)}" + (f" (added {', '.join(missing)})" if missing else ""))
    if not args.no_scanner:
        print("scanner: " + ("running" if await ensure_scanner(client, settings) else "not available"))
    print("reconcile: " + ("running" if await ensure_reconcile(client, settings) else "disabled"))
    return 0
