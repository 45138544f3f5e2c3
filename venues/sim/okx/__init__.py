"""The OKX v5 wire dialect of the simulated venue (USDT-margined perpetual swaps, sizes in
contracts): ``endpoints`` (table, :data:`~venues.sim.okx.endpoints.DIALECT`) · ``auth``
(signing, error mapping) · ``market`` / ``account`` / ``trade`` (handlers) · ``wire``
(envelope, instruments, contract values, renderers)."""
