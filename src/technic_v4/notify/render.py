"""What a :class:`~technic_v4.notify.Message` looks like on each target: pure functions, no I/O.

- webhook: the full JSON body (every row, no truncation; receivers are programs);
- Slack: ``text`` (the notification line) plus Block Kit ``blocks``;
- Discord: ``content`` plus one embed whose fields hold the groups (Discord's limits: content
  2,000 chars, embed title 256, field value 1,024, all embed text 6,000), no @mentions;
- email: subject, a plain-text part and an HTML part with a table per group;
- Telegram: ``sendMessage`` with ``parse_mode=HTML`` within its 4,096-char limit.

Chat targets show at most :data:`CHAT_ROWS` rows per group and say how many more there are.
Everything taken from the message (screen names, symbols, watchlist names) is escaped for the
target's markup.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from technic_v4.notify import Message

CHAT_ROWS = 15  # rows per group on a chat target
EMAIL_ROWS = 500  # rows per group in an email
TELEGRAM_LIMIT = 4096
TELEGRAM_TITLE = 256  # characters of the title shown (a huge screen name leaves room for rows)
DISCORD_CONTENT = 2000
DISCORD_TITLE = 256
DISCORD_FIELD = 1024
SLACK_SECTION = 3000

PLAN_COLUMNS = ("Symbol", "Signal", "TechRating", "Entry", "Stop", "Target", "PositionSize")
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("entered", "Entered", PLAN_COLUMNS),
    ("left", "Left", PLAN_COLUMNS),
    ("changed", "Signal changed", ("Symbol", "From", "To")),
    ("touched", "Stop/target touched", ("Watchlist", "Symbol", "Level", "Price", "Low", "High")),
)
_DIGITS = {"TechRating": 1, "Entry": 2, "Stop": 2, "Target": 2, "Price": 2, "Low": 2, "High": 2,
           "PositionSize": 0}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(value: Any) -> Any:
    """A JSON-safe value: NaN/inf → None, numpy scalars → Python, dates → ISO text."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return clean(value.item())
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return str(value)


def one_line(text: Any) -> str:
    """Control characters (newlines too) as single spaces: a subject or title stays one line."""
    return _CONTROL.sub(" ", str(text)).strip()


def cell(column: str, value: Any) -> str:
    """One value as shown to people: numbers rounded for their column, missing as ``-``."""
    value = clean(value)
    if value is None or value == "":
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        digits = _DIGITS.get(column)
        if digits == 0:
            return f"{value:,.0f}"
        if digits is not None:
            return f"{value:,.{digits}f}"
        return f"{value:g}"
    return one_line(value)


def counts(m: Message) -> dict[str, int]:
    return {key: len(getattr(m, key)) for key, _, _ in GROUPS}


def header_key(m: Message) -> str:
    """:attr:`Message.key` for a mail or HTTP header: ASCII, percent-encoded (UTF-8)."""
    return quote(m.key, safe="/:@-._~")


def title(m: Message) -> str:
    """``[test] technic: <screen> · <session> (catch-up) — 3 entered, 1 left``."""
    parts = [f"{n} {key}" for key, n in counts(m).items() if n]
    head = "[test] " if m.test else ""
    tail = " (catch-up)" if m.catch_up else ""
    news = ", ".join(parts) if parts else "no changes"
    return f"{head}technic: {one_line(m.screen)} · {m.session.isoformat()}{tail} — {news}"


def row_text(key: str, row: dict[str, Any]) -> str:
    """One row as a line of plain text."""
    sym = cell("Symbol", row.get("Symbol"))
    if key == "changed":
        return f"{sym}: {cell('From', row.get('From'))} → {cell('To', row.get('To'))}"
    if key == "touched":
        return (f"{sym} ({cell('Watchlist', row.get('Watchlist'))}): "
                f"{cell('Level', row.get('Level'))} {cell('Price', row.get('Price'))} touched "
                f"(low {cell('Low', row.get('Low'))}, high {cell('High', row.get('High'))})")
    return (f"{sym} {cell('Signal', row.get('Signal'))} · rating "
            f"{cell('TechRating', row.get('TechRating'))} · entry {cell('Entry', row.get('Entry'))}"
            f" stop {cell('Stop', row.get('Stop'))} target {cell('Target', row.get('Target'))}"
            f" · size {cell('PositionSize', row.get('PositionSize'))}")


