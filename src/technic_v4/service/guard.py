"""The gate every HTTP request passes (a plain ASGI middleware: streaming responses such as SSE
pass through untouched).

1. Host check (when ``allowed_hosts`` is set): a loopback-bound service answers only to its own
   names, so a web page cannot reach it through DNS rebinding.
2. API key (when set): every path but the open ones (``/health``, the static web page shell,
   which holds no data and asks the user for the key, and the Swagger UI shell, which asks for
   it to fetch ``/openapi.json``) needs ``X-API-Key``, compared in constant time. The key is never logged or
   echoed.
3. Request body limit: ``Content-Length`` over the limit, or a streamed body growing past it,
   gets 413 before the application reads it.
4. Security headers on every response.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health", "/", "/index.html", "/favicon.ico", "/docs"})
OPEN_PREFIXES = ("/static/", "/docs-assets/")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
     b"form-action 'self'"),
]


class BodyTooLarge(Exception):
    pass


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Guard:
    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int,
                 allowed_hosts: tuple[str, ...] | None = None) -> None:
        self.app = app
        self._key = None if not api_key else api_key.encode()
        self.max_body = max_body_bytes
        self.allowed_hosts = None if allowed_hosts is None else frozenset(
            h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # ASGI: lower-case names; last value wins
        if self.allowed_hosts is not None:
            host = _host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                await _reply(send, 421, "misdirected_request",
                             f"this service answers to {', '.join(sorted(self.allowed_hosts))}")
                return
        if self._key is not None and not is_open(scope["path"]):
            given = headers.get(b"x-api-key")
            if given is None:
                await _reply(send, 401, "unauthorized", "this API needs the X-API-Key header")
                return
            if not hmac.compare_digest(given, self._key):
                await _reply(send, 401, "unauthorized", "invalid X-API-Key")
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _reply(send, 400, "bad_request", "invalid Content-Length")
                return
            if n > self.max_body:
                await _reply(send, 413, "payload_too_large",
                             f"request body of {n} bytes exceeds the limit of {self.max_body}")
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return msg

        async def secured_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg["headers"] = [*msg.get("headers", []), *SECURITY_HEADERS]
            await send(msg)

        try:
            await self.app(scope, limited_receive, secured_send)
        except BodyTooLarge:
            if not started:
                await _reply(send, 413, "payload_too_large",
                             f"request body exceeds the limit of {self.max_body} bytes")


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8502
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})
