"""Settings models and the loader.

Precedence, highest first: ``HEDGEFLOW__SECTION__KEY`` environment variables, the YAML file
(``--config FILE`` or ``HEDGEFLOW_CONFIG``), the built-in defaults of the profile.

Secrets (venue API key and secret) are ``SecretStr``: they print as ``**********`` and are
read from the environment or a file, never written back anywhere. Workflow inputs carry venue
*names* only; activities resolve credentials inside the worker process.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.temporal import TemporalConfig, TemporalTLS  # noqa: F401 - the temporal section (TLS, API key)
from config.tuning import WorkerTuning  # noqa: F401 - the tuning section (slots, pollers, shared reads)
from config.venue import (  # noqa: F401 - re-exported: the venue part lives in config/venue.py
    _NAME_RE,
    DEMO_API_KEY,
    DEMO_API_SECRET,
    DEMO_HL_PRIVATE_KEY,
    DEMO_HL_WALLET,
    VenueConfig,
    VenueKind,
    _Section,
)

ENV_PREFIX = "HEDGEFLOW__"


class ConfigError(Exception):
    """Invalid configuration. ``problems`` holds one line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class LimitsConfig(_Section):
    leverage: int = Field(3, ge=1, le=125, description="leverage set on both legs")
    max_order_notional_usd: Decimal = Field(Decimal("10000"), gt=0)
    max_venue_notional_usd: Decimal = Field(Decimal("50000"), gt=0)
    max_total_notional_usd: Decimal = Field(Decimal("100000"), gt=0)
    max_open_trades: int = Field(5, ge=1)
    margin_buffer: Decimal = Field(Decimal("1.1"), ge=1, description="free margin >= notional/leverage × this")


class HoldParams(BaseModel):
    """Hold-phase parameters of a trade: part of the trade settings and of every trade's input,
    changeable while a trade runs through its ``update_hold`` update. Defined once, here."""

    monitor_interval_s: float = Field(10, gt=0, description="seconds between hold checks")
    max_gap: Decimal = Field(Decimal("0.05"), gt=0, lt=1, description="|long−short|/target allowed")
    exit_spread_bps: Decimal = Field(Decimal("0"), description="exit when the spread stays below this")
    exit_checks: int = Field(3, ge=1, description="low-spread checks in a row before the exit")
    max_hold_s: float = Field(7 * 24 * 3600, gt=0, description="close after this long")
    reduce_liq_distance: Decimal = Field(Decimal("0.10"), gt=0, lt=1, description="reduce both legs below this")
    close_liq_distance: Decimal = Field(Decimal("0.05"), gt=0, lt=1, description="close both legs below this")
    reduce_cooldown_s: float = Field(60, gt=0, description="after a reduction, wait this long; no improvement → close")


class TradeExecution(BaseModel):
    """How a trade works its orders: part of the trade settings and of every trade's input."""

    verify_timeout_s: float = Field(30, gt=0, description="an order not done by then is cancelled")
    topup_attempts: int = Field(3, ge=0, le=10, description="top-ups of a partly filled leg")
    close_retry_max_s: float = Field(60, gt=0, description="cap on the close retry backoff")
    # execution style (issue 15): how both legs go on (and off: an emergency close is always taker)
    style: Literal["taker", "maker_first", "sliced"] = Field(
        "taker", description="taker: one market order per leg; maker_first: post-only on the leg with the "
        "costlier taker fee, each maker fill hedged at once by a taker order on the other; sliced: `slices` "
        "pieces, each on both legs before the next")
    slices: int = Field(4, ge=2, le=20, description="sliced: pieces per entry (and exit)")
    slice_style: Literal["taker", "maker_first"] = Field("taker", description="sliced: how each piece goes on")
    slice_interval_s: float = Field(2, ge=0, description="sliced: seconds between pieces")
    maker_requotes: int = Field(5, ge=0, le=20, description="maker_first: re-quotes before the taker fallback")
    maker_window_s: float = Field(10, gt=0, description="maker_first: seconds of quoting before the taker fallback")
    cap_unhedged_usd: Decimal = Field(Decimal("250"), gt=0,
                                      description="most notional a maker fill may leave unhedged; more: taker at once")
    cap_unhedged_s: float = Field(1.0, gt=0, description="longest a maker fill may stay unhedged; longer: taker at once")