def more(n: int) -> str:
    return f"… and {n} more"


def fit(lines: Sequence[str], budget: int, *, max_lines: int | None = None,
        sep: str = "\n") -> str:
    """As many whole ``lines`` as fit in ``budget`` characters (and ``max_lines``), followed by
    ``… and N more`` for the rest; the result never exceeds ``budget``."""
    limit = len(lines) if max_lines is None else min(max_lines, len(lines))
    kept: list[str] = []
    for i, line in enumerate(lines[:limit]):
        rest = len(lines) - i - 1
        trial = sep.join([*kept, line])
        # reserve room for the "more" line when something may still be left out
        tail = len(sep) + len(more(len(lines))) if (rest or limit < len(lines)) else 0
        if len(trial) + tail > budget:
            break
        kept.append(line)
    left_out = len(lines) - len(kept)
    if left_out:
        kept.append(more(left_out))
    out = sep.join(kept)
    return out if len(out) <= budget else out[: max(0, budget - 1)] + "…"


# --- webhook -----------------------------------------------------------------------------------

def webhook_body(m: Message) -> dict[str, Any]:
    """The webhook's JSON object: every row of every group, numbers as numbers (NaN → null)."""
    body: dict[str, Any] = {
        "key": m.key,
        "screen": m.screen,
        "session": m.session.isoformat(),
        "catch_up": m.catch_up,
        "test": m.test,
        "link": m.link,
        "title": title(m),
        "counts": counts(m),
    }
    for key, _, _ in GROUPS:
        body[key] = [clean(dict(row)) for row in getattr(m, key)]
    return body


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON (strict: a NaN that escaped :func:`clean` is an error, not ``NaN``)."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def webhook_bytes(m: Message) -> bytes:
    """The exact bytes POSTed (and signed)."""
    return json_bytes(webhook_body(m))


# --- Slack -------------------------------------------------------------------------------------

def _slack_escape(text: str) -> str:
    # Slack's mrkdwn: only &, < and > need escaping
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe_link(link: str | None) -> str | None:
    return link if link and re.match(r"https?://", link) and not _CONTROL.search(link) else None


def slack_payload(m: Message) -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (shown in notifications) and ``blocks``."""
    head = title(m)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": False}},
    ]
    for key, label, _ in GROUPS:
        rows = getattr(m, key)
        if not rows:
            continue
        lines = [_slack_escape(row_text(key, r)) for r in rows]
        body = f"*{label}* ({len(rows)})\n" + fit(lines, SLACK_SECTION - 40, max_lines=CHAT_ROWS)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    link = _safe_link(m.link)
    if link:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{_slack_escape(link)}|Open in technic>"}]})
    return {"text": _slack_escape(head), "blocks": blocks}


# --- Discord -----------------------------------------------------------------------------------

_DISCORD_INLINE = re.compile(r"([\\*_~`|\[\]<@])")  # emphasis, code, spoilers, masked links
_DISCORD_LINE_START = re.compile(r"^([#>-])", re.MULTILINE)  # headings, quotes, lists


def _discord_escape(text: str) -> str:
    return _DISCORD_LINE_START.sub(r"\\\1", _DISCORD_INLINE.sub(r"\\\1", text))


def discord_payload(m: Message) -> dict[str, Any]:
    """Discord webhook JSON: ``content`` and one embed, within Discord's limits, no mentions."""
    head = title(m)
    embed: dict[str, Any] = {"title": head[:DISCORD_TITLE], "fields": []}
    link = _safe_link(m.link)
    if link:
        embed["url"] = link
    for key, label, _ in GROUPS:
        rows = getattr(m, key)
        if not rows:
            continue
        lines = [_discord_escape(row_text(key, r)) for r in rows]
        embed["fields"].append({"name": f"{label} ({len(rows)})",
                                "value": fit(lines, DISCORD_FIELD, max_lines=CHAT_ROWS),
                                "inline": False})
    if not embed["fields"]:
        embed["description"] = "No changes."
    return {"content": _discord_escape(head)[:DISCORD_CONTENT], "embeds": [embed],
            "allowed_mentions": {"parse": []}}


# --- Telegram ----------------------------------------------------------------------------------

