"""Alert targets: a plain dict (as the CLI, the API and the store hold it) validated into a typed,
frozen model by :func:`parse_target`.

Kinds: ``webhook`` (JSON, optionally HMAC-signed), ``slack`` and ``discord`` (incoming-webhook
URLs), ``email`` (SMTP) and ``telegram`` (Bot API ``sendMessage``). Secrets (a webhook's signing
secret, an SMTP password, a bot token, and the Slack/Discord URLs, which are credentials
themselves) are :class:`pydantic.SecretStr` or shown redacted by :func:`public_view`; no error
message quotes them.

The address guard (server-side request forgery): a URL whose host is a private, loopback,
link-local, multicast or reserved address is refused unless ``TECHNIC_ALERTS_ALLOW_PRIVATE=true``.
Here, at parse time, only what needs no DNS is checked (literal IPs, ``localhost``);
:func:`technic_v4.notify.send.deliver` resolves the name and checks every address before each
attempt.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from technic_v4.errors import ConfigError

KINDS = ("webhook", "slack", "discord", "email", "telegram")
SECURITY = ("starttls", "ssl", "none")
_DEFAULT_PORT = {"starttls": 587, "ssl": 465, "none": 25}
ALLOW_PRIVATE_SETTING = "TECHNIC_ALERTS_ALLOW_PRIVATE"


def _http_url(url: str) -> str:
    """An absolute http(s) URL with a host; the message never quotes the URL (it may hold a
    token)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("not a valid URL (expected http://host/path or https://host/path)"
                         ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("scheme must be one of http, https")
    if not parts.hostname:
        raise ValueError("has no host (expected http://host/path or https://host/path)")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain spaces")
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in url):
        raise ValueError("must not contain control characters")
    return url


def blocked_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an alert may not be sent to ``ip``: private, loopback, link-local, multicast,
    reserved, unspecified or otherwise not global, such as the shared address space 100.64/10
    (an IPv4-mapped IPv6 address is judged as its IPv4 address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def literal_blocked(host: str) -> bool:
    """A host refused without DNS: a blocked literal IP, or ``localhost`` (and ``*.localhost``)."""
    h = host.strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return blocked_ip(ipaddress.ip_address(h))
    except ValueError:
        return False


def private_refusal(setting_hint: bool = True) -> str:
    """The one message for a refused address."""
    msg = ("host is a private, loopback, link-local, multicast or reserved address; alerts are "
           "not sent there")
    return f"{msg} unless {ALLOW_PRIVATE_SETTING}=true" if setting_hint else msg


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True,
                              str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")

    def urls(self) -> list[str]:
        """The URLs this target sends to (checked by the address guard)."""
        return []

    def secrets(self) -> list[str]:
        """Every secret value of this target (scrubbed from error texts)."""
        return []


class WebhookTarget(_Target):
    """POST the JSON body to ``url``; with ``secret``, signed (see :mod:`technic_v4.notify.send`)."""

    kind: Literal["webhook"]
    url: str = Field(max_length=2048, repr=False)  # userinfo and query may hold credentials
    secret: SecretStr | None = Field(default=None, min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)

    def urls(self) -> list[str]:
        return [self.url]

    def secrets(self) -> list[str]:
        parts = urlsplit(self.url)
        found = [self.secret.get_secret_value()] if self.secret else []
        # userinfo and a query string may carry credentials; shown redacted, scrubbed from errors
        return found + [s for s in (parts.username, parts.password, parts.query) if s]


class SlackTarget(_Target):
    """A Slack (or Slack-compatible: Mattermost, Rocket.Chat) incoming-webhook URL."""

    kind: Literal["slack"]
    url: str = Field(max_length=2048, repr=False)  # the URL is the credential

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)

    def urls(self) -> list[str]:
        return [self.url]

    def secrets(self) -> list[str]:
        parts = urlsplit(self.url)
        return [s for s in (parts.path.strip("/"), parts.query, parts.username, parts.password)
                if s]


