"""The HTTP senders against a real receiver on loopback: payloads, signature, retries, the
address guard, secrets kept out of errors and logs, and targets that never wait for each other."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import socket
import threading

import pytest
from notify_support import Answer, Receiver

from technic_v4.notify import Delivery, Message, sample_message
from technic_v4.notify.send import deliver, deliver_all, parse_retry_after
from technic_v4.notify.targets import Target, parse_target, public_view

TOKEN = "4242424242:AAE-t0ps3cret_bot-token"
SECRET = "whsec-s1gn1ng-key"
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 10.0}

pytestmark = pytest.mark.usefixtures("allow_private")


def _webhook(receiver: Receiver, path: str = "/hook", name: str = "hook", **extra: str) -> Target:
    return parse_target({"name": name, "kind": "webhook", "url": receiver.url(path), **extra})


def test_webhook_body_and_signature_verify_independently(receiver: Receiver) -> None:
    m = sample_message(link="https://technic.example/screens/sample")
    d = deliver(_webhook(receiver, secret=SECRET), m, **FAST)
    assert d == Delivery(target="hook", ok=True, attempts=1, status=200)
    (req,) = receiver.at("/hook")
    ts = req.headers["x-technic-timestamp"]
    expected = hmac.new(SECRET.encode(), ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-technic-signature"], f"sha256={expected}")
    assert req.headers["content-type"].startswith("application/json")
    assert req.headers["x-technic-key"] == f"sample/{m.session.isoformat()}/test"
    body = req.json()
    assert (body["screen"], body["test"], body["link"]) == \
        ("sample", True, "https://technic.example/screens/sample")
    assert [r["Symbol"] for r in body["entered"]] == ["AAPL", "MSFT"]
    assert {"Symbol", "Signal", "TechRating", "Entry", "Stop", "Target", "PositionSize"} <= \
        body["entered"][0].keys()
    # a tampered body does not verify
    forged = hmac.new(SECRET.encode(), ts.encode() + b"." + req.body + b" ", hashlib.sha256)
    assert req.headers["x-technic-signature"] != f"sha256={forged.hexdigest()}"


def test_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    assert deliver(_webhook(receiver), sample_message(), **FAST).ok
    (req,) = receiver.at("/hook")
    assert "x-technic-signature" not in req.headers and "x-technic-timestamp" not in req.headers


def test_slack_and_discord_payload_shapes(receiver: Receiver) -> None:
    receiver.script("/api/webhooks/1/dtok", Answer(204, b""))  # Discord answers 204
    slack = parse_target({"name": "s", "kind": "slack", "url": receiver.url("/services/T/B/x")})
    discord = parse_target({"name": "d", "kind": "discord",
                            "url": receiver.url("/api/webhooks/1/dtok")})
    assert deliver(slack, sample_message(), **FAST).ok
    d = deliver(discord, sample_message(), **FAST)
    assert d.ok and d.status == 204
    s_body = receiver.at("/services/T/B/x")[0].json()
    assert s_body["text"].startswith("[test] technic: sample")
    assert [b["type"] for b in s_body["blocks"]] == ["header"] + ["section"] * 4
    d_body = receiver.at("/api/webhooks/1/dtok")[0].json()
    assert d_body["allowed_mentions"] == {"parse": []}
    assert [f["name"] for f in d_body["embeds"][0]["fields"]] == [
        "Entered (2)", "Left (1)", "Signal changed (1)", "Stop/target touched (1)"]


def _telegram(receiver: Receiver) -> Target:
    return parse_target({"name": "tg", "kind": "telegram", "token": TOKEN, "chat_id": -1001,
                         "base_url": receiver.url("/")})


def test_telegram_send_message(receiver: Receiver) -> None:
    path = f"/bot{TOKEN}/sendMessage"
    receiver.script(path, Answer(200, {"ok": True, "result": {"message_id": 1}}))
    d = deliver(_telegram(receiver), sample_message(), **FAST)
    assert d.ok and d.attempts == 1
    body = receiver.at(path)[0].json()
    assert body["chat_id"] == "-1001" and body["parse_mode"] == "HTML"
    assert body["text"].startswith("<b>[test] technic: sample")


def test_telegram_refusal_never_shows_the_token(receiver: Receiver,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = f"/bot{TOKEN}/sendMessage"
    # a receiver that quotes the request path (with the token) in its error
    receiver.script(path, Answer(400, {"ok": False, "error_code": 400,
                                       "description": f"Bad Request: chat not found at {path}"}))
    caplog.set_level(logging.DEBUG)
    d = deliver(_telegram(receiver), sample_message(), **FAST)
    assert not d.ok and d.attempts == 1 and d.status == 400
    assert d.error is not None and "chat not found" in d.error and "/bot***/" in d.error
    secret_part = TOKEN.split(":")[1]
    assert secret_part not in d.error
    assert all(secret_part not in r.getMessage() for r in caplog.records)
    assert any("bot***" in r.getMessage() for r in caplog.records if r.name == "httpx")


def test_telegram_200_without_ok_is_a_failure(receiver: Receiver) -> None:
    receiver.script(f"/bot{TOKEN}/sendMessage", Answer(200, b"<html>proxy page</html>"))
    d = deliver(_telegram(receiver), sample_message(), **FAST)
    assert not d.ok and d.attempts == 1 and "Telegram did not accept" in (d.error or "")


def test_500_twice_then_200_succeeds_on_the_third_attempt(receiver: Receiver) -> None:
    receiver.script("/hook", Answer(500, b"down"), Answer(502, b"down"), Answer(200))
    d = deliver(_webhook(receiver), sample_message(), attempts=4, **FAST)
    assert d == Delivery(target="hook", ok=True, attempts=3, status=200)
    assert len(receiver.at("/hook")) == 3


def test_500_forever_gives_up_after_attempts_with_one_line(receiver: Receiver) -> None:
    receiver.script("/hook", Answer(500, b"internal\nerror\ttrace"))
    d = deliver(_webhook(receiver), sample_message(), attempts=4, **FAST)
    assert not d.ok and d.attempts == 4 and d.status == 500
    assert len(receiver.at("/hook")) == 4
    assert d.error == ("HTTP 500 Internal Server Error: internal error trace; "
                       "gave up after 4 attempts")


def test_400_is_not_retried(receiver: Receiver) -> None:
    receiver.script("/hook", Answer(400, {"error": "invalid_payload"}))
    d = deliver(_webhook(receiver), sample_message(), attempts=4, **FAST)
    assert (d.ok, d.attempts, d.status) == (False, 1, 400)
    assert d.error == "HTTP 400 Bad Request: invalid_payload (not retried)"
    assert len(receiver.at("/hook")) == 1


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.script("/hook", Answer(302, b"", {"Location": "http://169.254.169.254/"}))
    d = deliver(_webhook(receiver), sample_message(), **FAST)
    assert (d.ok, d.attempts, d.status) == (False, 1, 302)
    assert "redirects are not followed" in (d.error or "")


def test_429_waits_for_retry_after_capped(receiver: Receiver,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="technic_v4.notify.send")
    receiver.script("/hook", Answer(429, b"slow down", {"Retry-After": "1"}), Answer(200))
    d = deliver(_webhook(receiver), sample_message(), **FAST)
    assert d.ok and d.attempts == 2
    assert "retrying in 1.00 s" in caplog.text  # the receiver's wait, not our 1 ms backoff
    caplog.clear()
    receiver.script("/other", Answer(429, {"retry_after": 3600}), Answer(200))  # Discord's body
    d = deliver(_webhook(receiver, "/other"), sample_message(), retry_after_cap_s=0.05, **FAST)
    assert d.ok and d.attempts == 2
    assert "retrying in 0.05 s" in caplog.text  # an hour asked, the cap granted


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 11, 27, 21, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Fri, 27 Nov 2026 21:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 20:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_connection_refused_is_retried_then_reported(receiver: Receiver) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = parse_target({"name": "gone", "kind": "webhook", "url": f"http://127.0.0.1:{port}/h"})
    d = deliver(t, sample_message(), attempts=3, **FAST)
    assert not d.ok and d.attempts == 3 and d.status is None
    assert (d.error or "").startswith("connection failed: ConnectError")
    assert "\n" not in (d.error or "")


def test_secrets_never_in_errors_or_logs(receiver: Receiver,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Receivers that echo what they got (URL path, headers) in a failing answer."""
    caplog.set_level(logging.DEBUG)
    slack_path = "/services/T01/B02/sl4ckS3cret"
    receiver.script(slack_path, Answer(500, f"no_service for {slack_path}"))
    receiver.script("/hook?token=qu3rySecret", Answer(403, "bad token=qu3rySecret"))
    slack = parse_target({"name": "s", "kind": "slack", "url": receiver.url(slack_path)})
    hook = parse_target({"name": "h", "kind": "webhook", "secret": SECRET,
                         "url": receiver.url("/hook?token=qu3rySecret")})
    results = deliver_all([slack, hook], sample_message(), attempts=2, **FAST)
    assert [d.ok for d in results] == [False, False]
    texts = [d.error or "" for d in results] + [r.getMessage() for r in caplog.records]
    for secret in ("sl4ckS3cret", "qu3rySecret", SECRET):
        assert all(secret not in t for t in texts), secret
    assert "no_service for /***" in (results[0].error or "")


