"""The ``temporal`` settings section: which cluster, and how to reach it (TLS, API key).

Resolved once, when the settings load, so that every process and command that connects (the
command line, ``hedgeflow worker``, ``hedgeflow up``, ``bootstrap``) uses the same profile and
``settings.temporal`` says what is used. Precedence, per key, highest first:

1. the hedgeflow settings: the YAML file and ``HEDGEFLOW__TEMPORAL__*`` variables. Only keys set
   there count: a default is "left out";
2. Temporal's own environment configuration, read by the SDK (``temporalio.envconfig``) exactly
   as the ``temporal`` CLI reads it: the ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
   ``TEMPORAL_API_KEY`` and ``TEMPORAL_TLS_*`` variables over the profile file
   (``TEMPORAL_CONFIG_FILE``, else ``~/.config/temporalio/temporal.toml``; profile
   ``TEMPORAL_PROFILE``, else ``default``);
3. the defaults: ``127.0.0.1:7233``, namespace ``default``, plaintext.

``address``, ``namespace``, the API key (``api_key`` / ``api_key_file``) and ``tls`` are each one
key: a ``tls`` object in the settings is used whole, never mixed with ``TEMPORAL_TLS_*``.
``env_config: false`` skips step 2; the embedded ``hedgeflow up`` does (its dev server is local and
plaintext, whatever profile the shell's Temporal CLI uses).

TLS: ``tls`` absent is plaintext, except that an API key without ``tls`` means TLS with the
system's roots, as Temporal's SDKs and CLI do (Temporal Cloud); ``tls: {}`` is TLS with the system's
roots. Certificate and key files are read at load (a missing one is a configuration error naming
the key); the private key and the API key are ``SecretStr``, so ``config.logs`` masks them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator

from config.venue import _Section

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
#: (path key, PEM key, what it is) of ``tls``; the SDK's TEMPORAL_TLS_* names for each
_PEMS = (("ca", "ca_data", "the server's CA certificate"), ("cert", "cert_data", "the client certificate"),
         ("key", "key_data", "the client private key"))
_TLS_ENV = {"ca": "TEMPORAL_TLS_SERVER_CA_CERT", "cert": "TEMPORAL_TLS_CLIENT_CERT", "key": "TEMPORAL_TLS_CLIENT_KEY"}


class TemporalTLS(_Section):
    """``temporal.tls``: TLS to the frontend; with ``cert`` and ``key``, mutual TLS."""

    ca: Path | None = Field(None, description="PEM file of the CA that signed the server's certificate "
                            "(absent: the system's roots, e.g. Temporal Cloud)")
    cert: Path | None = Field(None, description="PEM file of the client certificate (mTLS); needs key")
    key: Path | None = Field(None, description="PEM file of the client certificate's private key; needs cert")
    server_name: str | None = Field(None, description="name the server's certificate must carry "
                                    "(SNI), when not the host of temporal.address")
    ca_data: str | None = Field(None, description="the CA certificate's PEM text instead of ca (read from ca at load)")
    cert_data: str | None = Field(None, description="the client certificate's PEM text instead of cert")
    key_data: SecretStr | None = Field(None, description="the private key's PEM text instead of key (a secret)")

    @field_validator("ca", "cert", "key")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            where = "" if v.is_absolute() else f" in {Path.cwd()}"
            raise ValueError(f"file not found{where}; give the path of a PEM file")
        return v

    @model_validator(mode="after")
    def _read(self) -> TemporalTLS:
        for path_key, data_key, what in _PEMS:
            path = getattr(self, path_key)
            if path is None:
                continue
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path_key}: cannot read {path} ({exc})") from None
            if "-----BEGIN" not in text:
                raise ValueError(f"{path_key}: {path} is not a PEM file ({what}: '-----BEGIN ...' expected)")
            given = getattr(self, data_key)
            given = given.get_secret_value() if isinstance(given, SecretStr) else given
            if given is not None and given != text:
                raise ValueError(f"set {path_key} or {data_key}, not both")
            setattr(self, data_key, SecretStr(text) if data_key == "key_data" else text)
        if (self.cert_data is None) != (self.key_data is None):
            have, lack = ("cert", "key") if self.key_data is None else ("key", "cert")
            raise ValueError(f"{have} without {lack}: a client certificate and its private key go together "
                             "(mutual TLS); set both, or neither for server-only TLS")
        return self

    def pems(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA, client certificate, client key) as PEM bytes, for ``temporalio.service.TLSConfig``."""
        key = self.key_data.get_secret_value() if self.key_data is not None else None
        return tuple(v.encode() if v is not None else None for v in (self.ca_data, self.cert_data, key))  # type: ignore[return-value]

    def summary(self) -> str:
        """``mTLS (CA ca.pem, client certificate cert.pem)`` — file names only, never contents."""
        ca = f"CA {self.ca.name}" if self.ca else ("CA given inline" if self.ca_data else "system CA roots")
        if self.cert_data is None:
            return f"TLS ({ca})"
        cert = f"client certificate {self.cert.name}" if self.cert else "client certificate given inline"
        return f"mTLS ({ca}, {cert})"


