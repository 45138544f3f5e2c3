"""Typed configuration: one YAML file plus ``HEDGEFLOW__SECTION__KEY`` environment overrides."""

from config.settings import (  # noqa: F401
    ConfigError,
    LimitsConfig,
    ScannerConfig,
    Settings,
    TemporalConfig,
    TradeConfig,
    VenueConfig,
    VenueKind,
    load_settings,
)
