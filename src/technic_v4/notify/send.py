"""Send a :class:`~technic_v4.notify.Message` to targets: timeouts, bounded retries, no secrets out.

:func:`deliver` sends to one target and returns a :class:`~technic_v4.notify.Delivery`; it never
raises for a failed send. Each attempt:

1. the address guard: unless ``TECHNIC_ALERTS_ALLOW_PRIVATE=true``, the URL's host is resolved
   and refused when any address is private, loopback, link-local, multicast or reserved
   (redirects are never followed, so a public host cannot bounce the request inward), and the
   request goes to the checked address (a second DNS answer could point inward: rebinding);
2. one request (httpx, ``timeout_s`` per network operation) or one SMTP session (smtplib);
3. the outcome: 2xx (Telegram: ``"ok": true``) is success; connection errors, timeouts, HTTP 429
   and 5xx, SMTP 4xx are retried with exponential backoff and jitter (tenacity), never sooner
   than the receiver's ``Retry-After`` (capped); any other answer (a 4xx, a redirect, SMTP 5xx,
   a refused login, a certificate that does not verify) ends the delivery at once.

Error texts are one line, and every secret of the target (the signing secret, the SMTP password,
the bot token, the Slack/Discord URL path, a webhook's query string) is replaced by ``***``
before it is logged or returned.

Webhook signature (when the target has a ``secret``): headers ``X-Technic-Timestamp: <unix
seconds>`` and ``X-Technic-Signature: sha256=<hex>`` where ``<hex>`` is HMAC-SHA256 keyed with the
secret over the bytes ``<timestamp>.<raw body>``. A receiver recomputes it over the raw body it
read, compares in constant time, and rejects timestamps older than a few minutes (replays).
Each retry is signed afresh with its own timestamp.

:func:`deliver_all` sends to many targets at once, one thread each, so a slow or failing target
never delays the others.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

from technic_v4.errors import ConfigError
from technic_v4.notify import Delivery, Message, render
from technic_v4.notify.targets import (
    DiscordTarget,
    EmailTarget,
    SlackTarget,
    Target,
    TelegramTarget,
    WebhookTarget,
    blocked_ip,
    describe,
    literal_blocked,
    private_refusal,
    resolve_secrets,
)
from technic_v4.retrying import RetryAfterBackoff, parse_retry_after

logger = logging.getLogger(__name__)

USER_AGENT = "technic-alerts/1"
SIGNATURE_HEADER = "X-Technic-Signature"
TIMESTAMP_HEADER = "X-Technic-Timestamp"
KEY_HEADER = "X-Technic-Key"
_ERROR_CHARS = 300
_ANSWER_BYTES = 64 * 1024


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Technic-Signature`` value: ``sha256=`` + HMAC-SHA256(secret, ``timestamp.body``)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class _Retry(Exception):  # a failed attempt worth another; never escapes this module
    def __init__(self, detail: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class _Stop(Exception):  # a failure another attempt would not fix; never escapes this module
    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def scrub(text: str, target: Target) -> str:
    """``text`` as one line of at most 300 characters with every secret of ``target`` (and any
    Telegram ``/bot<token>`` path) replaced by ``***``."""
    for s in sorted(target.secrets(), key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    text = _BOT_PATH.sub("bot***", text)
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


class _ScrubLogs(logging.Filter):
    """Installed on httpx's and httpcore's loggers: their INFO line names the request URL, which
    for Telegram holds the bot token and for Slack/Discord is the credential itself. Scrubs the
    secrets of every delivery in progress (and any ``/bot<token>`` path) from those records."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._active: collections.Counter[str] = collections.Counter()

    def hold(self, secrets: list[str]) -> None:
        with self._lock:
            self._active.update(s for s in secrets if s)

    def release(self, secrets: list[str]) -> None:
        with self._lock:
            self._active.subtract(s for s in secrets if s)
            self._active = +self._active  # drop zero counts

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        with self._lock:
            active = sorted(self._active, key=len, reverse=True)
        clean = text
        for secret in active:
            clean = clean.replace(secret, "***")
        clean = _BOT_PATH.sub("bot***", clean)
        if clean != text:
            record.msg, record.args = clean, ()
        return True


