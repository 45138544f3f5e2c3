"""Typed configuration: one YAML file plus ``HEDGEFLOW__SECTION__KEY`` environment overrides."""

from config.settings import (  # noqa: F401
    ConfigError,
    HoldParams,
    LimitsConfig,
    ScannerConfig,
    ScannerTuning,
    Settings,
    TemporalConfig,
    TradeConfig,
    TradeExecution,
    VenueConfig,
    VenueKind,
    load_settings,
)
