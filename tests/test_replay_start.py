"""A replay's simulators share one data clock: ``up`` starts them one after another (1-2 wall s
apart: hours of venue time at speed 3600), so it gives every one the same replay start
(``--replay-start-ms``); a simulator resumed from its state keeps its own."""

from __future__ import annotations

from pathlib import Path

from config import load_settings
from venues.sim.options import SimOptions
from venues.sim.venue import Sim
from workers.up_plan import plan, write_replay_config

ROWS = """time,venue,symbol,funding_rate,mark_price
2023-01-01T00:00:00Z,{v},BTC/USDT:USDT,0.0001,16500
2023-01-01T08:00:00Z,{v},BTC/USDT:USDT,0.0002,16600
"""


def _data(tmp_path: Path, venues: list[str]) -> Path:
    path = tmp_path / "replay.csv"
    path.write_text(ROWS.format(v=venues[0]) + "".join(ROWS.format(v=v).split("\n", 1)[1] for v in venues[1:]))
    return path


def test_up_gives_every_simulator_the_same_replay_start(tmp_path):
    data = _data(tmp_path, ["binance", "bybit", "okx"])
    config = write_replay_config(None, data, tmp_path, [])  # as `up --profile replay` does
    settings = load_settings(str(config), profile="replay")
    _dev, sims, _worker = plan(settings, host="127.0.0.1", port=7233, state_dir=tmp_path, config_path=str(config),
                               replay_data=str(data), replay_speed=3600,
                               sim_ready=lambda url: None, worker_ready=lambda needle: None)
    starts = [s.child.cmd[s.child.cmd.index("--replay-start-ms") + 1] for s in sims]
    assert len(sims) >= 2 and len(set(starts)) == 1, starts


def test_a_simulator_maps_the_replay_from_the_given_start_and_a_resumed_one_keeps_its_own(tmp_path):
    data = _data(tmp_path, ["sim-a"])
    state = tmp_path / "sim-a.sqlite"
    opts = SimOptions(name="sim-a", replay=str(data), speed=3600, state=str(state), replay_wall0_ms=1_000_000)
    first = Sim(opts)
    assert first.market.wall0 == 1_000_000
    again = Sim(SimOptions(name="sim-a", replay=str(data), speed=3600, state=str(state), replay_wall0_ms=2_000_000))
    assert again.market.wall0 == 1_000_000  # resumed: the saved clock, not the new start
    fresh = Sim(SimOptions(name="sim-a", replay=str(data), speed=3600, state=":memory:"))
    assert abs(fresh.market.wall0 - fresh.started_ms) == 0  # no start given: when it started