_BOT_PATH = re.compile(r"bot\d+:[A-Za-z0-9_-]+")
_LOG_SCRUB = _ScrubLogs()
for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2",
              "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_LOG_SCRUB)


# --- the address guard -------------------------------------------------------------------------

def check_address(url: str) -> str:
    """Raise :class:`_Stop` when ``url``'s host is (or resolves to) a blocked address; else
    return the checked address to connect to (a second look-up could answer otherwise)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if literal_blocked(host):
        raise _Stop(private_refusal())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise _Retry(f"cannot resolve {host}: {getattr(e, 'strerror', None) or e}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if blocked_ip(ip):
            raise _Stop(f"{host} resolves to {ip}: {private_refusal()}")
    if not infos:
        raise _Retry(f"cannot resolve {host}: no address")
    return str(infos[0][4][0])


def _pinned(url: str, ip: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``url`` with its host replaced by the checked ``ip`` (DNS rebinding cannot swap it), the
    Host header it had, and for https the name the certificate is verified against."""
    u = httpx.URL(url)
    extensions: dict[str, Any] = {"sni_hostname": u.host} if u.scheme == "https" else {}
    return str(u.copy_with(host=ip)), {"Host": u.netloc.decode("ascii")}, extensions


# --- one attempt -------------------------------------------------------------------------------

def _body_hint(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict):  # Telegram: description; Discord: message; others: error
        for key in ("description", "message", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:200]
    return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    seconds = parse_retry_after(response.headers.get("Retry-After"))
    if seconds is not None:
        return seconds
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict):  # Discord: retry_after; Telegram: parameters.retry_after
        params = data.get("parameters")
        value = data.get("retry_after", params.get("retry_after") if isinstance(params, dict)
                         else None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return max(0.0, float(value))
    return None


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float,
          allow_private: bool) -> httpx.Response:
    extensions: dict[str, Any] = {}
    if not allow_private:
        url, host, extensions = _pinned(url, check_address(url))
        headers = {**headers, **host}
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False,
                          headers={"User-Agent": USER_AGENT}) as client, \
                client.stream("POST", url, content=body, headers=headers,
                              extensions=extensions) as streamed:
            # keep at most 64 KiB of the answer: enough for any error text, bounded for a
            # receiver that answers with a flood
            kept = bytearray()
            try:
                for chunk in streamed.iter_bytes():
                    kept += chunk[: _ANSWER_BYTES - len(kept)]
                    if len(kept) >= _ANSWER_BYTES:
                        break
            except httpx.DecodingError:
                kept.clear()  # an answer that does not decode says nothing; its status stands
            # ``kept`` is decoded already: without Content-Encoding, or httpx decodes it again
            kept_headers = [(k, v) for k, v in streamed.headers.multi_items()
                            if k.lower() not in ("content-encoding", "content-length")]
            response = httpx.Response(streamed.status_code, headers=kept_headers,
                                      content=bytes(kept), request=streamed.request)
    except httpx.TimeoutException:
        raise _Retry(f"timed out after {timeout_s:g} s") from None
    except httpx.TransportError as e:
        raise _Retry(f"connection failed: {type(e).__name__}: {e}") from None
    status = response.status_code
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    hint = _body_hint(response).strip()
    said = f"{reason}: {hint}" if hint else reason
    if status == 429 or status >= 500:
        raise _Retry(said, status, _retry_after(response))
    if 300 <= status < 400:
        raise _Stop(f"{reason}: redirects are not followed; use the final URL", status)
    if status >= 400:
        raise _Stop(said, status)
    return response


