"""Alerts: message types, webhook payloads (Slack, Discord, Telegram) and the notifier.

Every alert always goes to the log (logger ``hedgeflow.alerts``); with ``alerts.webhook_url``
set it is also POSTed there. The ``send_alert`` activity calls :meth:`Notifier.send`, which
raises :class:`AlertDeliveryError` when the webhook does not answer 2xx, so Temporal retries
the delivery. The webhook URL is a secret (Slack/Discord/Telegram URLs carry the token): it
is never logged, and error messages name only its host.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from telemetry.metrics import ALERTS

log = logging.getLogger("hedgeflow.alerts")


class AlertKind(StrEnum):
    TRADE_OPENED = "trade_opened"
    TRADE_CLOSED = "trade_closed"
    TRADE_ABORTED = "trade_aborted"
    EMERGENCY_CLOSE = "emergency_close"
    CLOSE_STUCK = "close_stuck"
    REDUCED = "reduced"
    ORPHAN_FOUND = "orphan_found"
    POSITION_MISMATCH = "position_mismatch"
    ORDER_MISMATCH = "order_mismatch"
    VENUE_UNHEALTHY = "venue_unhealthy"
    VENUE_UNREACHABLE = "venue_unreachable"
    HALTED = "halted"
    DAILY_SUMMARY = "daily_summary"
    NO_TRADE = "no_trade"
    VENUE_ERROR_RATE = "venue_error_rate"
    BALANCE_DROP = "balance_drop"


TITLES = {
    AlertKind.TRADE_OPENED: "Trade opened",
    AlertKind.TRADE_CLOSED: "Trade closed",
    AlertKind.TRADE_ABORTED: "Trade aborted",
    AlertKind.EMERGENCY_CLOSE: "EMERGENCY CLOSE",
    AlertKind.CLOSE_STUCK: "Close stuck",
    AlertKind.REDUCED: "Position reduced",
    AlertKind.ORPHAN_FOUND: "Orphan position found",
    AlertKind.POSITION_MISMATCH: "Position mismatch",
    AlertKind.ORDER_MISMATCH: "Order mismatch",
    AlertKind.VENUE_UNHEALTHY: "Venue unhealthy",
    AlertKind.VENUE_UNREACHABLE: "Venue unreachable",
    AlertKind.HALTED: "Trading halted",
    AlertKind.DAILY_SUMMARY: "Daily summary",
    AlertKind.NO_TRADE: "No trade",
    AlertKind.VENUE_ERROR_RATE: "Venue error rate high",
    AlertKind.BALANCE_DROP: "Balance drop",
}
ICONS = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept the alert (retryable)."""


def render_text(kind: str, message: str, severity: str = "info", trade_id: str | None = None) -> str:
    try:
        title = TITLES[AlertKind(kind)]
    except ValueError:
        title = kind.replace("_", " ").capitalize()
    line = f"{ICONS.get(severity, '')} [hedgeflow] {title}: {message}".strip()
    return f"{line} (trade {trade_id})" if trade_id and trade_id not in message else line


def payload(fmt: str, text: str, *, telegram_chat_id: str | None = None) -> dict[str, Any]:
    """The JSON body for a Slack (``text``), Discord (``content``) or Telegram
    (``chat_id`` + ``text``, Bot API sendMessage) webhook."""
    if fmt == "slack":
        return {"text": text}
    if fmt == "discord":
        return {"content": text[:2000]}
    if fmt == "telegram":
        return {"chat_id": telegram_chat_id, "text": text[:4096], "disable_web_page_preview": True}
    raise ValueError(f"unknown alert format {fmt!r}; use slack, discord or telegram")


class Notifier:
    def __init__(self, webhook_url: str | None = None, fmt: str = "slack", *, telegram_chat_id: str | None = None,
                 timeout_s: float = 10) -> None:
        self._url = webhook_url
        self.fmt = fmt
        self.telegram_chat_id = telegram_chat_id
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Any) -> Notifier:
        a = settings.alerts
        return cls(a.webhook_url.get_secret_value() if a.webhook_url else None, a.format,
                   telegram_chat_id=a.telegram_chat_id, timeout_s=a.timeout_s)

    @property
    def target(self) -> str:
        """Where alerts go, without the secret part of the URL."""
        return f"{self.fmt} webhook at {urlsplit(self._url).hostname}" if self._url else "log only"

    async def send(self, kind: str, message: str, severity: str = "info", trade_id: str | None = None) -> None:
        text = render_text(kind, message, severity, trade_id)
        log.log(LEVELS.get(severity, logging.INFO), "ALERT %s %s", kind, text)
        if not self._url:
            ALERTS.labels(kind, severity).inc()
            return
        body = payload(self.fmt, text, telegram_chat_id=self.telegram_chat_id)
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.post(self._url, json=body) as resp:
                    if resp.status >= 300:
                        raise AlertDeliveryError(f"{self.target} answered HTTP {resp.status}")
        except aiohttp.ClientError as exc:
            raise AlertDeliveryError(f"{self.target} unreachable: {type(exc).__name__}") from None
        except TimeoutError:
            raise AlertDeliveryError(f"{self.target} timed out after {self.timeout_s:g}s") from None
        ALERTS.labels(kind, severity).inc()
