"""The Hyperliquid wire dialect of the simulated venue (``hedgeflow sim --dialect hyperliquid``):
``POST /info`` (unsigned queries) and ``POST /exchange`` (signed actions) over the shared core,
enough for unmodified ``ccxt.async_support.hyperliquid`` with ``urls['api']`` pointed at the
venue and ``walletAddress`` + ``privateKey`` credentials. See :mod:`.endpoints`."""
