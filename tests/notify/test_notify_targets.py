"""Alert targets: validation errors name the field and the valid values; secrets never shown."""

from __future__ import annotations

from typing import Any

import pytest

from technic_v4.errors import ConfigError
from technic_v4.notify.targets import (
    DiscordTarget,
    EmailTarget,
    SlackTarget,
    TelegramTarget,
    WebhookTarget,
    parse_target,
    public_view,
    to_dict,
)

EMAIL = {"name": "mail", "kind": "email", "host": "smtp.example.com", "sender": "bot@example.com",
         "to": ["me@example.com"]}
TOKEN = "123456789:AAH-very_secret-token"


def _error(d: Any, **kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_target(d, **kw)
    msg = str(info.value)
    assert "\n" not in msg and "pydantic" not in msg and "errors.pydantic.dev" not in msg
    return info.value


@pytest.mark.parametrize("kind", [None, "sms", "Webhook", 3])
def test_unknown_kind_lists_the_kinds(kind: Any) -> None:
    e = _error({"name": "x", "kind": kind, "url": "https://example.com/h"})
    assert e.field == "kind"
    assert str(e) == "kind: must be one of webhook, slack, discord, email, telegram"


@pytest.mark.parametrize("url", ["ftp://x", "file:///etc/passwd", "javascript:alert(1)",
                                 "example.com/hook", "https://", "http://h:port/x",
                                 # httpx refuses these when sending: deliver raised InvalidURL
                                 "http://exa\x00mple.com/h", "https://example.com/h\x7f"])
def test_webhook_url_must_be_http_or_https(url: str) -> None:
    e = _error({"name": "w", "kind": "webhook", "url": url})
    assert e.field == "url"
    assert url not in str(e) or url == "https://"


def test_ftp_url_names_the_valid_schemes() -> None:
    assert str(_error({"name": "w", "kind": "webhook", "url": "ftp://x"})) == \
        "url: scheme must be one of http, https"


@pytest.mark.parametrize(("d", "field"), [
    ({"kind": "webhook", "url": "https://example.com/h"}, "name"),
    ({"name": "w", "kind": "webhook"}, "url"),
    ({"name": "s", "kind": "slack"}, "url"),
    ({"name": "t", "kind": "telegram", "chat_id": 1}, "token"),
    ({"name": "t", "kind": "telegram", "token": TOKEN}, "chat_id"),
    ({k: v for k, v in EMAIL.items() if k != "host"}, "host"),
    ({k: v for k, v in EMAIL.items() if k != "to"}, "to"),
    ({k: v for k, v in EMAIL.items() if k != "sender"}, "sender"),
])
def test_missing_field_is_named(d: dict[str, Any], field: str) -> None:
    e = _error(d)
    assert e.field == field and str(e) == f"{field}: required"


@pytest.mark.parametrize(("change", "field"), [
    ({"to": ["me@example.com", "not-an-address"]}, "to[1]"),
    ({"to": []}, "to"),
    ({"sender": "bot at example.com"}, "sender"),
])
def test_invalid_email_address_names_the_field(change: dict[str, Any], field: str) -> None:
    e = _error({**EMAIL, **change})
    assert e.field == field
    assert "email address" in str(e) or "empty" in str(e)


def test_email_security_names_valid_values_and_ports_default() -> None:
    e = _error({**EMAIL, "security": "tls"})
    assert str(e) == "security: must be one of starttls, ssl, none"
    ports = {s: parse_target({**EMAIL, "security": s}) for s in ("starttls", "ssl", "none")}
    assert {s: t.smtp_port for s, t in ports.items() if isinstance(t, EmailTarget)} == \
        {"starttls": 587, "ssl": 465, "none": 25}
    assert _error({**EMAIL, "port": 70000}).field == "port"
    assert _error({**EMAIL, "password": "pw"}).field == "username"
    # a comma-separated string is a list of addresses
    t = parse_target({**EMAIL, "to": "a@example.com, b@example.org"})
    assert isinstance(t, EmailTarget) and t.to == ["a@example.com", "b@example.org"]


def test_unknown_field_lists_the_kinds_fields() -> None:
    e = _error({"name": "w", "kind": "webhook", "url": "https://example.com/h", "secrett": "x"})
    assert str(e) == "secrett: unknown field; webhook targets take name, kind, url, secret"


def test_bad_telegram_token_and_chat_never_echo_the_value() -> None:
    bad = "not a token but a secret s3cr3t"
    e = _error({"name": "t", "kind": "telegram", "token": bad, "chat_id": 5})
    assert e.field == "token" and "s3cr3t" not in str(e)
    assert _error({"name": "t", "kind": "telegram", "token": TOKEN, "chat_id": "x y"}).field == \
        "chat_id"
    t = parse_target({"name": "t", "kind": "telegram", "token": TOKEN, "chat_id": -100123})
    assert isinstance(t, TelegramTarget) and t.chat_id == "-100123"


def test_kinds_parse_to_their_models() -> None:
    w = parse_target({"name": "w", "kind": "webhook", "url": "https://example.com/h"})
    s = parse_target({"name": "s", "kind": "slack", "url": "https://hooks.slack.com/services/A/B/C"})
    d = parse_target({"name": "d", "kind": "discord", "url": "https://discord.com/api/webhooks/1/x"})
    assert (type(w), type(s), type(d)) == (WebhookTarget, SlackTarget, DiscordTarget)


def test_not_a_dict_and_bad_names() -> None:
    assert _error(["webhook"]).field == "target"
    e = _error({"name": "two\nlines", "kind": "webhook", "url": "https://example.com/h"})
    assert str(e) == "name: must be one line of text (no control characters)"
    assert _error({"name": "", "kind": "webhook", "url": "https://example.com/h"}).field == "name"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/h", "http://10.1.2.3/h",
                                 "http://[::1]/h", "http://169.254.169.254/latest/meta-data",
                                 "http://localhost/h", "http://224.0.0.1/h", "http://0.0.0.0/h",
                                 "http://[::ffff:192.168.1.1]/h",
                                 # shared address space (RFC 6598): Alibaba Cloud's metadata
                                 # service, Tailscale and carrier-grade NAT peers live there
                                 "http://100.100.100.200/latest/meta-data",
                                 "http://[::ffff:100.64.0.1]/h"])