class DiscordTarget(SlackTarget):
    """A Discord incoming-webhook URL (``https://discord.com/api/webhooks/<id>/<token>``)."""

    kind: Literal["discord"]  # type: ignore[assignment]


class EmailTarget(_Target):
    """SMTP: ``security`` starttls (default port 587), ssl (465) or none (25)."""

    kind: Literal["email"]
    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: EmailStr
    to: list[EmailStr] = Field(min_length=1, max_length=100)

    @field_validator("to", mode="before")
    @classmethod
    def _to_list(cls, v: Any) -> Any:
        return [a.strip() for a in v.split(",") if a.strip()] if isinstance(v, str) else v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if any(c.isspace() or c in "/@" for c in v):
            raise ValueError("a host name or IP address, without scheme, path or user")
        return v

    @model_validator(mode="after")
    def _login(self) -> EmailTarget:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is not: set both to log in")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or _DEFAULT_PORT[self.security]

    def secrets(self) -> list[str]:
        return [self.password.get_secret_value()] if self.password else []


class TelegramTarget(_Target):
    """Telegram Bot API ``sendMessage`` to ``chat_id`` (a number or ``@channelname``)."""

    kind: Literal["telegram"]
    # A bot token is "<bot id>:<secret>"; the pattern keeps it a single URL path segment.
    token: SecretStr = Field(min_length=3, max_length=200)
    chat_id: str = Field(min_length=1, max_length=100)
    base_url: str = Field(default="https://api.telegram.org", max_length=2048)

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if env_reference(v) is not None:
            return v  # read from the environment when sending
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", v.get_secret_value()):
            raise ValueError("not a bot token: expected <digits>:<letters, digits, _ or ->, "
                             "as @BotFather gives it")
        return v

    @field_validator("chat_id", mode="before")
    @classmethod
    def _chat_id(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("chat_id")
    @classmethod
    def _chat_id_shape(cls, v: str) -> str:
        if not re.fullmatch(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}", v):
            raise ValueError("a numeric chat id (e.g. -1001234567890) or @channelname")
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        return _http_url(v).rstrip("/")

    @property
    def send_url(self) -> str:
        return f"{self.base_url}/bot{self.token.get_secret_value()}/sendMessage"

    def urls(self) -> list[str]:
        return [self.base_url]

    def secrets(self) -> list[str]:
        return [self.token.get_secret_value()]


Target = Annotated[
    WebhookTarget | SlackTarget | DiscordTarget | EmailTarget | TelegramTarget,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[Target] = TypeAdapter(Target)
_MODELS: dict[str, type[_Target]] = {
    "webhook": WebhookTarget, "slack": SlackTarget, "discord": DiscordTarget,
    "email": EmailTarget, "telegram": TelegramTarget}

_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "list_type": "must be a list",
    "too_short": "must not be empty",
    "string_pattern_mismatch": "must be one line of text (no control characters)",
}


# A secret field may name a setting instead of holding the secret: ``env:TECHNIC_SMTP_PASSWORD``
# keeps the secret out of the state store (read from the environment at each send).
_ENV_REFERENCE = re.compile(r"env:(TECHNIC_[A-Z0-9_]{1,100})")


def env_reference(value: SecretStr | None) -> str | None:
    """The environment variable a secret field names (``env:TECHNIC_…``), else None."""
    if value is None:
        return None
    m = _ENV_REFERENCE.fullmatch(value.get_secret_value())
    return m.group(1) if m else None


def resolve_secrets(target: Target) -> Target:
    """``target`` with each ``env:TECHNIC_…`` secret replaced by that variable's value; a
    variable that is not set → ConfigError naming the field and the variable (never a value)."""
    import os

    update: dict[str, SecretStr] = {}
    for name in type(target).model_fields:
        value = getattr(target, name)
        var = env_reference(value) if isinstance(value, SecretStr) else None
        if var is None:
            continue
        got = os.environ.get(var)
        if not got:
            raise ConfigError(name, f"{var} is not set in the environment of this process")
        update[name] = SecretStr(got)
    return target.model_copy(update=update) if update else target


def parse_target(d: Any, *, allow_private: bool | None = None) -> Target:
    """Validate a plain dict into a target, or raise :class:`ConfigError` naming the field.

    ``allow_private`` (default: the ``TECHNIC_ALERTS_ALLOW_PRIVATE`` setting) refuses literal
    private/loopback IPs and ``localhost`` here; pass ``True`` to re-read a stored target without
    that check (:func:`~technic_v4.notify.send.deliver` checks again, with DNS, before sending).
    """
    if not isinstance(d, dict):
        raise ConfigError("target", "must be an object with name, kind and the kind's fields")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ConfigError("kind", f"must be one of {', '.join(KINDS)}")
    try:
        target = _ADAPTER.validate_python(d)
    except PydanticValidationError as e:
        raise _config_error(e, kind) from None
    if allow_private is None:
        from technic_v4.config.settings import get_settings

        allow_private = get_settings().alerts_allow_private
    if not allow_private:
        field = "base_url" if isinstance(target, TelegramTarget) else "url"
        for url in target.urls():
            if literal_blocked(urlsplit(url).hostname or ""):
                raise ConfigError(field, private_refusal())
    return target


def _config_error(e: PydanticValidationError, kind: str) -> ConfigError:
    """pydantic's first error as one line naming the field; never its input nor its doc URL."""
    err = e.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in err["loc"]]
    if loc and loc[0] == kind:  # the discriminated union's tag
        loc = loc[1:]
    field = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "target"
    typ = err["type"]
    msg = _MESSAGES.get(typ) or str(err["msg"]).removeprefix("Value error, ")
    if typ == "extra_forbidden":
        msg += f"; {kind} targets take {', '.join(_MODELS[kind].model_fields)}"
    if typ == "literal_error" and field == "security":
        msg = f"must be one of {', '.join(SECURITY)}"
    if field == "target" and "password" in msg:
        field = "username"
    return ConfigError(field, " ".join(msg.split()))