class TradeConfig(_Section, TradeExecution, HoldParams):
    """The ``trade`` section: execution and hold parameters of every trade (flat keys)."""

    @model_validator(mode="after")
    def _liq(self) -> TradeConfig:
        if self.close_liq_distance >= self.reduce_liq_distance:
            raise ValueError("close_liq_distance must be smaller than reduce_liq_distance")
        return self

    def hold(self) -> HoldParams:
        return HoldParams.model_validate(self.model_dump(include=set(HoldParams.model_fields)))

    def execution(self) -> dict[str, Any]:
        return self.model_dump(include=set(TradeExecution.model_fields))


class ScannerTuning(BaseModel):
    """How the scanner finds, costs and gates candidates: part of the ``scanner`` settings and
    of the scanner workflow's input (``messages.scanner.ScannerParams``). Defined once.

    Times are wall seconds, except ``horizon_h`` which is in *venue* hours: with
    ``time_scale`` X (replay at speed X) one venue hour passes in 3600/X wall seconds.
    """

    cycle_s: float = Field(30, gt=0, description="seconds between scan cycles")
    notional_usd: Decimal = Field(Decimal("1000"), gt=0, description="notional of each trade the scanner opens")
    min_spread_bps: Decimal = Field(Decimal("1"), description="minimum funding spread, bps per 8 h")
    horizon_h: Decimal = Field(Decimal("24"), gt=0, description="expected holding time (venue hours)")
    top_n_books: int = Field(3, ge=1, le=50, description="order books fetched per cycle (best candidates)")
    book_depth: int = Field(20, ge=5, le=500)
    buffer_bps: Decimal = Field(Decimal("2"), ge=0, description="safety buffer taken off every edge")
    est_slippage_bps: Decimal = Field(Decimal("1.5"), ge=0,
                                      description="slippage per fill assumed before books are fetched")
    max_price_divergence: Decimal = Field(Decimal("0.005"), gt=0, description="|mark_a − mark_b| / mark allowed")
    max_book_impact: Decimal = Field(Decimal("0.5"), gt=0, le=1,
                                     description="notional / depth within 1 % of mid allowed")
    min_settlement_lead_s: float = Field(60, ge=0, description="no opening this close before a settlement")
    stale_after_s: float = Field(60, gt=0, description="funding data older than this is stale")
    unhealthy_after_failures: int = Field(3, ge=1, description="consecutive failures that trip a venue")
    unhealthy_cooldown_s: float = Field(300, gt=0, description="how long a tripped venue is skipped")
    max_trades_per_day: int = Field(20, ge=0)
    max_daily_loss_usd: Decimal = Field(Decimal("500"), ge=0, description="realised loss per UTC day that stops opening")
    max_consecutive_emergency: int = Field(3, ge=1, description="emergency closes in a row that halt opening")
    symbol_cooldown_s: float = Field(3600, ge=0, description="no reopening a symbol this soon after a close")
    time_scale: Decimal = Field(Decimal("1"), gt=0, description="venue seconds per wall second (replay speed)")
    cycles_per_run: int = Field(100, ge=1, description="continue-as-new after this many cycles")
    symbols: list[str] = Field(default_factory=list, description="only these symbols (empty: every symbol)")
    # execution styles (issue 15): the scanner prices each allowed one per candidate and starts the
    # trade in the cheapest (ties: taker); the trade's slices and slice_style price ``sliced``
    styles: list[Literal["taker", "maker_first", "sliced"]] | None = Field(
        None, min_length=1, description="styles the scanner may choose from per candidate, the cheapest "
        "expected wins (ties: taker); unset: only the trade's own style (trade.style, taker by default)")
    maker_fill_share: Decimal = Field(Decimal("0.7"), ge=0, le=1, description="maker_first: expected share "
                                      "of the passive leg filled as a maker (the rest at the taker fallback's cost)")

    def allowed_styles(self, trade_style: str) -> list[str]:
        """``styles`` without repeats, in the order given; unset: ``[trade_style]``."""
        return list(dict.fromkeys(self.styles)) if self.styles else [trade_style]