def test_private_address_refused_without_the_setting(receiver: Receiver,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from technic_v4.config import settings as settings_mod

    t = _webhook(receiver)  # parsed while allowed (as a stored target is re-read)
    monkeypatch.delenv("TECHNIC_ALERTS_ALLOW_PRIVATE")
    settings_mod.reset_settings()
    d = deliver(t, sample_message(), **FAST)
    assert not d.ok and d.attempts == 1
    assert "TECHNIC_ALERTS_ALLOW_PRIVATE=true" in (d.error or "")
    assert receiver.at("/hook") == []  # nothing was sent
    # a name (not a literal IP) that resolves to a private or loopback address: found by DNS
    host = socket.gethostname()
    addrs = {i[4][0] for i in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    from ipaddress import ip_address

    from technic_v4.notify.targets import blocked_ip
    if not all(blocked_ip(ip_address(a.split("%")[0])) for a in addrs):
        pytest.skip(f"{host} resolves to a public address here")
    named = parse_target({"name": "n", "kind": "webhook",
                          "url": f"http://{host}:{receiver.port}/hook"})
    d = deliver(named, sample_message(), **FAST)
    assert not d.ok and "resolves to" in (d.error or "")
    assert receiver.at("/hook") == []
    # the setting (or the argument) lets both through
    assert deliver(t, sample_message(), allow_private=True, **FAST).ok


def test_a_hanging_target_never_delays_the_others(receiver: Receiver) -> None:
    release = threading.Event()
    receiver.script("/slow", Answer(200, hold=release))
    receiver.script("/fail", Answer(404, b"gone"))
    slow, fast, fail = (_webhook(receiver, f"/{n}", n) for n in ("slow", "fast", "fail"))
    seen: list[str] = []
    released_after: list[str] = []

    def on_delivery(target: Target, d: Delivery) -> None:
        seen.append(d.target)
        if {"fast", "fail"} <= set(seen) and not release.is_set():
            released_after.extend(seen)
            release.set()  # the slow receiver answers only once the others are reported

    results = deliver_all([slow, fast, fail], sample_message(), on_delivery=on_delivery,
                          attempts=1, **FAST)
    assert [d.target for d in results] == ["slow", "fast", "fail"]  # the targets' order
    assert [d.ok for d in results] == [True, True, False]
    assert sorted(released_after) == ["fail", "fast"] and seen[-1] == "slow"


def test_a_target_that_times_out_reports_after_the_fast_one(receiver: Receiver) -> None:
    receiver.script("/hang", Answer(200, hold=threading.Event()))  # never answers
    hang, fast = _webhook(receiver, "/hang", "hang"), _webhook(receiver, "/fast", "fast")
    order: list[str] = []
    results = deliver_all([hang, fast], sample_message(), attempts=1, timeout_s=2,
                          backoff_s=0.001, on_delivery=lambda t, d: order.append(d.target))
    assert order == ["fast", "hang"]
    assert results == [Delivery(target="hang", ok=False, attempts=1, error="timed out after 2 s"),
                       Delivery(target="fast", ok=True, attempts=1, status=200)]


def test_deliver_all_with_no_targets() -> None:
    assert deliver_all([], Message(screen="s", session=dt.date(2026, 11, 27))) == []


def test_webhook_body_is_valid_json_for_nan(receiver: Receiver) -> None:
    m = Message(screen="s", session=dt.date(2026, 11, 27),
                entered=[{"Symbol": "A", "TechRating": float("nan"), "Stop": float("inf")}])
    assert deliver(_webhook(receiver), m, **FAST).ok
    row = json.loads(receiver.at("/hook")[0].body)["entered"][0]
    assert row == {"Symbol": "A", "TechRating": None, "Stop": None}


def test_a_flood_answer_gives_a_short_error(receiver: Receiver) -> None:
    receiver.script("/hook", Answer(400, b"x" * 2_000_000))
    d = deliver(_webhook(receiver), sample_message(), **FAST)
    assert (d.ok, d.attempts, d.status) == (False, 1, 400)
    assert d.error is not None and len(d.error) <= 320 and "\n" not in d.error


def test_a_gzip_answer_is_read_once(receiver: Receiver) -> None:
    """httpx asks for gzip; a receiver that compresses its answer (Telegram, a proxy) must not
    make deliver raise (the answer was decoded twice) nor lose its text."""
    import gzip

    path = f"/bot{TOKEN}/sendMessage"
    receiver.script(path, Answer(200, gzip.compress(b'{"ok": true, "result": {}}'),
                                 {"Content-Encoding": "gzip"}))
    d = deliver(_telegram(receiver), sample_message(), **FAST)
    assert (d.ok, d.attempts, d.status) == (True, 1, 200)
    receiver.script("/hook", Answer(400, gzip.compress(b'{"error": "invalid_payload"}'),
                                    {"Content-Encoding": "gzip"}))
    d = deliver(_webhook(receiver), sample_message(), **FAST)
    assert d.error == "HTTP 400 Bad Request: invalid_payload (not retried)"


def test_an_undecodable_answer_keeps_its_status(receiver: Receiver) -> None:
    receiver.script("/hook", Answer(503, b"not gzip at all", {"Content-Encoding": "gzip"}))
    d = deliver(_webhook(receiver), sample_message(), attempts=2, **FAST)
    assert (d.ok, d.attempts, d.status) == (False, 2, 503)
    assert (d.error or "").startswith("HTTP 503 Service Unavailable")


def test_a_failing_on_delivery_still_reports_the_other_targets(receiver: Receiver) -> None:
    """The caller records each delivery in on_delivery; one record that fails must not cost the
    others theirs (the error is raised once every target is reported)."""
    targets = [_webhook(receiver, f"/{n}", n) for n in ("a", "b", "c")]
    seen: list[str] = []

    def on_delivery(target: Target, d: Delivery) -> None:
        seen.append(d.target)
        if len(seen) == 1:
            raise RuntimeError("store is busy")

    with pytest.raises(RuntimeError, match="store is busy"):
        deliver_all(targets, sample_message(), on_delivery=on_delivery, attempts=1, **FAST)
    assert sorted(seen) == ["a", "b", "c"]


def test_the_checked_address_is_the_one_connected_to(receiver: Receiver,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that resolves to a public address for the guard's look-up and to
    loopback for the connection's. The request must go to the address that was checked."""
    from technic_v4.config import settings as settings_mod

    monkeypatch.delenv("TECHNIC_ALERTS_ALLOW_PRIVATE")
    settings_mod.reset_settings()
    real = socket.getaddrinfo
    answers = iter(["8.8.8.8", "127.0.0.1"])  # a global address for the guard, then loopback

    def rebinding(host: str, port: object, *args: object, **kw: object) -> list:  # type: ignore[type-arg]
        if host != "rebind.example":
            return real(host, port, *args, **kw)  # type: ignore[arg-type]
        ip = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    t = parse_target({"name": "r", "kind": "webhook",
                      "url": f"http://rebind.example:{receiver.port}/hook"})
    d = deliver(t, sample_message(), attempts=1, timeout_s=1.0, backoff_s=0.001)
    assert receiver.at("/hook") == []  # loopback was never reached
    assert not d.ok


def test_a_userinfo_token_is_kept_out_of_errors_and_logs(receiver: Receiver,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """``https://<api key>@host/...``: the user name alone is the credential (httpx logs it)."""
    caplog.set_level(logging.DEBUG)
    receiver.script("/hook", Answer(500, "no key us3rT0ken here"))
    t = parse_target({"name": "u", "kind": "webhook",
                      "url": receiver.url("/hook").replace("://", "://us3rT0ken@")})
    d = deliver(t, sample_message(), attempts=1, **FAST)
    assert not d.ok and "us3rT0ken" not in (d.error or "")
    assert all("us3rT0ken" not in r.getMessage() for r in caplog.records)


def test_a_secret_can_name_an_environment_variable(receiver: Receiver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``env:TECHNIC_…`` keeps the secret out of the state store: read at each send, never
    shown (the variable's name is), and a missing variable is a failed delivery naming it."""
    target = _webhook(receiver, secret="env:TECHNIC_TEST_HOOK_SECRET")
    assert public_view(target)["secret"] == "env:TECHNIC_TEST_HOOK_SECRET"
    missing = deliver(target, sample_message(), **FAST)
    assert not missing.ok and missing.attempts == 0 and receiver.at("/hook") == []
    assert missing.error == ("secret: TECHNIC_TEST_HOOK_SECRET is not set in the environment "
                             "of this process")
    monkeypatch.setenv("TECHNIC_TEST_HOOK_SECRET", "from-the-environment")
    d = deliver(target, sample_message(), **FAST)
    assert d.ok
    (req,) = receiver.at("/hook")
    ts = req.headers["x-technic-timestamp"]
    want = hmac.new(b"from-the-environment", ts.encode() + b"." + req.body, hashlib.sha256)
    assert req.headers["x-technic-signature"] == f"sha256={want.hexdigest()}"
    # A Telegram token may name a variable too (its shape is checked when it is read).
    tg = parse_target({"name": "tg", "kind": "telegram", "token": "env:TECHNIC_TEST_TG",
                       "chat_id": 1, "base_url": receiver.url("/")})
    assert public_view(tg)["token"] == "env:TECHNIC_TEST_TG"
