"""The ASGI guard in front of every route: who may ask, in what shape, how much.

* ``Host`` must be a name the server answers to (its bind address, ``localhost``,
  ``127.0.0.1``, the address the connection came in on, or ``--allow-host``) → else 421: a
  DNS-rebinding page cannot read the API through its own domain name.
* ``POST``/``PUT``/``PATCH``/``DELETE`` with an ``Origin`` that is not the server's own (or
  ``--allow-origin``) → 403, with or without an API key: a page the user visits cannot submit or
  cancel jobs. Clients that send no ``Origin`` (curl, scripts) are not browsers.
* Bodies are counted while they are read, however they arrive (``Content-Length`` or
  chunked): a JSON body over ``limits.body_bytes``, a multipart one over the audio limit plus
  that → 413 (:class:`BodyTooLarge`) after reading at most the limit.
* Every response carries ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer`` and a ``Content-Security-Policy`` (the page's scripts and
  styles are its own files; nothing may frame it).

It also holds the HTTP protocol ``serve`` runs (:func:`http_protocol`): uvicorn's h11 with a
deadline for the first request's headers (slow or idle connections are closed).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from rhythmflow.serve.apierror import error_body
from rhythmflow.serve.settings import Settings

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]
DOCS = ("/docs", "/redoc")  # FastAPI's own pages load their scripts from a CDN
FIRST_REQUEST_TIMEOUT = 10.0  # seconds a connection may take to send its first headers


class BodyTooLarge(Exception):
    """The body went past its limit while being read (HTTP 413)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _split_host(value: str) -> str:
    """``host[:port]`` → the host, lowercased, without IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Guard:
    """Pure ASGI middleware (added last, so it wraps every route and the page)."""

    def __init__(self, app, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.hosts = {"localhost", "127.0.0.1", "::1", _split_host(settings.host),
                      *(_split_host(h) for h in settings.allow_hosts)}
        self.origins = {o.rstrip("/").lower() for o in settings.allow_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        csp = not path.startswith(DOCS)

        async def send_secure(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() not in {k for k, _ in SECURITY_HEADERS}]
                headers += SECURITY_HEADERS
                if csp:
                    headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            headers[k.decode("latin-1").lower()] = v.decode("latin-1")
        refusal = self._refusal(scope, headers, path)
        if refusal is not None:
            return await _answer(send_secure, *refusal)
        limit = self._limit(headers, path)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _answer(send_secure, 413, f"the request body is larger than {limit} "
                                 "bytes", close=True)
        return await self.app(scope, _counted(receive, limit), send_secure)

    def _refusal(self, scope, headers: dict[str, str], path: str) -> tuple[int, str] | None:
        host = _split_host(headers.get("host", ""))
        server = scope.get("server") or ("", 0)
        allowed = host in self.hosts or "*" in self.hosts or (
            _is_ip(host) and host == _split_host(str(server[0])))
        if not allowed:
            return 421, (f"this server does not answer to the host name {host[:100]!r}; its "
                         "operator can add it to the allowed hosts (RHYTHMFLOW_ALLOW_HOST)")
        method = scope.get("method", "GET")
        if method in STATE_CHANGING:
            origin = headers.get("origin")
            if origin is not None and not self._own_origin(origin, headers, scope):
                return 403, (f"requests from the origin {origin[:100]!r} may not change jobs; "
                             "the server's operator can add it to the allowed origins "
                             "(RHYTHMFLOW_ALLOW_ORIGIN)")
        return None

    def _own_origin(self, origin: str, headers: dict[str, str], scope) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        scheme = scope.get("scheme", "http")
        return (parts.scheme == scheme and parts.netloc != ""
                and parts.netloc == headers.get("host", "").strip().lower())

    def _limit(self, headers: dict[str, str], path: str) -> int:
        limits = self.settings.limits
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return limits.audio_bytes + limits.body_bytes
        return limits.body_bytes


def _counted(receive, limit: int):
    """``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` bytes came."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"the request body is larger than {limit} bytes")
        return message

    return wrapped


async def _answer(send, status: int, message: str, close: bool = False) -> None:
    body = error_body(status, message)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def http_protocol():
    """uvicorn's h11 protocol with a deadline for the headers of every request: a connection
    that sends nothing (or its headers too slowly) for ``FIRST_REQUEST_TIMEOUT`` seconds
    before a request starts is closed (uvicorn's own keep-alive timeout only runs after a
    response)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        _deadline = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(FIRST_REQUEST_TIMEOUT, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if (self.cycle is None or self.cycle.response_complete) and \
                    not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not None and self.cycle is not cycle:
                self._disarm()  # a request's headers arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11
