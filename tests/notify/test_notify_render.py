"""Payload shapes per target: every field present, markup escaped, chat limits kept with
'… and N more'. Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from typing import Any

import numpy as np

from technic_v4.notify import Message, render, sample_message

SESSION = dt.date(2026, 11, 27)
EVIL = "<b>&x</b>"


def _plan(i: int, signal: str = "Long") -> dict[str, Any]:
    return {"Symbol": f"S{i:04d}", "Signal": signal, "TechRating": 60 + (i % 40) / 3,
            "Entry": 10.0 + i, "Stop": 9.0 + i, "Target": 13.0 + i, "PositionSize": 100 + i}


def _big(n: int = 2000) -> Message:
    return Message(
        screen=f"breakouts {EVIL}\nsecond line", session=SESSION,
        entered=[_plan(i) for i in range(n)],
        left=[_plan(i, "Watch") for i in range(n, n + n // 2)],
        changed=[{"Symbol": f"C{i}", "From": "Watch", "To": "Long"} for i in range(n)],
        touched=[{"Watchlist": EVIL, "Symbol": f"T{i}", "Level": "stop", "Price": 5.0,
                  "Low": 4.9, "High": 5.5} for i in range(n)],
        link="https://technic.example/screens/breakouts?session=2026-11-27", catch_up=True)


def test_webhook_body_has_every_row_and_field_as_json_numbers() -> None:
    m = Message(screen="s", session=SESSION,
                entered=[{**_plan(1), "TechRating": np.float64(71.5), "PositionSize": np.int64(7),
                          "Stop": float("nan")}],
                left=[_plan(2, "Watch")], changed=[{"Symbol": "X", "From": "Watch", "To": "Long"}],
                link="https://technic.example/s", catch_up=True)
    body = json.loads(render.webhook_bytes(m))
    assert {"key", "screen", "session", "catch_up", "test", "link", "entered", "left", "changed",
            "touched", "counts", "title"} <= body.keys()
    assert (body["screen"], body["session"], body["catch_up"], body["test"]) == \
        ("s", "2026-11-27", True, False)
    row = body["entered"][0]
    assert set(render.PLAN_COLUMNS) <= row.keys()
    assert row["TechRating"] == 71.5 and row["PositionSize"] == 7 and row["Stop"] is None
    assert body["counts"] == {"entered": 1, "left": 1, "changed": 1, "touched": 0}
    assert body["link"] == "https://technic.example/s" and body["key"] == "s/2026-11-27"
    # a big message keeps every row in the webhook (receivers are programs)
    assert len(json.loads(render.webhook_bytes(_big(300)))["entered"]) == 300


def _visible(telegram_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", telegram_html))


def test_telegram_text_is_escaped_and_within_4096_with_more_counts() -> None:
    m = _big()
    text = render.telegram_text(m)
    assert len(text) <= render.TELEGRAM_LIMIT
    assert EVIL not in text and html.escape(EVIL) in text  # the user's markup, escaped
    assert set(re.findall(r"</?(\w+)", text)) <= {"b", "a"}  # only our tags
    assert "… and 1985 more" in text  # 2000 entered, 15 shown
    assert "second line" in text.splitlines()[0]  # the title stays one line
    payload = render.telegram_payload(m, "-100")
    assert payload["parse_mode"] == "HTML" and payload["chat_id"] == "-100"
    # fewer rows: everything shown, nothing said about more
    small = render.telegram_text(sample_message())
    assert "more" not in small and "AAPL" in _visible(small)


def test_telegram_limit_holds_for_huge_names() -> None:
    m = Message(screen="x" * 5000, session=SESSION,
                entered=[{**_plan(i), "Symbol": "&" * 300} for i in range(50)])
    assert len(render.telegram_text(m)) <= render.TELEGRAM_LIMIT


def test_discord_payload_within_limits_without_mentions() -> None:
    m = _big()
    p = render.discord_payload(m)
    assert len(p["content"]) <= 2000 and p["allowed_mentions"] == {"parse": []}
    (embed,) = p["embeds"]
    assert len(embed["title"]) <= 256 and len(embed["fields"]) == 4
    assert all(len(f["value"]) <= 1024 and len(f["name"]) <= 256 for f in embed["fields"])
    total = len(embed["title"]) + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= 6000
    assert embed["fields"][0]["name"] == "Entered (2000)"
    *shown, tail = embed["fields"][0]["value"].split("\n")
    assert tail == f"… and {2000 - len(shown)} more" and 0 < len(shown) <= render.CHAT_ROWS
    assert embed["url"].startswith("https://technic.example/")
    # an @everyone in a screen name is neither a mention nor markdown
    q = render.discord_payload(Message(screen="@everyone *bold*", session=SESSION))
    assert "\\@everyone" in q["content"] and "\\*bold\\*" in q["content"]


def test_slack_payload_blocks_within_limits_and_escaped() -> None:
    p = render.slack_payload(_big())
    assert "<b>" not in p["text"] and "&lt;b&gt;" in p["text"]
    header, *sections, context = p["blocks"]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    assert len(sections) == 4
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert sections[0]["text"]["text"].startswith("*Entered* (2000)\n")
    assert sections[0]["text"]["text"].endswith("… and 1985 more")
    assert context["elements"][0]["text"].startswith("<https://technic.example/")
    assert len(p["blocks"]) <= 50


def test_email_parts_have_the_table_and_escape_everything() -> None:
    m = _big(3)
    msg = render.email_message(m, "bot@example.com", ["me@example.com", "you@example.org"])
    assert "\n" not in msg["Subject"] and msg["Subject"].startswith("technic: breakouts")
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    text, page = plain.get_content(), rich.get_content()
    assert "S0000" in text and "Symbol" in text and "PositionSize" in text
    assert "<table" in page and "<th>TechRating</th>" in page and ">S0001</td>" in page
    assert EVIL not in page and html.escape(EVIL) in page
    assert msg["To"] == "me@example.com, you@example.org"


def test_a_link_that_is_not_http_is_dropped() -> None:
    m = Message(screen="s", session=SESSION, entered=[_plan(1)], link="javascript:alert(1)")
    assert "javascript" not in render.email_html(m)
    assert "javascript" not in render.telegram_text(m)
    assert "url" not in render.discord_payload(m)["embeds"][0]


def test_fit_never_exceeds_its_budget() -> None:
    lines = [f"line {i}" for i in range(100)]
    for budget in (5, 20, 37, 100, 1000):
        out = render.fit(lines, budget, max_lines=10)
        assert len(out) <= budget
    assert render.fit(lines[:3], 1000) == "line 0\nline 1\nline 2"
    assert render.fit(lines, 1000, max_lines=2) == "line 0\nline 1\n… and 98 more"


def test_telegram_html_stays_well_formed_for_a_huge_screen_name() -> None:
    """Cutting the text at 4,096 characters must not cut the title's <b> or an entity:
    Telegram refuses such a message ("can't parse entities") and it is never delivered."""
    for screen in ("&" * 5000, "x" * 5000, "<b>" * 2000):
        text = render.telegram_text(Message(screen=screen, session=SESSION,
                                            entered=[_plan(i) for i in range(30)]))
        assert len(text) <= render.TELEGRAM_LIMIT
        assert text.count("<b>") == text.count("</b>")
        assert not re.search(r"&(?!(amp|lt|gt|quot|#x27);)", text)  # no entity cut in half
        assert "S0000" in text  # the rows still have room
