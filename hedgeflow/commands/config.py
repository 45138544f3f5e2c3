"""``hedgeflow config check|show``: validate and print the effective configuration (secrets masked)."""

from __future__ import annotations

import argparse
import json

HELP = "validate the configuration and print it with secrets masked"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["check", "show"], nargs="?", default="check")
    p.add_argument("--profile", choices=["demo", "replay", "live"], default=None)


def run(args: argparse.Namespace) -> int:
    from hedgeflow.cli import settings_from

    settings = settings_from(args)
    if args.action == "show":
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
    else:
        print(f"config ok: profile {settings.profile}, mode {settings.mode}, venues "
              + ", ".join(v.name for v in settings.venues))
    return 0
