"""The email sender against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS and implicit
TLS with a self-signed certificate made here by openssl, login, and failures that are not
retried."""

from __future__ import annotations

import email
import email.policy
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from technic_v4.notify import Message, sample_message
from technic_v4.notify.send import deliver
from technic_v4.notify.targets import Target, parse_target
from technic_v4.testing import free_port

USER, PASSWORD = "alerts", "smtp-pa55word-XyZ"
FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 10.0}


@dataclass
class Inbox:
    """aiosmtpd handler: keeps each accepted message with whether TLS and login were used."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address → SMTP reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "tls": session.ssl is not None, "authenticated": session.authenticated,
                              "login": getattr(session.auth_data, "login", None),
                              "content": envelope.content})
        return "250 OK"

    def parsed(self, i: int = 0) -> EmailMessage:
        msg = email.message_from_bytes(self.messages[i]["content"], policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and \
        (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the TLS tests need a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(crt), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return crt, key


def _server_context(cert: tuple[Path, Path]) -> Any:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    """Start an aiosmtpd Controller with the given options; stopped after the test."""
    started: list[Controller] = []

    def start(**options: Any) -> tuple[Inbox, int]:
        inbox = Inbox()
        port = free_port()
        c = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        c.start()
        started.append(c)
        return inbox, port

    yield start
    for c in started:
        c.stop()


def _target(port: int, security: str, **extra: Any) -> Target:
    return parse_target({"name": "mail", "kind": "email", "host": "127.0.0.1", "port": port,
                         "security": security, "sender": "technic@example.com",
                         "to": ["me@example.com", "you@example.org"], **extra})


def _check_message(inbox: Inbox, m: Message) -> None:
    (got,) = inbox.messages
    assert got["from"] == "technic@example.com"
    assert got["to"] == ["me@example.com", "you@example.org"]
    msg = inbox.parsed()
    assert msg["Subject"] == f"[test] technic: sample · {m.session.isoformat()} — 2 entered, " \
        "1 left, 1 changed, 1 touched"
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    text, page = plain.get_content(), rich.get_content()
    assert "Entered (2)" in text and "AAPL" in text and "187.25" in text
    assert "<table" in page and "<th>Symbol</th>" in page and ">MSFT</td>" in page
    assert "<th>Watchlist</th>" in page and ">TSLA</td>" in page


def test_plain_smtp_delivers_both_parts(smtp_server: Any) -> None:
    inbox, port = smtp_server()
    m = sample_message()
    d = deliver(_target(port, "none"), m, **FAST)
    assert (d.ok, d.attempts, d.status, d.error) == (True, 1, 250, None)
    _check_message(inbox, m)
    assert inbox.messages[0]["tls"] is False


def test_starttls_with_login(smtp_server: Any, cert: tuple[Path, Path],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))  # trust the self-signed certificate
    inbox, port = smtp_server(tls_context=_server_context(cert), require_starttls=True,
                              auth_required=True, auth_require_tls=True,
                              authenticator=_authenticator)
    m = sample_message()
    d = deliver(_target(port, "starttls", username=USER, password=PASSWORD), m, **FAST)
    assert d.ok, d.error
    _check_message(inbox, m)
    assert inbox.messages[0]["tls"] is True
    assert inbox.messages[0]["authenticated"] is True
    assert inbox.messages[0]["login"] == USER.encode()


# aiosmtpd advertises AUTH on an implicitly-TLS connection only with auth_require_tls=False,
# and warns that it cannot tell the connection is encrypted (it is).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls_with_login(smtp_server: Any, cert: tuple[Path, Path],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    inbox, port = smtp_server(ssl_context=_server_context(cert), auth_required=True,
                              auth_require_tls=False, authenticator=_authenticator)
    m = sample_message()
    d = deliver(_target(port, "ssl", username=USER, password=PASSWORD), m, **FAST)
    assert d.ok, d.error
    _check_message(inbox, m)
    # (the listener speaks only TLS: a plain client could not have delivered; aiosmtpd's
    # session.ssl reports STARTTLS only)
    assert inbox.messages[0]["authenticated"] is True


def test_wrong_password_is_not_retried_nor_shown(smtp_server: Any, cert: tuple[Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    caplog.set_level(logging.DEBUG, logger="technic_v4")
    inbox, port = smtp_server(tls_context=_server_context(cert), require_starttls=True,
                              auth_required=True, authenticator=_authenticator)
    wrong = "wr0ng-Secret-pw"
    d = deliver(_target(port, "starttls", username=USER, password=wrong), sample_message(),
                attempts=4, **FAST)
    assert (d.ok, d.attempts, d.status) == (False, 1, 535)
    assert d.error == "SMTP login refused (535): check username and password (not retried)"
    assert inbox.messages == []
    assert wrong not in caplog.text and PASSWORD not in caplog.text


def test_untrusted_certificate_is_refused(smtp_server: Any, cert: tuple[Path, Path],
                                          monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    empty = tmp_path / "none.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))  # trusts nothing
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    inbox, port = smtp_server(tls_context=_server_context(cert), require_starttls=True)
    d = deliver(_target(port, "starttls"), sample_message(), attempts=4, **FAST)
    assert not d.ok and d.attempts == 1
    assert "TLS certificate of 127.0.0.1 does not verify" in (d.error or "")
    assert inbox.messages == []


def test_starttls_against_a_server_without_tls(smtp_server: Any) -> None:
    inbox, port = smtp_server()
    d = deliver(_target(port, "starttls"), sample_message(), attempts=4, **FAST)
    assert (d.ok, d.attempts) == (False, 1) and inbox.messages == []  # never sent in the clear
    assert d.error == ("the server does not offer STARTTLS: set security to ssl or none "
                       "(not retried)")


def test_refused_recipients(smtp_server: Any) -> None:
    inbox, port = smtp_server()
    inbox.refuse_rcpt = {"you@example.org": "550 no such user"}
    d = deliver(_target(port, "none"), sample_message(), attempts=4, **FAST)
    # the other recipient has it: a retry would send it to them twice
    assert (d.ok, d.attempts) == (False, 1) and len(inbox.messages) == 1
    assert d.error == "sent to 1 of 2; refused: you@example.org (550) (not retried)"
    inbox.refuse_rcpt = {"me@example.com": "450 mailbox busy", "you@example.org": "450 later"}
    d = deliver(_target(port, "none"), sample_message(), attempts=3, **FAST)
    assert (d.ok, d.attempts) == (False, 3)  # every recipient refused for now: retried
    assert d.error == "every recipient refused (450); gave up after 3 attempts"


def test_login_on_a_server_without_auth(smtp_server: Any) -> None:
    inbox, port = smtp_server()
    d = deliver(_target(port, "none", username=USER, password=PASSWORD), sample_message(),
                attempts=4, **FAST)
    assert (d.ok, d.attempts) == (False, 1) and inbox.messages == []
    assert (d.error or "").startswith("the server offers no login (AUTH) on this connection")


def test_connection_refused_is_retried() -> None:
    port = free_port()
    d = deliver(_target(port, "none"), sample_message(), attempts=2, **FAST)
    assert (d.ok, d.attempts) == (False, 2)
    assert (d.error or "").startswith(f"SMTP 127.0.0.1:{port}: ConnectionRefusedError")
