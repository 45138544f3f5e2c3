"""A sim venue of each dialect started as the project starts it (``hedgeflow up``:
:func:`workers.simproc.sim_venue_args`) accepts the gateway's defaults for that venue (companion of
tests/test_gateway_dialects.py)."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import VenueConfig
from tests.test_gateway_dialects import DIALECTS, unified
from venues.gateway import Gateway


@pytest.mark.parametrize("which", DIALECTS)
async def test_sim_started_as_the_project_does_accepts_the_venue_defaults(
    which: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hedgeflow up`` starts a sim venue with :func:`workers.simproc.sim_venue_args`; the gateway's
    defaults for that venue (no credentials configured) then sign in, and no secret is on the
    command line (which the supervisor writes to the logs)."""
    from venues.sim import build_parser, options_from_args, start_sim
    from workers.simproc import sim_venue_args

    v = VenueConfig(name=f"up-{which[:5]}", kind="sim", dialect=which, port=1)
    args, env = sim_venue_args(v)
    assert args[:2] == ([] if which == "binance" else ["--dialect", which])
    secrets = [s.get_secret_value() for s in (v.api_secret, v.api_password) if s is not None]
    assert secrets and not any(s in " ".join(args) for s in secrets)
    for k in ("HEDGEFLOW_SIM_API_KEY", "HEDGEFLOW_SIM_API_SECRET", "HEDGEFLOW_SIM_API_PASSPHRASE"):
        monkeypatch.delenv(k, raising=False)
    for k, val in env.items():
        monkeypatch.setenv(k, val)
    opts = options_from_args(build_parser().parse_args(
        ["--name", v.name, "--port", "0", "--state", str(tmp_path / "s.sqlite"), *args]))
    handle = await start_sim(opts)
    try:
        async with Gateway(v.model_copy(update={"base_url": handle.url})) as g:
            assert (await g.balance()).total > 0
            await g.set_leverage(unified(which), 3)  # signed (Hyperliquid: by the demo wallet's key)
    finally:
        await handle.stop()


async def test_okx_wrong_passphrase_is_authentication_failed(tmp_path) -> None:
    """Only OKX keys carry a passphrase: a wrong one is refused as bad credentials, never echoed."""
    from pydantic import SecretStr

    from tests.simproc import in_process_sim
    from tests.test_gateway_dialects import sim_options, venue
    from venues.errors import AuthenticationFailed

    async with in_process_sim(tmp_path, name="gwd-okx-pass", seed=5, **sim_options("okx")) as h:
        async with Gateway(venue("okx", h.url, api_password=SecretStr("not-the-passphrase"))) as bad:
            with pytest.raises(AuthenticationFailed) as ei:
                await bad.balance()
            assert "not-the-passphrase" not in str(ei.value)
