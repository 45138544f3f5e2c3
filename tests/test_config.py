"""Configuration: typed models, YAML + env overrides, one clear line per bad field, exit 2."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_demo_defaults():
    s = load_settings(environ={})
    assert [v.name for v in s.venues] == ["sim-a", "sim-b", "sim-c", "sim-d"]
    assert [v.dialect for v in s.venues] == ["binance", "bybit", "okx", "hyperliquid"]
    assert [v.base_url for v in s.venues] == [f"http://127.0.0.1:{p}" for p in (8701, 8702, 8703, 8704)]
    assert s.mode == "paper"
    assert s.temporal.task_queue == "hedgeflow"
    assert s.venues[0].taker_fee == Decimal("0.0005")


def test_yaml_then_env_override(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  leverage: 5\n  max_order_notional_usd: 2000\ntrade:\n  monitor_interval_s: 2\n")
    s = load_settings(cfg, environ={"HEDGEFLOW__LIMITS__LEVERAGE": "7"})
    assert s.limits.leverage == 7  # env wins over the file
    assert s.limits.max_order_notional_usd == Decimal("2000")
    assert s.trade.monitor_interval_s == 2


@pytest.mark.parametrize(
    ("env", "field", "hint"),
    [
        ({"HEDGEFLOW__LIMITS__LEVERAGE": "0"}, "limits.leverage", "greater than or equal to 1"),
        ({"HEDGEFLOW__LIMITS__MAX_ORDER_NOTIONAL_USD": "-5"}, "limits.max_order_notional_usd", "greater than 0"),
        ({"HEDGEFLOW__VENUES": '[{"name": "x", "port": 1, "settle_usd_rate": "2"}]'}, "settle_usd_rate",
         "less than 1.5"),
        ({"HEDGEFLOW__VENUES": '[{"name": "x", "kind": "foo", "port": 1}]'}, "kind", "'sim' or 'ccxt'"),
        (
            {"HEDGEFLOW__MODE": "live", "HEDGEFLOW__VENUES": '[{"name": "binance", "kind": "ccxt"}]'},
            "venues.binance.api_secret",
            "HEDGEFLOW_VENUE_BINANCE_API_SECRET",
        ),
    ],
)
def test_bad_values_name_the_field(env, field, hint):
    with pytest.raises(ConfigError) as ei:
        load_settings(environ=env)
    text = str(ei.value)
    assert field in text and hint in text


def test_live_venue_refused_in_paper_mode():
    env = {
        "HEDGEFLOW__VENUES": '[{"name": "binance", "kind": "ccxt"}]',
        "HEDGEFLOW_VENUE_BINANCE_API_KEY": "k",
        "HEDGEFLOW_VENUE_BINANCE_API_SECRET": "s",
    }
    with pytest.raises(ConfigError, match="mode is 'paper'"):
        load_settings(environ=env)


def test_secrets_are_masked_and_read_from_env_or_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("file-secret-123\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "mode: live\nvenues:\n  - name: binance\n    kind: ccxt\n    exchange_id: binanceusdm\n"
        f"    api_secret_file: {secret_file}\n"
    )
    s = load_settings(cfg, environ={"HEDGEFLOW_VENUE_BINANCE_API_KEY": "env-key-456"})
    v = s.venue("binance")
    assert v.api_secret.get_secret_value() == "file-secret-123"
    assert v.api_key.get_secret_value() == "env-key-456"
    dumped = s.model_dump_json()
    assert "file-secret-123" not in dumped and "env-key-456" not in dumped and "file-secret-123" not in repr(s)


def test_unknown_setting_is_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  levrage: 3\n")
    with pytest.raises(ConfigError, match=r"limits\.levrage: unknown setting"):
        load_settings(cfg, environ={})


def test_cli_exits_2_with_one_line_per_bad_field(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  leverage: 0\n  max_order_notional_usd: -1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}
    proc = subprocess.run(
        [sys.executable, "-m", "hedgeflow", "--config", str(cfg), "config", "check"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    bad = [line for line in proc.stderr.splitlines() if line.strip().startswith("- ")]
    assert len(bad) == 2
    assert any("limits.leverage" in line for line in bad)
    assert any("limits.max_order_notional_usd" in line for line in bad)
    assert proc.stdout == ""