class ScannerConfig(_Section, ScannerTuning):
    """The ``scanner`` section (``ScannerWorkflow``)."""

    enabled: bool = True

    def tuning(self) -> dict[str, Any]:
        return self.model_dump(include=set(ScannerTuning.model_fields))


def demo_scanner() -> dict[str, Any]:
    """Scanner defaults of the demo profile: sims settle every 60 s, so the horizon is a few
    settlements and trades start within a minute."""
    return {
        "cycle_s": 5,
        "horizon_h": "0.25",  # 15 min = 15 settlements of the 60 s demo interval
        "min_settlement_lead_s": 3,
        "stale_after_s": 30,
        "unhealthy_cooldown_s": 30,
        "symbol_cooldown_s": 60,
        "max_trades_per_day": 500,
    }


class WorkerConfig(_Section):
    """The ``worker`` section: Temporal Worker Versioning (``workers.worker.deployment_config``).

    Without ``build_id`` the worker is unversioned (every worker takes every task, changes are
    guarded by ``workflow.patched()`` alone). With it the worker joins the Worker Deployment
    ``deployment_name`` as version ``deployment_name.build_id``: it receives tasks only once that
    version is current (``hedgeflow upgrade promote BUILD_ID`` or ``hedgeflow worker --promote``),
    and a running trade stays on the version it started on until it continues as new."""

    deployment_name: str = Field("hedgeflow", min_length=1, max_length=200,
                                 description="the Worker Deployment every versioned worker joins")
    build_id: str | None = Field(None, description="this worker's code version (e.g. a git sha); unset: unversioned")

    @field_validator("deployment_name", "build_id")
    @classmethod
    def _version_part(cls, v: str | None, info: Any) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if info.field_name == "build_id" and not v:
            return None  # HEDGEFLOW__WORKER__BUILD_ID= (empty): unversioned
        if info.field_name == "deployment_name" and not _VERSION_PART.fullmatch(v):
            raise ValueError("deployment_name may hold only letters, digits, '-' and '_' (no '.': the version "
                             "is DEPLOYMENT.BUILD_ID); e.g. HEDGEFLOW__WORKER__DEPLOYMENT_NAME=hedgeflow")
        if info.field_name == "build_id" and not _BUILD_ID.fullmatch(v):
            raise ValueError("build_id may hold only letters, digits, '.', '-' and '_', at most 200; "
                             "e.g. HEDGEFLOW__WORKER__BUILD_ID=2026-12-02.a1b2c3d or --build-id a1b2c3d")
        return v


_VERSION_PART = re.compile(r"[A-Za-z0-9_-]{1,200}")
_BUILD_ID = re.compile(r"[A-Za-z0-9_.-]{1,200}")


class LedgerConfig(_Section):
    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL (may hold a password); default sqlite:///{state_dir}/ledger.sqlite; "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    migrate: bool = Field(True, description="run the Alembic migrations (upgrade head) at start-up")