def _send_http(target: Target, m: Message, timeout_s: float, allow_private: bool) -> int:
    headers = {"Content-Type": "application/json; charset=utf-8", KEY_HEADER: render.header_key(m)}
    if isinstance(target, WebhookTarget):
        url, body = target.url, render.webhook_bytes(m)
        if target.secret is not None:
            ts = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = ts
            headers[SIGNATURE_HEADER] = signature(target.secret.get_secret_value(), ts, body)
    elif isinstance(target, DiscordTarget):  # before SlackTarget: a subclass of it
        url, body = target.url, render.json_bytes(render.discord_payload(m))
    elif isinstance(target, SlackTarget):
        url, body = target.url, render.json_bytes(render.slack_payload(m))
    elif isinstance(target, TelegramTarget):
        url = target.send_url
        body = render.json_bytes(render.telegram_payload(m, target.chat_id))
    else:  # pragma: no cover - EmailTarget goes to _send_email
        raise TypeError(type(target).__name__)
    response = _post(url, body, headers, timeout_s, allow_private)
    if isinstance(target, TelegramTarget):
        try:
            ok = response.json().get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise _Stop(f"Telegram did not accept the message: {_body_hint(response)}",
                        response.status_code)
    return response.status_code


def _send_email(target: EmailTarget, m: Message, timeout_s: float) -> int:
    msg = render.email_message(m, target.sender, target.to)
    context = ssl.create_default_context()
    host, port = target.host, target.smtp_port
    try:
        smtp = (smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=context)
                if target.security == "ssl" else smtplib.SMTP(host, port, timeout=timeout_s))
        with smtp:
            smtp.ehlo()
            if target.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise _Stop("the server does not offer STARTTLS: set security to ssl or none")
                smtp.starttls(context=context)
                smtp.ehlo()
            if target.username:
                if not smtp.has_extn("auth"):
                    raise _Stop("the server offers no login (AUTH) on this connection: unset "
                                "username and password, or use security starttls or ssl")
                password = target.password.get_secret_value() if target.password else ""
                smtp.login(target.username, password)
            refused = smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as e:
        raise _Stop(f"SMTP login refused ({e.smtp_code}): check username and password",
                    e.smtp_code) from None
    except smtplib.SMTPRecipientsRefused as e:
        codes = sorted({code for code, _ in e.recipients.values()})
        text = f"every recipient refused ({', '.join(map(str, codes))})"
        if all(400 <= c < 500 for c in codes):
            raise _Retry(text, codes[0]) from None
        raise _Stop(text, codes[-1]) from None
    except smtplib.SMTPResponseException as e:  # sender refused, data refused, other replies
        text = f"SMTP {e.smtp_code}: {_smtp_text(e.smtp_error)}"
        if 400 <= e.smtp_code < 500:
            raise _Retry(text, e.smtp_code) from None
        raise _Stop(text, e.smtp_code) from None
    except ssl.SSLCertVerificationError as e:
        raise _Stop(f"TLS certificate of {host} does not verify: {e.verify_message}") from None
    except (smtplib.SMTPException, OSError) as e:  # disconnects, refused connections, timeouts
        what = "timed out" if isinstance(e, TimeoutError | socket.timeout) else \
            f"{type(e).__name__}: {e}"
        raise _Retry(f"SMTP {host}:{port}: {what}") from None
    if refused:
        shown = ", ".join(f"{addr} ({code})" for addr, (code, _) in sorted(refused.items()))
        # the accepted recipients have it; a retry would send it to them again
        raise _Stop(f"sent to {len(target.to) - len(refused)} of {len(target.to)}; "
                    f"refused: {shown}", 250)
    return 250


def _smtp_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _attempt(target: Target, m: Message, timeout_s: float, allow_private: bool) -> int:
    if isinstance(target, EmailTarget):
        return _send_email(target, m, timeout_s)
    return _send_http(target, m, timeout_s, allow_private)


# --- public ------------------------------------------------------------------------------------

