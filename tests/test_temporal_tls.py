"""Connection profiles end to end, through a real TLS proxy that requires a client certificate.

The test makes its own certificates (``cryptography``): a CA, a server certificate for
127.0.0.1/localhost, a client certificate from that CA and a "wrong" one from another CA. It starts
nginx from Debian (``nginx -p DIR -c nginx.conf -g 'daemon off;'``, everything in tmp) in front of
the session's dev server: the ``stream`` module terminates TLS with ``ssl_verify_client on`` and
passes the bytes (plaintext gRPC) on. Then, all through the proxy:

* the command line (``hedgeflow trade list``, a real process) connects with ``temporal.tls`` from
  the settings, from ``TEMPORAL_ADDRESS``/``TEMPORAL_TLS_*`` only, and from a profile file;
* a worker (``workers.worker.run_worker``) runs a workflow and its activity for a client that
  connected the same way;
* ``hedgeflow up --temporal external`` starts no dev server, its worker connects, and it stops;
  ``hedgeflow bootstrap`` finds the search attributes;
* a wrong client certificate, none at all, an untrusted server and plaintext each end in exit 1
  and one line that names TLS and the setting to change.

Skips only when nginx (or its stream module, Debian ``libnginx-mod-stream``) is not installed.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from temporalio import activity, workflow

from workers.proc import free_ports, tcp_open

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()),
                                      None)


# --------------------------------------------------------------------------- certificates
def _pki(d: Path) -> Path:
    """ca.pem; server.pem/.key (127.0.0.1, localhost); client.pem/.key (same CA); wrong.pem/.key and
    other-ca.pem (another CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(cn: str, key, issuer_key=None, issuer=None, *, ca=False, server=False):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False,
                                              encipher_only=False, decipher_only=False), critical=True)
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                critical=False)
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    def write(stem: str, c, key=None) -> None:
        (d / f"{stem}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            (d / f"{stem}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    d.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca, other = cert("hedgeflow test CA", ca_key, ca=True), cert("some other CA", other_key, ca=True)
    write("ca", ca)
    write("other-ca", other)
    for stem, issuer_key, issuer, server in (("server", ca_key, ca, True), ("client", ca_key, ca, False),
                                             ("wrong", other_key, other, False)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(stem, cert("localhost" if server else "hedgeflow-worker", key, issuer_key, issuer, server=server), key)
    return d


# --------------------------------------------------------------------------- the proxy
def _stream_module() -> str | None:
    """The ``load_module`` line nginx needs for ``stream`` ('' when built in), None if absent."""
    info = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    if "--with-stream " in info or info.rstrip().endswith("--with-stream"):
        return ""
    modules = re.search(r"--modules-path=(\S+)", info)
    so = Path(modules.group(1) if modules else "/usr/lib/nginx/modules") / "ngx_stream_module.so"
    return f"load_module {so};" if so.exists() else None


class Proxy:
    """nginx on a free loopback port: TLS with a required client certificate → the dev server."""

    def __init__(self, d: Path, pki: Path, upstream: str) -> None:
        self.dir, self.port, self.upstream = d, free_ports(1)[0], upstream
        self.address = f"127.0.0.1:{self.port}"
        (d / "logs").mkdir(parents=True, exist_ok=True)
        (d / "nginx.conf").write_text(f"""{_stream_module()}
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
stream {{
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {pki}/server.pem;
    ssl_certificate_key {pki}/server.key;
    ssl_client_certificate {pki}/ca.pem;
    ssl_verify_client on;
    ssl_alpn h2;
    proxy_pass {upstream};
    proxy_timeout 10m;
  }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not tcp_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"nginx did not listen on {self.address}:\n{(d / 'error.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown; its worker process goes with it
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return _pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def proxy(temporal_env, pki, tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx libnginx-mod-stream)")
    if _stream_module() is None:
        pytest.skip(f"{NGINX} has no stream module (Debian: apt-get install libnginx-mod-stream)")
    p = Proxy(tmp_path_factory.mktemp("nginx"), pki, temporal_env.address)
    yield p
    p.stop()


# --------------------------------------------------------------------------- helpers
def tls(pki: Path, cert: str | None = "client", ca: str = "ca") -> dict[str, str]:
    out = {"ca": str(pki / f"{ca}.pem")}
    if cert:
        out |= {"cert": str(pki / f"{cert}.pem"), "key": str(pki / f"{cert}.key")}
    return out


def config(tmp_path: Path, temporal: dict, **extra) -> Path:
    f = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
    f.write_text(yaml.safe_dump({"metrics_port": 0, "state_dir": str(tmp_path / "state"), "temporal": temporal,
                                 **extra}))
    return f


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """This process's environment without any Temporal or hedgeflow configuration, HOME in tmp (no
    profile file of the machine's temporal CLI), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "HEDGEFLOW"))}
    return {**base, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config"), **env}


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hedgeflow", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and "tonic" not in res.stderr, res.stderr
    return lines[0]


# --------------------------------------------------------------------------- the command line
def test_cli_connects_through_the_tls_proxy_with_a_client_certificate(proxy, pki, tmp_path):
    f = config(tmp_path, {"address": proxy.address, "tls": tls(pki)})
    res = cli(clean_env(tmp_path), "--config", str(f), "trade", "list", "--json")
    assert res.returncode == 0, res.stderr
    assert isinstance(yaml.safe_load(res.stdout), list)


@pytest.mark.parametrize("case, temporal, expected", [
    ("wrong client certificate", {"cert": "wrong"},
     "TLS: it closed the connection after the handshake: it does not accept the client certificate in "
     "temporal.tls.cert"),
    ("no client certificate", {"cert": None},
     "TLS: it closed the connection after the handshake: it requires a client certificate (set "
     "temporal.tls.cert and temporal.tls.key), or a TLS proxy there cannot reach its server"),
])
def test_the_cli_refused_says_so_in_one_line(proxy, pki, tmp_path, case, temporal, expected):
    f = config(tmp_path, {"address": proxy.address, "tls": tls(pki, **temporal)})
    line = one_line(cli(clean_env(tmp_path), "--config", str(f), "trade", "list"))
    assert line.startswith(f"hedgeflow: Temporal at {proxy.address} refused the connection: "), line
    assert expected in line, (case, line)


def profile(env: dict[str, str]):
    from config import load_settings

    return load_settings(environ={"HEDGEFLOW__METRICS_PORT": "0", "HOME": "/nonexistent", **env})


def settings_env(address: str, **tls_keys: str | Path) -> dict[str, str]:
    env = {"HEDGEFLOW__TEMPORAL__ADDRESS": address}
    return env | {f"HEDGEFLOW__TEMPORAL__TLS__{k.upper()}": str(v) for k, v in tls_keys.items()}


@pytest.mark.parametrize("case, env, expected", [
    ("server signed by an unknown CA", lambda p, pki: settings_env(p.address, **tls(pki, ca="other-ca")),
     "TLS: the server's certificate is not signed by the CA in temporal.tls.ca; set temporal.tls.ca"),
    ("plaintext to the TLS port", lambda p, pki: settings_env(p.address),
     "it closed the connection: does it expect TLS? set temporal.tls"),
    ("a name the server's certificate lacks",
     lambda p, pki: settings_env(p.address, **tls(pki), server_name="temporal.example"),
     "not valid for temporal.example (it names localhost, 127.0.0.1); set temporal.tls.server_name"),
    ("TLS to a plaintext server", lambda p, pki: settings_env(p.upstream, **tls(pki)),
     "TLS: the server does not speak TLS on this port; remove temporal.tls"),
    ("a wrong certificate from TEMPORAL_TLS_*", lambda p, pki: {
        "TEMPORAL_ADDRESS": p.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki / "ca.pem"),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki / "wrong.pem"), "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki / "wrong.key")},
     "does not accept the client certificate in TEMPORAL_TLS_CLIENT_CERT_PATH"),
])
async def test_each_refusal_is_named_and_not_retried_for_the_whole_budget(proxy, pki, case, env, expected):
    """Plaintext gets the whole budget (a plaintext server restarting can also close a fresh
    connection), and says why at its end; with TLS a refusal is given up after a few attempts."""
    from workers.client import TemporalRefused, connect

    settings = profile(env(proxy, pki))
    budget = 30 if settings.temporal.tls is not None else 3
    t0 = time.monotonic()
    with pytest.raises(TemporalRefused) as err:
        await connect(settings, timeout_s=budget)
    assert expected in str(err.value), (case, str(err.value))
    assert "\n" not in str(err.value)
    if settings.temporal.tls is not None:
        assert time.monotonic() - t0 < 10, "a TLS refusal is given up after a few attempts, not the 30 s budget"


async def test_server_name_that_the_certificate_carries(proxy, pki):
    from workers.client import connect

    client = await connect(profile(settings_env(proxy.address, **tls(pki), server_name="localhost")))
    assert client.service_client.config.target_host == proxy.address


def test_temporal_environment_configuration_alone(proxy, pki, tmp_path):
    """No hedgeflow settings at all: TEMPORAL_ADDRESS and TEMPORAL_TLS_* as the temporal CLI reads
    them, then the same through a profile file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE)."""
    env = clean_env(tmp_path, TEMPORAL_ADDRESS=proxy.address,
                    TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(pki / "ca.pem"),
                    TEMPORAL_TLS_CLIENT_CERT_PATH=str(pki / "client.pem"),
                    TEMPORAL_TLS_CLIENT_KEY_PATH=str(pki / "client.key"),
                    HEDGEFLOW__STATE_DIR=str(tmp_path / "state"))
    res = cli(env, "trade", "list")
    assert res.returncode == 0, res.stderr

    toml = tmp_path / "temporal.toml"
    toml.write_text(f"""[profile.default]
address = "127.0.0.1:9"

[profile.proxy]
address = "{proxy.address}"
[profile.proxy.tls]
server_ca_cert_path = "{pki / 'ca.pem'}"
client_cert_path = "{pki / 'client.pem'}"
client_key_path = "{pki / 'client.key'}"
""")
    env = clean_env(tmp_path, TEMPORAL_CONFIG_FILE=str(toml), TEMPORAL_PROFILE="proxy",
                    HEDGEFLOW__STATE_DIR=str(tmp_path / "state"))
    res = cli(env, "trade", "list")
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------- a worker
@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn(sandboxed=False)  # defined in a test module: keep the sandbox out of pytest
class ShoutWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(shout, text, start_to_close_timeout=timedelta(seconds=10))


async def test_a_worker_runs_a_workflow_through_the_proxy(proxy, pki, tmp_path, task_queue):
    from config import Settings
    from workers.client import connect
    from workers.worker import run_worker

    settings = Settings(venues=[], metrics_port=0, state_dir=tmp_path,
                        temporal={"address": proxy.address, "tls": tls(pki), "env_config": False})
    assert settings.temporal.security() == "mTLS (CA ca.pem, client certificate client.pem)"
    stop = asyncio.Event()
    ready = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop_event=stop, workflows=[ShoutWorkflow], activities=[shout],
                                            task_queue=task_queue, on_ready=lambda _w: ready.set(), quiet=True,
                                            graceful_shutdown_timeout=1))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        client = await connect(settings)
        assert client.service_client.config.target_host == proxy.address
        out = await client.execute_workflow(ShoutWorkflow.run, "through tls", id=f"tls-{uuid.uuid4().hex[:8]}",
                                            task_queue=task_queue, execution_timeout=timedelta(seconds=30))
        assert out == "THROUGH TLS"
    finally:
        stop.set()
        await asyncio.wait_for(worker, 15)


def test_bootstrap_through_the_proxy(proxy, pki, tmp_path):
    """The namespace-side set-up for an external cluster (no scanner and no reconcile here: their
    workflow ids are fixed, and the session's dev server is shared)."""
    f = config(tmp_path, {"address": proxy.address, "tls": tls(pki)}, reconcile={"enabled": False})
    res = cli(clean_env(tmp_path), "--config", str(f), "bootstrap", "--no-scanner", "--wait", "10")
    assert res.returncode == 0, res.stderr
    assert f"temporal: {proxy.address} (namespace default, mTLS (CA ca.pem, client certificate client.pem))" \
        in res.stdout, res.stdout
    assert "search attributes: TradeState, Symbol, LongVenue, ShortVenue" in res.stdout, res.stdout


def test_up_external_starts_no_dev_server_and_its_worker_connects(proxy, pki, tmp_path):
    (sim_port,) = free_ports(1)
    f = config(tmp_path, {"address": proxy.address, "tls": tls(pki), "task_queue": f"tls-up-{uuid.uuid4().hex[:6]}"},
               venues=[{"name": "sim-a", "kind": "sim", "port": sim_port}], reconcile={"enabled": False})
    proc = subprocess.Popen([sys.executable, "-m", "hedgeflow", "--config", str(f), "up", "--temporal", "external",
                             "--no-scanner"], cwd=ROOT, env=clean_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        assert "press Ctrl-C to stop" in text, text
        assert "no dev server started (--temporal external)" in text, text
        assert f"Temporal cluster {proxy.address} (namespace default, mTLS (CA ca.pem, client certificate " \
               "client.pem)) answers" in text, text
        assert "search attributes: present" in text, text
        assert "Temporal dev server" not in text, text
        assert "worker ready" in text, text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped everything" in rest, rest
