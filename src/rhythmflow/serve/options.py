"""What a request asks of the service rather than of the song: ``webhook_url``,
``webhook_events`` and ``preview_every``. Taken out of the body before it is validated as a
:class:`~rhythmflow.request.GenerationRequest`, checked here (errors name the field), stored on
the job row (``options``) and read by the store (webhook deliveries) and the worker (previews).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rhythmflow.serve.settings import Settings

FIELDS = ("webhook_url", "webhook_events", "preview_every")
EVENTS = ("queued", "running", "progress", "completed", "failed", "cancelled")
DEFAULT_EVENTS = ("queued", "running", "completed", "failed", "cancelled")
MAX_PREVIEW_EVERY = 1000


class OptionError(ValueError):
    """A bad service option (HTTP 422 naming ``field``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class JobOptions:
    """``webhook_events``: the events posted (``progress`` at most every ``progress_every``
    seconds); ``preview_every``: a preview every that many steps (0: none; None: the server's
    budgeted default)."""

    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = DEFAULT_EVENTS
    progress_every: float = 5.0
    preview_every: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"webhook_url": self.webhook_url, "webhook_events": list(self.webhook_events),
                "progress_every": self.progress_every, "preview_every": self.preview_every}


def split(body: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], JobOptions]:
    """(the body without the service options, the options checked)."""
    rest = {k: v for k, v in body.items() if k not in FIELDS}
    url = body.get("webhook_url")
    if url is not None:
        check_webhook_url(url, settings)
    events = body.get("webhook_events")
    if events is None:
        chosen = DEFAULT_EVENTS
    else:
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise OptionError("webhook_events: a list of event names: "
                              + ", ".join(EVENTS), "webhook_events")
        chosen = tuple(dict.fromkeys(e.removeprefix("job.") for e in events))
        bad = [e for e in chosen if e not in EVENTS]
        if bad:
            raise OptionError(f"webhook_events: unknown event {bad[0]!r}; known: "
                              + ", ".join(EVENTS), "webhook_events")
        if url is None:
            raise OptionError("webhook_events: give a webhook_url too", "webhook_events")
    every = body.get("preview_every", settings.preview_every)
    if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                              or not 0 <= every <= MAX_PREVIEW_EVERY):
        raise OptionError(f"preview_every: a whole number of steps from 1 to "
                          f"{MAX_PREVIEW_EVERY} (0: no previews), got {every!r}",
                          "preview_every")
    return rest, JobOptions(url, chosen, settings.webhook_progress_every, every)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError("webhook_url: an http:// or https:// URL with a host name",
                          "webhook_url")
    if parts.username or parts.password:
        raise OptionError("webhook_url: no user name or password in the URL", "webhook_url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OptionError("webhook_url: the port is not a number from 1 to 65535",
                          "webhook_url") from None
    return parts.hostname.lower().rstrip("."), port


def _allowed(entry: str) -> tuple[str, int | None]:
    """An ``--webhook-allow`` entry: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host.rstrip("."), int(port)
    return entry.rstrip("."), None


def check_webhook_url(url: Any, settings: Settings) -> None:
    """OptionError (field ``webhook_url``) unless ``url`` is http(s) to a host (and port) the
    operator allowed with ``--webhook-allow``: no request forgery against the server's
    network."""
    if not isinstance(url, str) or len(url) > 2048:
        raise OptionError("webhook_url: a URL (text, at most 2048 characters)", "webhook_url")
    host, port = _host_port(url)
    if not settings.webhook_allow:
        raise OptionError("webhook_url: this server sends no webhooks (its operator allowed no "
                          "webhook hosts)", "webhook_url")
    for entry in settings.webhook_allow:
        allowed_host, allowed_port = _allowed(entry)
        if _same_host(host, allowed_host) and allowed_port in (None, port):
            return
    raise OptionError(f"webhook_url: the host {host}:{port} is not one this server posts to "
                      "(not in the operator's webhook allow-list)", "webhook_url")


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b
