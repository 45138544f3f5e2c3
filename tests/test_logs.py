"""Structured logs (issue 14): JSON lines on stderr from every process — time, level, logger,
message and the trade/workflow/activity ids where known — INFO by default, ``logging.level`` and
``logging.format`` in the settings (a bad value names the field), the alert lines present, and no
secret in any line: a real worker process with a known API secret and a webhook URL carrying a
token, the command line, and the simulator."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
from trade_harness import ROOT, wait_for

from config import ConfigError, load_settings
from config.logs import JsonFormatter, configure_logging, logging_from_env, secret_fragments
from config.settings import LoggingConfig
from messages.trade import Alert
from workers.logs import ActivityContext
from workers.proc import free_port
from workflows.alerts import AlertWorkflow

API_SECRET = "hf-logtest-SECRET-9f3kQ2"
API_KEY = "hf-logtest-KEY-7h2"
HOOK_TOKEN = "T0KEN-logtest-4d8e1c7b"


def test_logging_settings_default_and_validation():
    assert load_settings(environ={}).logging == LoggingConfig(level="INFO", format="json")
    s = load_settings(environ={"HEDGEFLOW__LOGGING__LEVEL": "debug", "HEDGEFLOW__LOGGING__FORMAT": "TEXT"})
    assert (s.logging.level, s.logging.format) == ("DEBUG", "text")
    for key, value in (("LEVEL", "verbose"), ("FORMAT", "xml")):
        with pytest.raises(ConfigError) as exc:
            load_settings(environ={f"HEDGEFLOW__LOGGING__{key}": value})
        assert exc.value.problems[0].startswith(f"logging.{key.lower()}: Input should be"), exc.value.problems
        with pytest.raises(ConfigError) as exc:
            logging_from_env({f"HEDGEFLOW__LOGGING__{key}": value})
        assert exc.value.problems[0].startswith(f"logging.{key.lower()}: "), exc.value.problems


def _record(msg: str, *args, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("hedgeflow.alerts", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_carries_ids_and_masks_secrets():
    url = f"https://hooks.example.com/services/{HOOK_TOKEN}"
    fmt = JsonFormatter(secret_fragments([url, API_SECRET, None]))
    details = {"activity_id": "3", "activity_type": "send_alert", "attempt": 2, "workflow_id": "trade-X-a-b-1-alert-4",
               "workflow_run_id": "run-1", "workflow_type": "AlertWorkflow", "task_queue": "q", "namespace": "default"}
    # activity.logger appends its dict to the message and puts it in extra: the line has fields instead
    line = json.loads(fmt.format(_record(f"posting to %s with %s ({details})", f"/services/{HOOK_TOKEN}", API_SECRET,
                                         temporal_activity=details)))
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["message"] == "posting to ********** with **********"
    assert (line["trade_id"], line["workflow_id"], line["run_id"], line["activity_id"], line["attempt"]) == (
        "trade-X-a-b-1", "trade-X-a-b-1-alert-4", "run-1", "3", 2)
    assert line["time"].endswith("+00:00") and line["level"] == "INFO"
    wf = json.loads(fmt.format(_record("step", temporal_workflow={"workflow_id": "trade-Y", "run_id": "r"})))
    assert (wf["trade_id"], wf["workflow_id"], wf["run_id"]) == ("trade-Y", "trade-Y", "r")


def test_configure_logging_levels_and_text_format():
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        handler = configure_logging(LoggingConfig(level="WARNING", format="text"), secrets=[API_SECRET], stream=buf)
        logging.getLogger("hedgeflow.x").info("not written")
        logging.getLogger("hedgeflow.x").warning("written %s", API_SECRET)
        assert buf.getvalue().count("\n") == 1 and "WARNING hedgeflow.x written **********" in buf.getvalue()
        handler2 = configure_logging(None, stream=buf)  # replaces our handler, INFO json
        assert handler not in root.handlers and handler2 in root.handlers
        logging.getLogger("aiohttp.access").info("a request line")  # QUIET below DEBUG
        logging.getLogger("hedgeflow.x").info("info now")
        assert json.loads(buf.getvalue().splitlines()[-1])["message"] == "info now"
    finally:
        root.removeHandler(handler2)
        root.setLevel(level)


def test_activity_context_outside_an_activity_adds_nothing():
    rec = _record("plain")
    assert ActivityContext().filter(rec) and not hasattr(rec, "temporal_activity")


def _lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


def _no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, f"secret {s[:6]}… logged"


async def test_worker_and_cli_log_json_with_ids_and_never_a_secret(temporal_env, tmp_path):
    queue = "logs-" + os.urandom(4).hex()
    dead = free_port()  # nothing listens: the venue is down and the webhook unreachable
    hook = f"http://127.0.0.1:{dead}/hook/{HOOK_TOKEN}"
    venues = [{"name": "sim-a", "kind": "sim", "base_url": f"http://127.0.0.1:{dead}", "api_key": API_KEY,
               "api_secret": API_SECRET}]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")},
           "HEDGEFLOW__VENUES": json.dumps(venues), "HEDGEFLOW__METRICS_PORT": "0", "HEDGEFLOW_CONFIG": "",
           "HEDGEFLOW__STATE_DIR": str(tmp_path), "TEMPORAL_ADDRESS": temporal_env.address,
           "HEDGEFLOW__TEMPORAL__TASK_QUEUE": queue, "HEDGEFLOW__ALERTS__WEBHOOK_URL": hook,
           "HEDGEFLOW__ALERTS__TIMEOUT_S": "1"}
    err_path = tmp_path / "worker.err"
    worker = _start_worker(env, err_path)
    try:
        await asyncio.wait_for(asyncio.to_thread(_ready, worker), 60)
        client = await temporal_env.client()
        trade_id = "trade-S001USDT-sim-a-sim-b-logtest" + os.urandom(3).hex()
        # the alert text carries the venue secret, as a careless message might: the line masks it
        h = await client.start_workflow(AlertWorkflow.run, Alert(kind="venue_unhealthy", trade_id=trade_id,
                                        message=f"sim-a refused key {API_SECRET}", severity="warning"),
                                        id=f"{trade_id}-alert-1", task_queue=queue)

        def alert_and_failure():
            lines = _lines(err_path.read_text())
            alert = [x for x in lines if x["logger"] == "hedgeflow.alerts" and x["message"].startswith("ALERT ")]
            failed = [x for x in lines if x["level"] == "WARNING" and x.get("activity_type") == "send_alert"]
            return (alert, failed) if alert and failed else None

        alert, failed = await wait_for(alert_and_failure, timeout=40, what="the alert line and its failed delivery")
        await h.terminate("test done")  # an alert workflow holds no position
    finally:
        worker.send_signal(signal.SIGINT)
        out = await asyncio.to_thread(worker.communicate, timeout=30)
    text = err_path.read_text()
    lines = _lines(text)
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert not [x for x in text.splitlines() if x and not x.startswith("{") and not x.startswith("worker: ")], text[-2000:]
    a = alert[0]
    assert a["level"] == "WARNING" and "venue_unhealthy" in a["message"] and "**********" in a["message"]
    assert (a["trade_id"], a["workflow_id"], a["activity_type"]) == (trade_id, f"{trade_id}-alert-1", "send_alert")
    assert a["activity_id"] and a["run_id"] and a["attempt"] >= 1
    assert any(x["message"].startswith("hedgeflow 0.1.0, ccxt") for x in lines)  # the versions line, logged
    assert any(x["logger"] == "hedgeflow.venues" for x in lines)  # the venue down at start-up, logged
    _no_secret(text + (out[0] or ""), API_SECRET, API_KEY, HOOK_TOKEN, hook)

    # the command line: same format, same masking (status reaches the dead venue; config show masks)
    for args in (["status"], ["config", "show"], ["trade", "list"]):
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "hedgeflow", *args], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-1000:]
        assert all(x.startswith("{") for x in r.stderr.splitlines()), r.stderr[-1000:]
        _no_secret(r.stdout + r.stderr, API_SECRET, API_KEY, HOOK_TOKEN, hook)


def _start_worker(env: dict[str, str], err_path) -> subprocess.Popen:
    """``hedgeflow worker`` with its stderr (the log) in ``err_path``."""
    with open(err_path, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "hedgeflow", "worker", "--graceful-timeout", "1"], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)


def _ready(worker: subprocess.Popen) -> None:
    for line in worker.stdout:
        if line.startswith("worker ready"):
            return
    raise AssertionError("worker ended before it was ready")


def test_simulator_logs_json_without_its_secret(tmp_path):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEDGEFLOW")}, "HEDGEFLOW__LOGGING__LEVEL": "debug"}
    cmd = [sys.executable, "-m", "venues.sim", "--name", "sim-x", "--port", str(port), "--state",
           str(tmp_path / "x.sqlite"), "--api-key", API_KEY, "--api-secret", API_SECRET]
    sim = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in sim.stdout.readline()
        import urllib.request

        urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/state", timeout=10).read()
    finally:
        sim.send_signal(signal.SIGINT)
        out, err = sim.communicate(timeout=20)
    assert sim.returncode == 0, err[-1000:]
    assert err.strip() and all(line.startswith("{") for line in err.splitlines()), err[-1000:]
    assert any(x["level"] == "DEBUG" for x in _lines(err)), err[-1000:]  # HEDGEFLOW__LOGGING__LEVEL applied
    _no_secret(out + err, API_SECRET)
    bad = subprocess.run(cmd, cwd=ROOT, env={**env, "HEDGEFLOW__LOGGING__LEVEL": "loud"}, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "logging.level" in bad.stderr
