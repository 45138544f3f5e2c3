"""The ``bybit`` wire dialect of the simulated venue: Bybit's v5 unified-account API (linear
USDT perpetuals, one-way mode), the parts unmodified ``ccxt.async_support.bybit`` calls, over
the simulator's shared core (market, engine, funding, faults, state).

Every answer is HTTP 200 with Bybit's envelope ``{"retCode", "retMsg", "result",
"retExtInfo", "time"}`` (5xx and rate limits aside); core errors (raised with Binance's codes)
are rendered as Bybit retCodes by :mod:`venues.sim.bybit.errors`. Units are base coin, as on
Bybit's linear contracts. :mod:`venues.sim.bybit.endpoints` holds the table and ``DIALECT``.
"""
