"""The ``temporal`` connection profile, pure and fast (config/temporal.py, workers/client.py): which
source wins, what is validated and how the error reads, what is masked, how a refused connection is
named, and what ``bootstrap``/``up --temporal external`` do when the namespace lacks search
attributes and may not add them. The end-to-end half, through a real TLS proxy, is
tests/test_temporal_tls.py.

Precedence, per key (address, namespace, API key, tls): the hedgeflow settings (file,
``HEDGEFLOW__TEMPORAL__*``) where they set it → Temporal's environment configuration (``TEMPORAL_*``
over the profile file) → defaults.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from config import ConfigError, load_settings
from config.logs import configure_logging, settings_secrets

ROOT = Path(__file__).resolve().parent.parent
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAsecretkeybytes\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name, text in (("ca.pem", PEM), ("client.pem", PEM), ("client.key", KEY), ("notpem.pem", "hello")):
        (tmp_path / name).write_text(text)
    (tmp_path / "api-key").write_text("  key-from-file-1234\n")
    (tmp_path / "empty").write_text("\n")
    return tmp_path


def load(tmp_path: Path, yaml_text: str = "", **env: str):
    path = None
    if yaml_text:
        path = tmp_path / "config.yaml"
        path.write_text(yaml_text)
    return load_settings(path, environ={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **env})


def problems(tmp_path: Path, yaml_text: str = "", **env: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, yaml_text, **env)
    return err.value.problems


# --------------------------------------------------------------------------- precedence
def test_defaults_are_local_plaintext(tmp_path):
    t = load(tmp_path).temporal
    assert (t.address, t.namespace, t.tls, t.api_key) == ("127.0.0.1:7233", "default", None, None)
    assert t.security() == "plaintext" and t.origin("address") == "default"


def test_temporal_variables_fill_what_the_settings_leave_out(tmp_path):
    t = load(tmp_path, TEMPORAL_ADDRESS="cluster:7233", TEMPORAL_NAMESPACE="prod").temporal
    assert (t.address, t.namespace) == ("cluster:7233", "prod")
    assert t.origin("address") == "TEMPORAL_ADDRESS"


def test_what_the_settings_set_wins_over_temporal_variables(tmp_path):
    t = load(tmp_path, "temporal: {address: 'mine:7233'}\n", TEMPORAL_ADDRESS="theirs:7233",
             HEDGEFLOW__TEMPORAL__NAMESPACE="ours", TEMPORAL_NAMESPACE="theirs").temporal
    assert (t.address, t.namespace) == ("mine:7233", "ours")
    assert t.origin("address") == "settings"


def test_profile_file_and_its_selection(tmp_path, files):
    toml = tmp_path / "temporal.toml"
    toml.write_text(f"""[profile.default]