class AlertsConfig(_Section):
    webhook_url: SecretStr | None = Field(None, description="Slack/Discord/Telegram-compatible webhook (a secret)")
    format: Literal["slack", "discord", "telegram"] = "slack"
    telegram_chat_id: str | None = None
    timeout_s: float = Field(10, gt=0)
    no_trade_hours: float = Field(6, gt=0, description="alert when no trade opened for this long")
    venue_error_rate: float = Field(0.2, gt=0, le=1, description="alert above this share of failed venue calls")
    min_venue_requests: int = Field(10, ge=1, description="calls per cycle before the error rate counts")
    balance_drop_pct: Decimal = Field(Decimal("0.05"), gt=0, lt=1, description="alert on this drop since day start")

    @model_validator(mode="after")
    def _telegram(self) -> AlertsConfig:
        if self.format == "telegram" and self.webhook_url is not None and not self.telegram_chat_id:
            raise ValueError("format telegram needs telegram_chat_id")
        return self


class ReconcileConfig(_Section):
    enabled: bool = Field(True, description="`up` starts the reconcile workflow")
    interval_s: float = Field(60, gt=0, description="seconds between reconciliations")
    order_lookback_s: float = Field(3600, gt=0, description="ledger orders younger than this are checked")
    max_orders: int = Field(200, ge=0, description="orders checked per cycle")