class TemporalConfig(_Section):
    """``temporal``: the cluster (address, namespace, TLS, API key), the task queue, the dev server's UI port."""

    address: str = Field(DEFAULT_ADDRESS, description="HOST:PORT of the Temporal frontend")
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = "hedgeflow"
    ui_port: int = Field(8233, ge=1, le=65535, description="Web UI port of the dev server `up` starts")
    tls: TemporalTLS | None = Field(None, description="TLS to the frontend (absent: plaintext, unless an API key)")
    api_key: SecretStr | None = Field(None, description="API key (Temporal Cloud; sent as a bearer token over TLS)")
    api_key_file: Path | None = Field(None, description="file holding the API key instead of api_key")
    env_config: bool = Field(True, description="fill what these settings leave out from Temporal's own "
                             "environment configuration (TEMPORAL_* variables, the temporal CLI's profile file)")
    #: where each resolved key came from: "settings", "default", or the Temporal variable/profile
    _origin: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("api_key_file")
    @classmethod
    def _key_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("file not found; give the path of a file holding the API key")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> TemporalConfig:
        given = set(self.model_fields_set)
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both")
        if self.api_key_file is not None:
            try:
                text = self.api_key_file.read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"api_key_file: cannot read {self.api_key_file} ({exc})") from None
            if not text:
                raise ValueError(f"api_key_file: {self.api_key_file} is empty; put the API key in it")
            self.api_key = SecretStr(text)
        self._origin = {k: "settings" if k in given or k == "api_key" and "api_key_file" in given else "default"
                        for k in ("address", "namespace", "api_key", "tls")}
        tls_off = False
        if self.env_config:
            tls_off = self._fill_from_env_config(given)
        if self.api_key is not None and self.tls is None and not tls_off:
            self.tls = TemporalTLS()  # an API key goes over TLS (system roots), as the SDK does
        # what was filled in stays "left out": resolving again (a revalidation) gives the same
        self.__pydantic_fields_set__.intersection_update(given)
        return self

    def _fill_from_env_config(self, given: set[str]) -> bool:
        """Take what ``given`` (the keys the settings set) leaves out from Temporal's environment
        configuration; True when that configuration turns TLS off (``TEMPORAL_TLS=false``)."""
        from temporalio.envconfig import ClientConfigProfile

        env = dict(os.environ)
        file = env.get("TEMPORAL_CONFIG_FILE")
        if file and not Path(file).is_file():
            raise ValueError(f"TEMPORAL_CONFIG_FILE: file {file} not found (Temporal's profile file); "
                             "fix the path or unset it")
        try:
            prof = ClientConfigProfile.load(override_env_vars=env)
        except Exception as exc:  # the bridge's ConfigError: a bad TOML file, an unknown profile
            profile = env.get("TEMPORAL_PROFILE")
            raise ValueError(f"Temporal's environment configuration: {exc}"
                             + (f" (TEMPORAL_PROFILE={profile})" if profile else "")) from None
        where = f"profile {env.get('TEMPORAL_PROFILE') or 'default'} of {file or 'the Temporal profile file'}"

        def origin(*names: str) -> str:
            return next((n for n in names if env.get(n)), where)

        if "address" not in given and prof.address:
            self.address, self._origin["address"] = prof.address, origin("TEMPORAL_ADDRESS")
        if "namespace" not in given and prof.namespace:
            self.namespace, self._origin["namespace"] = prof.namespace, origin("TEMPORAL_NAMESPACE")
        if "api_key" not in given and "api_key_file" not in given and prof.api_key:
            self.api_key, self._origin["api_key"] = SecretStr(prof.api_key), origin("TEMPORAL_API_KEY")
        if "tls" in given or prof.tls is None:
            return False
        if prof.tls.disabled:
            return True
        names = [f"{_TLS_ENV[k]}_{s}" for k in _TLS_ENV for s in ("PATH", "DATA")] + ["TEMPORAL_TLS_SERVER_NAME"]
        src = origin(*names, "TEMPORAL_TLS")
        data: dict[str, Any] = {"server_name": prof.tls.server_name}
        for (path_key, data_key, _), value in zip(
                _PEMS, (prof.tls.server_root_ca_cert, prof.tls.client_cert, prof.tls.client_private_key), strict=True):
            if isinstance(value, Path):
                data[path_key] = value
            elif value is not None:
                data[data_key] = value.decode() if isinstance(value, bytes) else value
        try:
            self.tls = TemporalTLS.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'tls'}: {e['msg'].removeprefix('Value error, ')}"
                                 + (f" (got {str(data.get(e['loc'][0]))!r})" if e["loc"] else "")
                                 for e in exc.errors())
            raise ValueError(f"tls from {src}: {problems}") from None
        self._origin["tls"] = src
        for key, var in (*_TLS_ENV.items(), ("server_name", "TEMPORAL_TLS_SERVER_NAME")):
            self._origin[f"tls.{key}"] = origin(var, f"{var}_PATH", f"{var}_DATA")
        return False

    def origin(self, key: str) -> str:
        """Where ``address``, ``namespace``, ``api_key``, ``tls`` or ``tls.KEY`` came from:
        ``settings``, ``default``, a ``TEMPORAL_*`` variable, or the Temporal profile file."""
        return self._origin.get(key) or self._origin.get(key.split(".")[0], "settings")

    def setting(self, key: str) -> str:
        """How to name ``key`` (``tls.cert``…) to an operator who must change it: ``temporal.KEY``,
        or the ``TEMPORAL_*`` variable / profile file it came from."""
        origin = self.origin(key)
        if origin.startswith("TEMPORAL_"):
            return origin
        return f"temporal.{key}" + ("" if origin in ("settings", "default") else f" (from {origin})")

    def security(self) -> str:
        """One line for operators: ``plaintext``, ``TLS (...)``/``mTLS (...)``, ``+ API key``."""
        text = "plaintext" if self.tls is None else self.tls.summary()
        return text + (" + API key" if self.api_key is not None else "")