def deliver(target: Target, message: Message, *, timeout_s: float = 10.0, attempts: int = 4,
            allow_private: bool | None = None, backoff_s: float = 1.0,
            max_backoff_s: float = 30.0, retry_after_cap_s: float = 60.0) -> Delivery:
    """Send ``message`` to ``target``: at most ``attempts`` tries, waiting ``backoff_s``·2ⁿ (plus
    jitter, at most ``max_backoff_s``, at least a Retry-After up to ``retry_after_cap_s``) between
    them. ``allow_private`` defaults to ``TECHNIC_ALERTS_ALLOW_PRIVATE``. Never raises for a failed
    send: the :class:`Delivery` says what happened, secrets scrubbed."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if allow_private is None:
        from technic_v4.config.settings import get_settings

        allow_private = get_settings().alerts_allow_private
    where = describe(target)
    try:
        target = resolve_secrets(target)
    except ConfigError as e:
        return Delivery(target=target.name, ok=False, attempts=0, error=str(e))
    tried = 0

    def once() -> int:
        nonlocal tried
        tried += 1
        return _attempt(target, message, timeout_s, bool(allow_private))

    def before_sleep(rs: tenacity.RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        detail = scrub(getattr(exc, "detail", type(exc).__name__), target)
        wait_s = rs.next_action.sleep if rs.next_action is not None else 0.0
        logger.warning("alert %r (%s): attempt %d of %d failed: %s; retrying in %.2f s",
                       target.name, where, rs.attempt_number, attempts, detail, wait_s)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=RetryAfterBackoff(backoff_s, max_backoff_s, retry_after_cap_s),
        retry=tenacity.retry_if_exception_type(_Retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    _LOG_SCRUB.hold(target.secrets())
    try:
        status = retrying(once)
    except _Retry as e:
        error = scrub(e.detail, target) + (f"; gave up after {tried} attempts" if tried > 1
                                           else "")
        logger.warning("alert %r (%s) failed: %s", target.name, where, error)
        return Delivery(target=target.name, ok=False, attempts=tried, error=error,
                        status=e.status)
    except _Stop as e:
        error = scrub(e.detail, target) + " (not retried)"
        logger.warning("alert %r (%s) failed: %s", target.name, where, error)
        return Delivery(target=target.name, ok=False, attempts=tried, error=error,
                        status=e.status)
    finally:
        _LOG_SCRUB.release(target.secrets())
    logger.info("alert %r (%s) sent (attempt %d)", target.name, where, tried)
    return Delivery(target=target.name, ok=True, attempts=tried, status=status)


def deliver_all(targets: Sequence[Target], message: Message, *,
                on_delivery: Callable[[Target, Delivery], None] | None = None,
                max_workers: int = 32, **options: Any) -> list[Delivery]:
    """Send ``message`` to every target at once (one thread each, up to ``max_workers``) and
    return their deliveries in the targets' order. ``on_delivery(target, delivery)`` is called
    in the caller's thread as each one finishes, so a slow target never holds back recording the
    others; when it raises, the other targets are still reported and the first such error is
    raised at the end. ``options`` go to :func:`deliver` (``timeout_s``, ``attempts``, ...)."""
    if not targets:
        return []
    if options.get("allow_private") is None:
        from technic_v4.config.settings import get_settings

        options["allow_private"] = get_settings().alerts_allow_private
    results: list[Delivery | None] = [None] * len(targets)
    callback_error: Exception | None = None  # the first on_delivery failure
    workers = max(1, min(len(targets), max_workers))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="technic-alert") as pool:
        futures: dict[Future[Delivery], int] = {
            pool.submit(deliver, t, message, **options): i for i, t in enumerate(targets)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                delivery = future.result()
            except Exception as e:  # noqa: BLE001 - a sender's bug must not cost the other targets
                logger.error("alert %r: sender failed: %s", targets[i].name,
                             scrub(f"{type(e).__name__}: {e}", targets[i]))
                delivery = Delivery(target=targets[i].name, ok=False, attempts=0,
                                    error=scrub(f"internal error: {type(e).__name__}: {e}",
                                                targets[i]))
            results[i] = delivery
            if on_delivery is not None:
                try:
                    on_delivery(targets[i], delivery)
                except Exception as e:  # noqa: BLE001 - raised below, once all are reported
                    callback_error = callback_error or e
    if callback_error is not None:
        raise callback_error
    return [d for d in results if d is not None]