address = "default-profile:7233"
[profile.prod]
address = "prod:7233"
namespace = "prod-ns"
[profile.prod.tls]
server_ca_cert_path = "{files / 'ca.pem'}"
client_cert_path = "{files / 'client.pem'}"
client_key_path = "{files / 'client.key'}"
server_name = "prod.internal"
""")
    assert load(tmp_path, TEMPORAL_CONFIG_FILE=str(toml)).temporal.address == "default-profile:7233"
    t = load(tmp_path, TEMPORAL_CONFIG_FILE=str(toml), TEMPORAL_PROFILE="prod").temporal
    assert (t.address, t.namespace, t.tls.server_name) == ("prod:7233", "prod-ns", "prod.internal")
    assert t.tls.key_data.get_secret_value() == KEY and t.tls.cert_data == PEM
    assert t.security() == "mTLS (CA ca.pem, client certificate client.pem)"
    # the SDK's own order: a TEMPORAL_* variable over the profile file
    t = load(tmp_path, TEMPORAL_CONFIG_FILE=str(toml), TEMPORAL_PROFILE="prod", TEMPORAL_ADDRESS="env:1").temporal
    assert (t.address, t.namespace) == ("env:1", "prod-ns")
    # the settings over both; tls is one key: the settings' tls is used whole
    t = load(tmp_path, f"temporal: {{address: 'mine:2', tls: {{ca: {files / 'ca.pem'}}}}}\n",
             TEMPORAL_CONFIG_FILE=str(toml), TEMPORAL_PROFILE="prod").temporal
    assert (t.address, t.namespace, t.tls.cert_data, t.tls.server_name) == ("mine:2", "prod-ns", None, None)


def test_env_config_false_ignores_temporal_variables(tmp_path):
    t = load(tmp_path, HEDGEFLOW__TEMPORAL__ENV_CONFIG="false", TEMPORAL_ADDRESS="x:1",
             TEMPORAL_API_KEY="k-123456").temporal
    assert (t.address, t.api_key, t.tls) == ("127.0.0.1:7233", None, None)


def test_an_api_key_means_tls_with_system_roots_unless_tls_is_off(tmp_path):
    t = load(tmp_path, TEMPORAL_API_KEY="k-123456").temporal
    assert t.api_key.get_secret_value() == "k-123456" and t.tls is not None and t.tls.ca_data is None
    assert t.security() == "TLS (system CA roots) + API key"
    assert load(tmp_path, TEMPORAL_API_KEY="k-123456", TEMPORAL_TLS="false").temporal.tls is None


def test_api_key_file(tmp_path, files):
    t = load(tmp_path, f"temporal: {{api_key_file: {files / 'api-key'}}}\n", TEMPORAL_API_KEY="ignored").temporal
    assert t.api_key.get_secret_value() == "key-from-file-1234" and t.origin("api_key") == "settings"


def test_what_was_filled_in_stays_left_out(tmp_path):
    s = load(tmp_path, TEMPORAL_ADDRESS="cluster:7233")
    again = type(s.temporal).model_validate(s.temporal.model_dump(exclude_unset=True))
    assert again.address == "127.0.0.1:7233"  # outside the environment it was resolved in: left out again
    assert "address" not in s.temporal.model_fields_set


# --------------------------------------------------------------------------- validation
def test_missing_files_name_the_key(tmp_path, files):
    assert problems(tmp_path, "temporal: {tls: {ca: nope.pem}}\n") == [
        f"temporal.tls.ca: file not found in {Path.cwd()}; give the path of a PEM file (got 'nope.pem')"]
    assert problems(tmp_path, HEDGEFLOW__TEMPORAL__API_KEY_FILE="/nope/key") == [
        "temporal.api_key_file: file not found; give the path of a file holding the API key (got '/nope/key')"]


@pytest.mark.parametrize("tls, expected", [
    ("{cert: CERT}", "temporal.tls: cert without key: a client certificate and its private key go together"),
    ("{key: KEY}", "temporal.tls: key without cert: a client certificate and its private key go together"),
    ("{ca: NOTPEM}", "is not a PEM file (the server's CA certificate: '-----BEGIN ...' expected)"),
])
def test_tls_keys_are_checked(tmp_path, files, tls, expected):
    tls = tls.replace("CERT", str(files / "client.pem")).replace("KEY", str(files / "client.key"))
    found = problems(tmp_path, f"temporal: {{tls: {tls.replace('NOTPEM', str(files / 'notpem.pem'))}}}\n")
    assert len(found) == 1 and expected in found[0], found


def test_api_key_problems(tmp_path, files):
    assert problems(tmp_path, f"temporal: {{api_key: abc, api_key_file: {files / 'api-key'}}}\n") == [
        "temporal: set api_key or api_key_file, not both"]
    assert "is empty; put the API key in it" in problems(tmp_path, f"temporal: {{api_key_file: {files / 'empty'}}}\n")[0]


def test_temporal_environment_problems_name_the_variable(tmp_path, files):
    assert problems(tmp_path, TEMPORAL_CONFIG_FILE="/nope.toml") == [
        "temporal: TEMPORAL_CONFIG_FILE: file /nope.toml not found (Temporal's profile file); fix the path or unset it"]
    assert problems(tmp_path, TEMPORAL_PROFILE="nope") == [
        "temporal: Temporal's environment configuration: Profile 'nope' not found (TEMPORAL_PROFILE=nope)"]
    found = problems(tmp_path, TEMPORAL_TLS_CLIENT_CERT_PATH="/nope.pem",
                     TEMPORAL_TLS_CLIENT_KEY_PATH=str(files / "client.key"))
    assert found == ["temporal: tls from TEMPORAL_TLS_CLIENT_CERT_PATH: cert: file not found; give the path of a "
                     "PEM file (got '/nope.pem')"]


# --------------------------------------------------------------------------- secrets
def _logged(found: list[str], fmt: str, *values: str) -> str:
    from config.settings import LoggingConfig

    out = io.StringIO()
    handler = configure_logging(LoggingConfig(format=fmt), secrets=found, stream=out)
    try:
        logging.getLogger("hedgeflow.test").warning(" ".join(["%s"] * len(values)), *values)
    finally:
        logging.getLogger().removeHandler(handler)
    return out.getvalue()


@pytest.fixture
def secret_settings(tmp_path, files):
    return load(tmp_path, f"temporal: {{api_key: api-secret-0042, tls: {{ca: {files / 'ca.pem'}, "
                f"cert: {files / 'client.pem'}, key: {files / 'client.key'}}}}}\n")


def test_the_api_key_and_the_private_key_are_masked(secret_settings):
    found = settings_secrets(secret_settings)
    assert "api-secret-0042" in found and KEY in found
    assert "api-secret-0042" not in repr(secret_settings) and "secretkeybytes" not in repr(secret_settings)
    for fmt in ("json", "text"):
        assert "api-secret-0042" not in _logged(found, fmt, "key", "api-secret-0042")
    assert "secretkeybytes" not in _logged(found, "text", KEY)


def test_the_private_key_is_masked_in_json_lines(secret_settings):
    """A JSON line escapes the PEM's newlines: each line of a multi-line secret is masked too."""
    assert "secretkeybytes" not in _logged(settings_secrets(secret_settings), "json", KEY)


