"""aiohttp server of the simulated venue, speaking one wire dialect (:mod:`venues.sim.dialects`;
Binance USD-M futures by default, the parts ccxt uses), and :func:`start_sim` / :class:`SimHandle` to run one in this loop.

Routes come from the tables in :mod:`venues.sim.endpoints`. Non-admin requests go through:
shield (execution survives a client disconnect) → faults (outage, latency, error rate) →
request weight → auth (signed endpoints) → handler. Admin endpoints under ``/_sim/`` are
unsigned and bypass faults and weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from . import dialects
from .endpoints import ADMIN_ENDPOINTS, AdminEndpoint, Endpoint
from .errors import SimError
from .options import SimOptions
from .venue import Sim
from .wire import ARRIVED_NS, json_response

log = logging.getLogger("hedgeflow.sim")


class Server:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.dialect = dialects.get(sim.opts.dialect)
        self.app = web.Application(middlewares=[self.middleware], client_max_size=1 << 20)
        for ep in self.dialect.endpoints:
            self.app.router.add_route(ep.method, ep.path, self._endpoint_handler(ep))
        for adm in ADMIN_ENDPOINTS:
            h = self._admin_handler(adm)
            if adm.method == "GET":
                self.app.router.add_get(adm.path, h)
            else:
                self.app.router.add_route(adm.method, adm.path, h)

    def _endpoint_handler(self, ep: Endpoint):
        sim = self.sim

        async def handler(request: web.Request) -> web.StreamResponse:
            raw = request.raw_path
            raw_query = raw.split("?", 1)[1] if "?" in raw else ""
            body = (await request.read()).decode("utf-8", "replace") if request.body_exists else ""
            params = dict(parse_qsl(raw_query, keep_blank_values=True))
            if body and request.content_type != "application/json":
                params.update(parse_qsl(body, keep_blank_values=True))
            if not sim.limiter.charge(ep.cost(params), sim.now_ms()):
                raise SimError(-1003, f"Too many requests; current limit of IP(127.0.0.1) request weight per minute "
                                      f"is {sim.opts.weight_limit}. Please use WebSocket Streams for live "
                                      "updates to avoid bans.", 429)
            if ep.signed:
                self.dialect.authenticate(request.headers, raw_query, body, params, api_key=sim.opts.api_key, secret=sim.secret,
                             server_ms=sim.now_ms())
            return json_response(await ep.handler(sim, request, params))

        return handler

    def _admin_handler(self, adm: AdminEndpoint):
        sim = self.sim

        async def handler(request: web.Request) -> web.StreamResponse:
            return await adm.handler(sim, request)

        return handler

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if request.path.startswith("/_sim/"):
            try:
                return await handler(request)
            except SimError as e:
                return json_response(e.body(), e.status)
        request[ARRIVED_NS] = time.time_ns()  # wall time, as the contract's arrived_ns
        await request.read()
        task = asyncio.ensure_future(self._process(request, handler))
        self.sim._tasks.add(task)
        task.add_done_callback(self.sim._tasks.discard)
        return await asyncio.shield(task)

    async def _process(self, request: web.Request, handler) -> web.StreamResponse:
        f = self.sim.faults
        try:
            if f.outage:
                resp = web.Response(text="<html><body><h1>503 Service Unavailable</h1></body></html>",
                                    status=503, content_type="text/html")
            else:
                if f.latency_ms:
                    await asyncio.sleep(f.latency_ms / 1000)
                if f.error_rate and random.random() < f.error_rate:
                    resp = web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", status=502,
                                        content_type="text/html")
                else:
                    try:
                        resp = await handler(request)
                    except SimError as e:
                        body, status = self.dialect.render_error(e, self.sim.now_ms())
                        resp = json_response(body, status)
                        if e.status == 429:
                            resp.headers["Retry-After"] = str(60 - (self.sim.now_ms() // 1000) % 60)
                    except web.HTTPException as e:
                        resp = web.Response(text=e.text or e.reason, status=e.status, content_type="text/plain")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # pragma: no cover
            log.exception("handler error")
            resp = json_response({"code": -1000, "msg": f"An unknown error occured while processing the request. {e}"}, 500)
        if self.dialect.headers is not None:
            resp.headers.update(self.dialect.headers(self.sim))
        return resp


@dataclass
class SimHandle:
    sim: Sim
    runner: web.AppRunner
    url: str
    port: int
    _loop_task: asyncio.Task | None = None
    _stopped: bool = field(default=False)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for t in list(self.sim.late):  # orders still waiting for execute_late_ms never execute
            t.cancel()
        self.sim.dead_man.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.runner.cleanup()
        if self.sim._tasks:
            await asyncio.gather(*list(self.sim._tasks), return_exceptions=True)
        self.sim.store.close()

    async def __aenter__(self) -> SimHandle:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def start_sim(options: SimOptions | None = None, **kw) -> SimHandle:
    """Start a simulated venue in this event loop; ``port=0`` picks a free port."""
    opts = options or SimOptions(**kw)
    sim = Sim(opts)
    server = Server(sim)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port, reuse_address=True)
    await site.start()
    port = opts.port
    if not port:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    handle = SimHandle(sim, runner, f"http://{opts.host}:{port}", port)
    handle._loop_task = asyncio.ensure_future(sim.funding_loop())
    return handle
