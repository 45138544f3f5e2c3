"""docker-compose.yml, the Dockerfile and the Prometheus/Grafana files checked against the code:
services and their commands, pinned images, ports on 127.0.0.1, healthchecks, secrets from the
env file, and every metric the alert rules and the dashboard use exists in the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hedgeflow.cli import COMMANDS, build_parser
from telemetry.metrics import REGISTRY, metric_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PROM = ROOT / "deploy/prometheus/prometheus.yml"
RULES = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/hedgeflow.json"
PROMQL_WORDS = {"sum", "by", "max", "min", "rate", "increase", "histogram_quantile", "or", "and", "time", "le",
                "without", "avg", "count", "on", "ignoring", "bool", "offset", "unless", "group_left"}
#: series of the Temporal SDK the dashboard uses (checked live by test_operations)
TEMPORAL_SERIES = {"temporal_activity_schedule_to_start_latency_bucket", "temporal_worker_task_slots_available"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def metric_refs(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b", expr))
    return {n for n in names if n not in PROMQL_WORDS and ("_" in n) and not n.isdigit()}


def test_services_and_commands(compose):
    services = compose["services"]
    expected = {"postgresql", "temporal-admin-tools-schema", "temporal", "temporal-ui", "temporal-admin-tools",
                "worker", "bootstrap", "sim-a", "sim-b", "sim-c", "prometheus", "grafana"}
    assert expected <= set(services), expected - set(services)
    parser = build_parser()
    for name, svc in services.items():
        if svc.get("build") is not None:
            cmd = svc["command"]
            assert cmd[0] in COMMANDS, f"{name}: unknown hedgeflow command {cmd[0]}"
            parser.parse_args(cmd)  # raises SystemExit on bad arguments
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] >= 1 and "ports" not in services["worker"]  # scalable
    assert services["bootstrap"]["command"] == ["bootstrap"]
    assert services["temporal-ui"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["temporal"]["depends_on"]["temporal-admin-tools-schema"]["condition"] == \
        "service_completed_successfully"
    cfg = yaml.safe_load((ROOT / "deploy/hedgeflow.compose.yaml").read_text())
    from config import load_settings

    settings = load_settings(ROOT / "deploy/hedgeflow.compose.yaml", environ={})
    assert {v.name for v in settings.venues} == {"sim-a", "sim-b", "sim-c"} == {
        n for n in services if n.startswith("sim-")}
    assert cfg["metrics_host"] == "0.0.0.0" and settings.metrics_port == 9464


def test_images_pinned_ports_local_healthchecks_secrets(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: image not pinned: {image!r}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not bound to 127.0.0.1"
        if svc.get("restart") != "no":
            assert "healthcheck" in svc or name == "worker", f"{name}: no healthcheck"
        env = svc.get("environment", {})
        for k, v in (env.items() if isinstance(env, dict) else []):
            if re.search(r"PASSWORD|SECRET|PWD|TOKEN|WEBHOOK", k) and v:
                assert str(v).startswith("${"), f"{name}: {k} must come from the env file"
    text = COMPOSE.read_text()
    assert "change-me" not in text and "hedgeflow-demo-secret" not in text
    example = (ROOT / ".env.example").read_text()
    for var in re.findall(r"(?<!\$)\$\{([A-Z_]+)", text):  # $${...} is the container's own
        assert f"{var}=" in example, f".env.example lacks {var}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "USER hedgeflow" in dockerfile


def test_prometheus_rules_and_dashboard_use_metrics_that_exist():
    known = metric_names(REGISTRY) | TEMPORAL_SERIES | {"up"}
    prom = yaml.safe_load(PROM.read_text())
    assert "/etc/prometheus/alerts.yml" in prom["rule_files"]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["hedgeflow-worker"]["dns_sd_configs"][0]["port"] == 9464
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"HedgeflowEmergencyClose", "HedgeflowOrphanPosition", "HedgeflowVenueDown", "HedgeflowNoTrades"} <= names
    used = set()
    for r in rules:
        used |= metric_refs(r["expr"])
    dash = json.loads(DASHBOARD.read_text())
    for p in dash["panels"]:
        for t in p["targets"]:
            used |= metric_refs(t["expr"])
    missing = used - known
    assert not missing, f"metrics used but not defined: {sorted(missing)}"
    # and the listed application series are all on the dashboard
    for must in ("hedgeflow_trades", "hedgeflow_leg_skew_seconds_bucket", "hedgeflow_open_to_hedged_seconds_bucket",
                 "hedgeflow_orphan_exposure_seconds_bucket", "hedgeflow_hedge_gap_ratio_bucket",
                 "hedgeflow_funding_collected_usd", "hedgeflow_fees_usd", "hedgeflow_realized_pnl_usd",
                 "hedgeflow_venue_errors_total", "hedgeflow_scanner_cycle_seconds_bucket",
                 "hedgeflow_opportunities_total"):
        assert must in used, must
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/hedgeflow.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_docker_compose_config_validates():
    if shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose"]
    else:
        pytest.skip("no `docker compose` plugin and no `docker-compose` binary on this machine")
    env_file = ROOT / ".env"
    created = not env_file.exists()
    if created:
        env_file.write_text((ROOT / ".env.example").read_text())
    try:
        r = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    finally:
        if created:
            env_file.unlink()
    assert r.returncode == 0, r.stderr