class LoggingConfig(_Section):
    """How every process logs (``config.logs.configure_logging``): to stderr, one line a record."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="the lowest level written (hedgeflow's loggers; libraries from WARNING)")
    format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object a line (time, level, logger, message, ids); text: for a terminal")

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    profile: Literal["demo", "replay", "live"] = "demo"
    mode: Literal["paper", "live"] = Field("paper", description="live trading needs an explicit switch")
    state_dir: Path = Path(".hedgeflow")
    metrics_port: int = Field(9464, ge=0, le=65535)
    venues: list[VenueConfig] = Field(default_factory=list)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    trade: TradeConfig = Field(default_factory=TradeConfig)
    temporal: TemporalConfig = Field(default_factory=dict)  # type: ignore[arg-type] - validated: errors say temporal.KEY
    scanner: ScannerConfig = Field(default_factory=ScannerConfig)
    metrics_host: str = Field("127.0.0.1", description="bind address of the worker metrics endpoint")
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    tuning: WorkerTuning = Field(default_factory=WorkerTuning)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # environment overrides the file (passed as init kwargs)
        return (env_settings, init_settings)

    @field_validator("venues")
    @classmethod
    def _unique(cls, v: list[VenueConfig]) -> list[VenueConfig]:
        names = [x.name for x in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"venue names must be unique; repeated: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _live(self) -> Settings:
        live = self.live_venues()
        if live and self.mode != "live":
            raise ValueError(
                f"venues {live} are live (kind ccxt) but mode is 'paper'; set mode: live to trade real money "
                f"(trading on them also needs {LIVE_SWITCH_FLAG}, or {LIVE_SWITCH_ENV}=1 for a worker)"
            )
        return self

    def live_venues(self) -> list[str]:
        """Names of the venues that trade real money: ``kind: ccxt`` in ``environment: live`` (the
        default); a ccxt ``demo`` or ``testnet`` account is paper, as simulators are."""
        return [v.name for v in self.venues if v.kind is VenueKind.CCXT and v.environment == "live"]

    def live_refusal(self, *, switch: bool, env_ok: bool = False) -> str | None:
        """The live interlock: why an entry point that can send orders may not run with these
        settings, or None. Paper (no live venue, and profile not ``live`` unless every venue is a ccxt
        demo/testnet account) needs nothing; else ``mode: live`` and the switch (``switch``: the flag;
        ``env_ok``: non-interactive workers, also ``HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE=1``) are required."""
        live = self.live_venues()
        if not live and (self.profile != "live" or self.venues and all(v.kind is VenueKind.CCXT for v in self.venues)):
            return None  # no real money: simulators, demo and testnet accounts (the latter also in profile live)
        missing = [m for m, ok in ((LIVE_SWITCH_FLAG + (f" (or {LIVE_SWITCH_ENV}=1)" if env_ok else ""), switch),
                                   ("mode: live in the config file", self.mode == "live")) if not ok]
        what = (f"venues {', '.join(live)} are live (kind ccxt, environment live) and trade real money" if live
                else "the live profile trades real money on real venues")
        return f"refusing to trade: {what}; it needs {' and '.join(missing)}" if missing else None

    def ledger_url(self) -> str:
        if self.ledger.url is not None:
            return self.ledger.url.get_secret_value()
        return f"sqlite:///{self.state_dir}/ledger.sqlite"

    def venue(self, name: str) -> VenueConfig:
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(f"unknown venue {name!r}; configured: {', '.join(v.name for v in self.venues)}")


#: the live interlock's explicit switch (see ``Settings.live_refusal``): the command-line flag, and
#: for non-interactive workers (``hedgeflow worker``, the worker ``hedgeflow up`` starts) the env var
LIVE_SWITCH_FLAG = "--i-understand-this-is-live"
LIVE_SWITCH_ENV = "HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE"


def live_switch_env(environ: dict[str, str] | None = None) -> bool:
    """True when ``HEDGEFLOW_I_UNDERSTAND_THIS_IS_LIVE=1`` (exactly ``1``) is set."""
    return (os.environ if environ is None else environ).get(LIVE_SWITCH_ENV, "").strip() == "1"


def demo_venues() -> list[dict[str, Any]]:  # one simulated venue per dialect (ports 8701-8704)
    # Bybit's base-tier taker fee (0.055 %, the Bybit sim's default) is above the 0.05 % default
    return [{"name": f"sim-{c}", "kind": "sim", "port": 8701 + i, "seed": i + 1, "funding_interval_s": 60, "dialect": d}
            | ({"taker_fee": "0.00055"} if d == "bybit" else {})
            for i, (c, d) in enumerate(zip("abcd", ("binance", "bybit", "okx", "hyperliquid"), strict=True))]


def _format_error(err: dict[str, Any], data: dict[str, Any]) -> str:
    loc = list(err.get("loc", ()))
    # name venues by their name rather than their list index
    if len(loc) >= 2 and loc[0] == "venues" and isinstance(loc[1], int):
        try:
            loc[1] = data["venues"][loc[1]].get("name", loc[1])
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
    field = ".".join(str(p) for p in loc) or "config"
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None or "secret" in field else f" (got {got!r})"
    if err.get("type") == "extra_forbidden":
        return f"{field}: unknown setting; remove it or check the spelling"
    return f"{field}: {msg}{shown}"


def load_settings(
    path: str | Path | None = None,
    *,
    profile: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Load settings; raise ConfigError listing every bad field."""
    env = os.environ if environ is None else environ
    path = path or env.get("HEDGEFLOW_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError([f"--config: file {p} not found"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([f"--config: {p} is not valid YAML ({exc})"]) from None
        if not isinstance(loaded, dict):
            raise ConfigError([f"--config: {p} must hold a mapping of sections"])
        data = loaded
    if profile:
        data["profile"] = profile
    if data.get("profile", "demo") == "demo" and not data.get("venues") and f"{ENV_PREFIX}VENUES" not in env:
        data["venues"] = demo_venues()
    if data.get("profile", "demo") == "demo" and isinstance(data.get("scanner", {}), dict):
        data["scanner"] = {**demo_scanner(), **(data.get("scanner") or {})}
    try:
        if environ is None:
            settings = Settings(**data)
        else:  # tests pass an explicit environment
            saved = dict(os.environ)
            try:
                os.environ.clear()
                os.environ.update(environ)
                settings = Settings(**data)
            finally:
                os.environ.clear()
                os.environ.update(saved)
    except ValidationError as exc:
        raise ConfigError([_format_error(e, data) for e in exc.errors()]) from None
    problems: list[str] = []
    for v in settings.venues:
        problems += v.resolve_secrets(env)
    if problems:
        raise ConfigError(problems)
    return settings
