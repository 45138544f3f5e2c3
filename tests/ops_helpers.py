"""Helpers for the operations tests: a throw-away PostgreSQL database when one is reachable,
a webhook receiver, and a Prometheus text reader."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> tuple[str | None, str]:
    """(URL of a reachable PostgreSQL, reason) — ``HEDGEFLOW_TEST_PG_URL`` or the local server."""
    from sqlalchemy import create_engine, text

    url = os.environ.get("HEDGEFLOW_TEST_PG_URL") or PG_DEFAULT
    try:
        eng = create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return url, "reachable"
    except Exception as exc:  # noqa: BLE001
        return None, f"no PostgreSQL at {url.split('@')[-1]} ({type(exc).__name__}); set HEDGEFLOW_TEST_PG_URL"


@contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """CREATE a database named hf_test_<random>, yield its URL, DROP it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class WebhookReceiver:
    """An aiohttp server collecting POSTed JSON bodies; ``fail_next`` answers 500 n times."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail_next = 0
        self.url = ""
        self._runner = None

    async def start(self) -> None:
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.Response(status=500)
            self.bodies.append(body)
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/hook/{token}", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook/T0KEN-secret-123"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def texts(self) -> list[str]:
        return [b.get("text") or b.get("content") or "" for b in self.bodies]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    if not found:
        raise KeyError(f"no sample {name}{labels or ''}")
    return total


async def eventually(fn, timeout: float = 30, interval: float = 0.25):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            v = fn()
            if asyncio.iscoroutine(v):
                v = await v
            if v:
                return v
        except (AssertionError, KeyError):
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        await asyncio.sleep(interval)