def test_literal_private_addresses_refused_at_parse_unless_allowed(url: str) -> None:
    e = _error({"name": "w", "kind": "webhook", "url": url}, allow_private=False)
    assert e.field == "url" and "TECHNIC_ALERTS_ALLOW_PRIVATE=true" in str(e)
    assert parse_target({"name": "w", "kind": "webhook", "url": url}, allow_private=True)


def test_parse_reads_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from technic_v4.config import settings as settings_mod

    d = {"name": "t", "kind": "telegram", "token": TOKEN, "chat_id": 1,
         "base_url": "http://127.0.0.1:9/"}
    assert _error(d).field == "base_url"
    monkeypatch.setenv("TECHNIC_ALERTS_ALLOW_PRIVATE", "true")
    settings_mod.reset_settings()
    t = parse_target(d)
    assert isinstance(t, TelegramTarget) and t.base_url == "http://127.0.0.1:9"


def test_public_view_shows_set_for_secrets_and_hides_credential_urls() -> None:
    views = [
        public_view(parse_target({"name": "w", "kind": "webhook", "secret": "whsec-XYZ",
                                  "url": "https://user:pa55@example.com/h?token=qq77"})),
        public_view(parse_target({"name": "s", "kind": "slack",
                                  "url": "https://hooks.slack.com/services/T0/B0/sl4ck"})),
        public_view(parse_target({"name": "d", "kind": "discord",
                                  "url": "https://discord.com/api/webhooks/1/d1sc0rd"})),
        public_view(parse_target({**EMAIL, "username": "bot", "password": "pw-42x"})),
        public_view(parse_target({"name": "t", "kind": "telegram", "token": TOKEN,
                                  "chat_id": 7})),
    ]
    text = repr(views)
    for secret in ("whsec-XYZ", "pa55", "qq77", "sl4ck", "d1sc0rd", "pw-42x", TOKEN,
                   TOKEN.split(":")[1]):
        assert secret not in text
    assert views[0]["secret"] == "set" and views[0]["url"] == "https://example.com/h?***"
    assert views[1]["url"] == "https://hooks.slack.com/***"
    assert views[3]["password"] == "set" and views[3]["port"] == 587
    assert views[4]["token"] == "set" and views[4]["chat_id"] == "7"
    # unset secrets are omitted
    assert "secret" not in public_view(parse_target({"name": "w", "kind": "webhook",
                                                     "url": "https://example.com/h"}))
    assert "password" not in public_view(parse_target(EMAIL))


@pytest.mark.parametrize(("d", "key"), [
    ({"name": "w", "kind": "webhook", "url": "https://example.com/h", "secret": "s3"}, "secret"),
    ({**EMAIL, "username": "bot", "password": "pw", "security": "ssl", "port": 2465},
     "password"),
    ({"name": "t", "kind": "telegram", "token": TOKEN, "chat_id": "@technic_alerts"}, "token"),
])
def test_to_dict_round_trips_with_secrets(d: dict[str, Any], key: str) -> None:
    """What the store keeps parses back to the same target, secret included."""
    t = parse_target(d)
    assert to_dict(t)[key] == d[key]
    assert parse_target(to_dict(t)) == t


def test_repr_and_str_never_show_credential_urls() -> None:
    """A target that reaches a log line or a traceback as ``%r`` or an f-string: the Slack and
    Discord URLs are credentials, a webhook's userinfo and query string may be."""
    targets = [
        parse_target({"name": "s", "kind": "slack",
                      "url": "https://hooks.slack.com/services/T0/B0/sl4ck"}),
        parse_target({"name": "d", "kind": "discord",
                      "url": "https://discord.com/api/webhooks/1/d1sc0rd"}),
        parse_target({"name": "w", "kind": "webhook", "secret": "whsec-XYZ",
                      "url": "https://user:pa55@example.com/h?token=qq77"}),
        parse_target({**EMAIL, "username": "bot", "password": "pw-42x"}),
        parse_target({"name": "t", "kind": "telegram", "token": TOKEN, "chat_id": 7}),
    ]
    text = " ".join(f"{t!r} {t}" for t in targets)
    for secret in ("sl4ck", "d1sc0rd", "whsec-XYZ", "pa55", "qq77", "pw-42x",
                   TOKEN.split(":")[1]):
        assert secret not in text, secret
    assert "name='s'" in text and "kind='slack'" in text
