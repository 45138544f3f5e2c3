"""A venue's settings: which exchange (a simulator of one dialect, or ccxt), its environment,
its credentials (``SecretStr``, read from the environment or a file inside the worker, never part
of a workflow input) and its fees, limits and settlement-currency rate."""

from __future__ import annotations

import os
import re
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

DEMO_API_KEY = "hedgeflow-demo-key"
DEMO_API_SECRET = "hedgeflow-demo-secret"  # a paper venue's secret: not a credential
#: The simulated Hyperliquid venue's demo account: a well-known TEST private key (published in the
#: web3/eth-account documentation), holding no funds on any chain; never use it for real money.
#: The wallet is the address it derives (``--api-key`` of ``hedgeflow sim --dialect hyperliquid``).
DEMO_HL_PRIVATE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # demo key, no funds
DEMO_HL_WALLET = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class VenueKind(StrEnum):
    SIM = "sim"
    CCXT = "ccxt"


class VenueConfig(_Section):
    #: ccxt ids whose API keys carry a third credential (the passphrase, ``api_password``)
    PASSPHRASE_EXCHANGES: ClassVar[frozenset[str]] = frozenset({"okx", "bitget", "kucoinfutures"})
    #: ccxt ids signed by a wallet: ``wallet_address`` (or ``api_key``) + the private key in ``api_secret``
    WALLET_EXCHANGES: ClassVar[frozenset[str]] = frozenset({"hyperliquid", "paradex"})
    #: a paper OKX venue's API passphrase (dialect ``okx``): the simulator the project starts for it is
    #: given the same (``--api-passphrase``, as ``HEDGEFLOW_SIM_API_PASSPHRASE``); not a credential
    DEMO_OKX_PASSPHRASE: ClassVar[str] = "hedgeflow-demo-passphrase"

    name: str = Field(description="venue name used everywhere (sim-a, binance, ...)")
    kind: VenueKind = VenueKind.SIM
    exchange_id: str = Field("binanceusdm", description="ccxt exchange id (kind ccxt)")
    dialect: Literal["binance", "bybit", "okx", "hyperliquid"] = Field(
        "binance", description="wire dialect of a simulator (kind sim): reached with that venue's ccxt class")
    environment: Literal["live", "demo", "testnet"] = Field(
        "live", description="kind ccxt: live, the venue's demo trading, or its testnet (sandbox)")
    wallet_address: str | None = Field(None, description="public wallet address (Hyperliquid, Paradex)")
    base_url: str | None = Field(None, description="simulator base URL (kind sim)")
    port: int | None = Field(None, ge=1, le=65535, description="port a simulator is started on by `up`")
    seed: int | None = None
    funding_interval_s: int | None = Field(None, gt=0, description="simulator settlement period")
    taker_fee: Decimal = Field(Decimal("0.0005"), ge=0, lt=Decimal("0.01"))
    maker_fee: Decimal = Field(Decimal("0.0002"), ge=Decimal("-0.001"), lt=Decimal("0.01"))
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_password: SecretStr | None = None
    api_secret_file: Path | None = Field(None, description="file holding the API secret")
    requests_per_second: float = Field(
        40.0, gt=0,
        description="client-side rate limit, in ccxt cost units per second: for Binance-dialect venues "
        "(and the simulator) that is request weight, whose limit is 2400 per minute = 40 per second",
    )
    timeout_ms: int = Field(10_000, gt=0)
    settle_usd_rate: Decimal = Field(
        Decimal(1), gt=Decimal("0.5"), lt=Decimal("1.5"),
        description="USD value of one unit of the venue's settlement currency (USDT, USDC): sizes the "
        "notional in USD and converts margin, fees, funding and PnL to USD; 1 by default (see the README)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-32 characters of lowercase letters, digits and '-', starting with a letter or digit")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _kind_fields(self) -> VenueConfig:
        if self.kind is VenueKind.SIM:
            if self.base_url is None:
                if self.port is None:
                    raise ValueError("a sim venue needs base_url or port")
                self.base_url = f"http://127.0.0.1:{self.port}"
            self._sim_demo_credentials()
        return self

    def _sim_demo_credentials(self) -> None:
        """A paper venue's demo credentials where none are configured, as its dialect signs:
        Hyperliquid with the demo wallet (its address is the simulator's API key) and its test
        private key; OKX keys with the demo passphrase as well."""
        if self.dialect == "hyperliquid":
            if self.wallet_address is None and self.api_key is None:
                self.wallet_address = DEMO_HL_WALLET
            if self.api_key is None:
                self.api_key = SecretStr(self.wallet_address or DEMO_HL_WALLET)
            if self.api_secret is None and self.api_secret_file is None:
                self.api_secret = SecretStr(DEMO_HL_PRIVATE_KEY)
            return
        if self.api_key is None:
            self.api_key = SecretStr(DEMO_API_KEY)
        if self.api_secret is None and self.api_secret_file is None:
            self.api_secret = SecretStr(DEMO_API_SECRET)
        if self.dialect == "okx" and self.api_password is None:
            self.api_password = SecretStr(self.DEMO_OKX_PASSPHRASE)

    def sim_wallet(self) -> str | None:
        """The wallet a Hyperliquid-dialect venue signs for (the simulator's API key), else None."""
        if self.dialect != "hyperliquid":
            return None
        return self.wallet_address or (self.api_key.get_secret_value() if self.api_key else None)

    def env_key(self, what: str) -> str:
        return f"HEDGEFLOW_VENUE_{self.name.upper().replace('-', '_')}_{what}"

    def resolve_secrets(self, environ: dict[str, str] | None = None) -> list[str]:
        """Fill key/secret from the environment or the secret file; return problems."""
        env = os.environ if environ is None else environ
        # the environment wins over the file and over a paper venue's demo credentials
        if env.get(self.env_key("API_KEY")):
            self.api_key = SecretStr(env[self.env_key("API_KEY")])
        if env.get(self.env_key("API_SECRET")):
            self.api_secret = SecretStr(env[self.env_key("API_SECRET")])
        if env.get(self.env_key("API_PASSWORD")):
            self.api_password = SecretStr(env[self.env_key("API_PASSWORD")])
        if env.get(self.env_key("WALLET_ADDRESS")):
            self.wallet_address = env[self.env_key("WALLET_ADDRESS")]
        problems = []
        if self.api_secret is None and self.api_secret_file is not None:
            try:
                self.api_secret = SecretStr(self.api_secret_file.read_text().strip())
            except OSError as exc:
                problems.append(
                    f"venues.{self.name}.api_secret_file: cannot read {self.api_secret_file} ({exc.strerror})"
                )
        if self.kind is VenueKind.CCXT and self.exchange_id in self.WALLET_EXCHANGES:
            if self.wallet_address is None and self.api_key is None:
                problems.append(f"venues.{self.name}.wallet_address: missing for venue {self.name!r}; "
                                f"set {self.env_key('WALLET_ADDRESS')}")
            if self.api_secret is None and not any("api_secret_file" in p for p in problems):
                problems.append(f"venues.{self.name}.api_secret: the wallet's private key is missing for venue "
                                f"{self.name!r}; set {self.env_key('API_SECRET')} or api_secret_file")
        elif self.kind is VenueKind.CCXT:
            if self.exchange_id in self.PASSPHRASE_EXCHANGES and self.api_password is None:
                problems.append(f"venues.{self.name}.api_password: the API passphrase is missing for venue "
                                f"{self.name!r}; set {self.env_key('API_PASSWORD')}")
            if self.api_key is None:
                problems.append(
                    f"venues.{self.name}.api_key: missing for live venue {self.name!r}; "
                    f"set {self.env_key('API_KEY')}"
                )
            if self.api_secret is None and not any("api_secret_file" in p for p in problems):
                problems.append(
                    f"venues.{self.name}.api_secret: missing for live venue {self.name!r}; "
                    f"set {self.env_key('API_SECRET')} or api_secret_file"
                )
        return problems