def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def telegram_text(m: Message, limit: int = TELEGRAM_LIMIT) -> str:
    """The ``sendMessage`` text (HTML parse mode), never longer than ``limit`` characters: each
    group is cut to :data:`CHAT_ROWS` rows, then the whole to the limit, saying how many more."""
    head = title(m)
    if len(head) > TELEGRAM_TITLE:  # cut before escaping: the markup stays whole
        head = head[: TELEGRAM_TITLE - 1] + "…"
    parts = [f"<b>{_h(head)}</b>"]
    sections: list[tuple[str, list[str]]] = []
    for key, label, _ in GROUPS:
        rows = getattr(m, key)
        if rows:
            sections.append((f"\n<b>{_h(label)}</b> ({len(rows)})",
                             [_h(row_text(key, r)) for r in rows]))
    link = _safe_link(m.link)
    footer = f'\n<a href="{_h(link)}">Open in technic</a>' if link else ""
    budget = limit - len(parts[0]) - len(footer)
    for i, (header, lines) in enumerate(sections):
        share = max(0, budget // (len(sections) - i) - len(header) - 1)
        body = fit(lines, share, max_lines=CHAT_ROWS) if share > len(more(len(lines))) else \
            more(len(lines))
        chunk = f"{header}\n{body}"
        parts.append(chunk)
        budget -= len(chunk) + 1
    text = "\n".join(parts) + footer
    return text if len(text) <= limit else text[: limit - 1] + "…"  # unreachable by construction


def telegram_payload(m: Message, chat_id: str) -> dict[str, Any]:
    return {"chat_id": chat_id, "text": telegram_text(m), "parse_mode": "HTML",
            "disable_web_page_preview": True}


# --- email -------------------------------------------------------------------------------------

def _table_rows(rows: list[dict[str, Any]], cap: int) -> tuple[list[dict[str, Any]], int]:
    return rows[:cap], max(0, len(rows) - cap)


def email_text(m: Message) -> str:
    """The plain-text part: a fixed-width table per group."""
    out = [title(m), ""]
    for key, label, columns in GROUPS:
        rows, extra = _table_rows(getattr(m, key), EMAIL_ROWS)
        if not rows:
            continue
        grid = [list(columns)] + [[cell(c, r.get(c)) for c in columns] for r in rows]
        widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
        out.append(f"{label} ({len(getattr(m, key))})")
        for line in grid:
            out.append("  ".join(v.rjust(w) if c in _DIGITS else v.ljust(w)
                                 for v, w, c in zip(line, widths, columns, strict=True)).rstrip())
        if extra:
            out.append(more(extra))
        out.append("")
    if m.empty:
        out.extend(["No changes.", ""])
    link = _safe_link(m.link)
    if link:
        out.append(f"Open in technic: {link}")
    return "\n".join(out).rstrip() + "\n"


def email_html(m: Message) -> str:
    """The HTML part: one ``<table>`` per group; every value escaped."""
    out = ["<!doctype html><html><body style=\"font-family:sans-serif\">",
           f"<h2>{_h(title(m))}</h2>"]
    for key, label, columns in GROUPS:
        all_rows = getattr(m, key)
        rows, extra = _table_rows(all_rows, EMAIL_ROWS)
        if not rows:
            continue
        out.append(f"<h3>{_h(label)} ({len(all_rows)})</h3>")
        out.append('<table border="1" cellpadding="4" cellspacing="0" '
                   'style="border-collapse:collapse">')
        out.append("<tr>" + "".join(f"<th>{_h(c)}</th>" for c in columns) + "</tr>")
        for r in rows:
            tds = "".join(
                f'<td style="text-align:{"right" if c in _DIGITS else "left"}">'
                f"{_h(cell(c, r.get(c)))}</td>" for c in columns)
            out.append(f"<tr>{tds}</tr>")
        out.append("</table>")
        if extra:
            out.append(f"<p>{_h(more(extra))}</p>")
    if m.empty:
        out.append("<p>No changes.</p>")
    link = _safe_link(m.link)
    if link:
        out.append(f'<p><a href="{_h(link)}">Open in technic</a></p>')
    out.append("</body></html>")
    return "\n".join(out)


def email_message(m: Message, sender: str, to: Sequence[str]) -> EmailMessage:
    """A multipart/alternative message: plain text first, then HTML (clients show the last
    they support)."""
    msg = EmailMessage()
    msg["Subject"] = title(m)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["X-Technic-Key"] = header_key(m)
    msg.set_content(email_text(m))
    msg.add_alternative(email_html(m), subtype="html")
    return msg