def _redacted_url(url: str, *, keep_path: bool) -> str:
    """``scheme://host[:port]/path`` without user info or query (``/***`` for a secret path)."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{p.port}" if p.port else host
    path = p.path if keep_path else ("/***" if p.path.strip("/") else "")
    query = "?***" if p.query else ""
    return f"{p.scheme}://{netloc}{path}{query}"


def public_view(target: Target) -> dict[str, Any]:
    """The target as the API and the CLI show it: each secret as ``"set"`` (omitted when unset),
    Slack/Discord URLs (credentials themselves) and a webhook's query string redacted."""
    d = target.model_dump(mode="python", exclude_none=True)
    for key, value in list(d.items()):
        if isinstance(value, SecretStr):
            var = env_reference(value)
            d[key] = f"env:{var}" if var else "set"  # a variable's name is not a secret
    if isinstance(target, SlackTarget):  # also DiscordTarget
        d["url"] = _redacted_url(target.url, keep_path=False)
    elif isinstance(target, WebhookTarget):
        d["url"] = _redacted_url(target.url, keep_path=True)
    elif isinstance(target, EmailTarget):
        d["port"] = target.smtp_port
    return d


def to_dict(target: Target) -> dict[str, Any]:
    """The target as a plain dict *with* its secrets, for the store (``parse_target`` reads it
    back). Never show it: :func:`public_view` is for showing."""
    d = target.model_dump(mode="python", exclude_none=True)
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in d.items()}


def describe(target: Target) -> str:
    """One short line naming where a target sends (no secret): for lists and logs."""
    if isinstance(target, EmailTarget):
        return f"email via {target.host}:{target.smtp_port} to {len(target.to)} address(es)"
    if isinstance(target, TelegramTarget):
        return f"telegram chat {target.chat_id}"
    return f"{target.kind} {public_view(target)['url']}"
