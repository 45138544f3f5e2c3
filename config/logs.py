"""How every hedgeflow process logs, once: the worker, ``up``, the command line and the simulator
(a program of its own that imports only ``domain`` and ``config``, hence this module's place).

``configure_logging(settings.logging, secrets=...)`` sends every record to stderr, one line each:

* ``json`` (the default): ``{"time", "level", "logger", "message"}`` plus, where the record knows
  them, ``trade_id``, ``workflow_id``, ``run_id``, ``workflow_type``, ``activity_id``,
  ``activity_type``, ``attempt``, ``task_queue``, ``namespace`` — Temporal's ``workflow.logger``
  and ``activity.logger`` carry those in ``extra`` (``temporal_workflow`` / ``temporal_activity``),
  and ``workers.logs`` adds them to plain loggers inside an activity — and ``exc`` for a traceback;
* ``text``: ``TIME LEVEL LOGGER message [ids]`` for a terminal.

Records from ``logging.level`` up are written (INFO by default); the loggers that say a line per
request or connection (``QUIET``) only from WARNING unless the level is DEBUG. Every secret value handed in is replaced by
``**********`` in the finished line, whatever logger or exception text carried it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

MASK = "**********"
#: ids a line carries when its record has them, in this order
CONTEXT = ("trade_id", "workflow_id", "run_id", "workflow_type", "activity_id", "activity_type", "attempt",
           "task_queue", "namespace")
#: Temporal's names for them (``temporal_activity`` says ``workflow_run_id``)
_ALIASES = {"workflow_run_id": "run_id"}
#: loggers whose INFO is one line per request or connection: kept at WARNING unless DEBUG is asked
QUIET = ("aiohttp.access", "aiohttp.server", "asyncio", "urllib3", "sqlalchemy", "alembic")
_HANDLER_NAME = "hedgeflow"


def trade_id_of(workflow_id: str | None) -> str | None:
    """The trade a workflow belongs to: the trade's own id (``trade-…``), or the trade behind one of
    its alert workflows (``trade-…-alert-N``)."""
    if not workflow_id or not workflow_id.startswith("trade-"):
        return None
    return workflow_id.split("-alert-")[0]


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The ids of ``record``: flat attributes first, then Temporal's ``extra`` dicts."""
    out: dict[str, Any] = {}
    for holder in ("temporal_workflow", "temporal_activity"):
        details = getattr(record, holder, None)
        if isinstance(details, Mapping):
            for k, v in details.items():
                key = _ALIASES.get(k, k)
                if key in CONTEXT and v is not None:
                    out.setdefault(key, v)
    for key in CONTEXT:
        v = getattr(record, key, None)
        if v is not None:
            out[key] = v
    if "trade_id" not in out and (tid := trade_id_of(out.get("workflow_id"))):
        out["trade_id"] = tid
    return {k: out[k] for k in CONTEXT if k in out}


def secret_fragments(values: Iterable[str | None]) -> list[str]:
    """What to mask for each secret: the value itself and, for a URL (a webhook, a database), the
    parts that are secret on their own — its password, path and query, and each long path segment
    (the token of ``/hooks/T0KEN`` or ``/bot<token>/sendMessage``); for a multi-line value (a PEM
    private key) each line of it. Longest first."""
    out: set[str] = set()
    for value in values:
        if not value or len(value) < 4:
            continue
        out.add(value)
        if "\n" in value:  # a PEM key: a JSON line escapes its newlines, so each line is masked on its own
            out.update(line for line in value.splitlines() if len(line) >= 16 and not line.startswith("-----"))
            continue
        try:
            parts = urlsplit(value)
        except ValueError:
            continue
        if parts.scheme and parts.netloc:
            if parts.password:
                out.add(parts.password)
            out.update(p for p in (parts.path, parts.query) if len(p) >= 8)
            out.update(seg for seg in parts.path.split("/") if len(seg) >= 12)
    return sorted(out, key=len, reverse=True)


def message_of(record: logging.LogRecord) -> str:
    """The message, without the ``({...})`` suffix Temporal's loggers append: the line carries
    those ids as fields."""
    message = record.getMessage()
    for holder in ("temporal_workflow", "temporal_activity"):
        details = getattr(record, holder, None)
        if isinstance(details, Mapping) and message.endswith(suffix := f" ({dict(details)})"):
            message = message[: -len(suffix)]
    return message


class _Masking(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = self.render(record)
        for s in self.secrets:
            if s in line:
                line = line.replace(s, MASK)
        return line

    def render(self, record: logging.LogRecord) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class JsonFormatter(_Masking):
    """One JSON object per line: time (UTC, ISO-8601, ms), level, logger, message, ids, exc."""

    def render(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message_of(record),
        }
        line.update(record_context(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(_Masking):
    """``2026-01-01T00:00:00.000+00:00 INFO hedgeflow.alerts ALERT … [trade_id=…]``."""

    def render(self, record: logging.LogRecord) -> str:
        ctx = record_context(record)
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        text = f"{when} {record.levelname} {record.name} {message_of(record)}"
        if ctx:
            text += " [" + " ".join(f"{k}={v}" for k, v in ctx.items()) + "]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(config: Any = None, *, secrets: Iterable[str | None] = (), stream: Any = None) -> logging.Handler:
    """Install the one stderr handler on the root logger (replacing an earlier one of ours).
    ``config``: a ``LoggingConfig`` (``settings.logging``), None for the defaults (INFO, json).
    ``secrets``: values never to appear in a line (``secret_fragments`` widens URLs)."""
    from config.settings import LoggingConfig

    config = config or LoggingConfig()
    level = logging.getLevelName(config.level)
    formatter = (JsonFormatter if config.format == "json" else TextFormatter)(secret_fragments(secrets))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    return handler


def settings_secrets(settings: Any) -> list[str]:
    """Every ``SecretStr`` value in ``settings`` (venue keys and secrets, the webhook URL, the
    ledger URL), found by walking the models, so a secret added later is masked too."""
    from pydantic import BaseModel, SecretStr

    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, SecretStr):
            found.append(obj.get_secret_value())
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                walk(getattr(obj, name, None))
        elif isinstance(obj, list | tuple):
            for item in obj:
                walk(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item)

    walk(settings)
    return found


def logging_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """The ``logging`` section from ``HEDGEFLOW__LOGGING__LEVEL`` / ``__FORMAT`` alone, for the
    simulator, which loads no settings (``hedgeflow up`` exports its section to its children).
    Raises ``ConfigError`` naming the bad field, as the settings do."""
    import os

    from pydantic import ValidationError

    from config.settings import ConfigError, LoggingConfig

    env = os.environ if environ is None else environ
    given = {k: env[f"HEDGEFLOW__LOGGING__{k.upper()}"] for k in ("level", "format")
             if env.get(f"HEDGEFLOW__LOGGING__{k.upper()}")}
    try:
        return LoggingConfig(**given)
    except ValidationError as exc:
        raise ConfigError([f"logging.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
                           for e in exc.errors()]) from None