# --------------------------------------------------------------------------- connect
def test_connect_options(tmp_path, files):
    from workers.client import connect_options

    plain = connect_options(load(tmp_path).temporal)
    assert plain == {"namespace": "default", "tls": False}
    s = load(tmp_path, f"temporal: {{namespace: ns1, api_key: k-1, tls: {{ca: {files / 'ca.pem'}, "
             f"cert: {files / 'client.pem'}, key: {files / 'client.key'}, server_name: srv}}}}\n")
    opts = connect_options(s.temporal)
    tls = opts["tls"]
    assert (opts["namespace"], opts["api_key"], tls.domain) == ("ns1", "k-1", "srv")
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (PEM.encode(), PEM.encode(),
                                                                                  KEY.encode())


@pytest.mark.parametrize("error, expected", [
    ("Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError("
     "ConnectError(\"tcp connect error\", Os { code: 111, kind: ConnectionRefused }))))", None),
    ("Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError(Custom { "
     "kind: InvalidData, error: InvalidCertificate(Expired) }))", "TLS: the server's certificate has expired"),
    ("Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError(Custom { "
     "kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))",
     "TLS: the server's certificate is not signed by a CA this machine trusts; set temporal.tls.ca"),
    ('Failed client connect: `get_system_info` call error after connection: Status { code: Unauthenticated, '
     'message: "Request unauthorized.", source: None }',
     "the credentials were refused (Request unauthorized.); check TEMPORAL_API_KEY (or api_key_file)"),
])
def test_refusals_are_named(tmp_path, error, expected):
    from workers.client import refusal

    temporal = load(tmp_path, TEMPORAL_API_KEY="k-123456").temporal
    said = refusal(RuntimeError(error), temporal)
    assert said is None if expected is None else expected in said, said


# --------------------------------------------------------------------------- search attributes
class _Operator:
    def __init__(self, have: set[str], refuse: bool) -> None:
        self.have, self.refuse, self.added = have, refuse, None

    async def list_search_attributes(self, req):
        return SimpleNamespace(custom_attributes={k: 2 for k in self.have})

    async def add_search_attributes(self, req):
        from temporalio.service import RPCError, RPCStatusCode

        if self.refuse:
            raise RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")
        self.added = dict(req.search_attributes)


async def test_search_attributes_are_added_or_the_tcld_command_is_given():
    from workers.supervisor import SearchAttributesMissing, ensure_search_attributes

    op = _Operator({"TradeState"}, refuse=False)
    assert await ensure_search_attributes(SimpleNamespace(namespace="ns", operator_service=op)) == [
        "Symbol", "LongVenue", "ShortVenue"]
    assert sorted(op.added) == ["LongVenue", "ShortVenue", "Symbol"]
    full = _Operator({"TradeState", "Symbol", "LongVenue", "ShortVenue"}, refuse=True)
    assert await ensure_search_attributes(SimpleNamespace(namespace="ns", operator_service=full)) == []
    cloud = SimpleNamespace(namespace="hf.a1b2c", operator_service=_Operator(set(), refuse=True))
    with pytest.raises(SearchAttributesMissing) as err:
        await ensure_search_attributes(cloud)
    text = str(err.value)
    assert "(PERMISSION_DENIED: Request unauthorized.)" in text
    assert ("`tcld namespace search-attributes add --namespace hf.a1b2c --search-attribute TradeState=Keyword "
            "--search-attribute Symbol=Keyword --search-attribute LongVenue=Keyword "
            "--search-attribute ShortVenue=Keyword`") in text


def test_embedded_up_refuses_a_tls_profile(tmp_path, files):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HEDGEFLOW__TEMPORAL__TLS__CA": str(files / "ca.pem"),
           "HEDGEFLOW__STATE_DIR": str(tmp_path / "state")}
    res = subprocess.run([sys.executable, "-m", "hedgeflow", "up"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == ("hedgeflow: temporal.tls / temporal.api_key are set, but the dev server `up` "
                                  "starts is plaintext; use `hedgeflow up --temporal external` for that cluster, "
                                  "or remove them")
