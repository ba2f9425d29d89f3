"""Notifications: what changed after a session, sent to webhooks, Slack, Discord, email, Telegram.

The contract between the daily runner (``technic_v4.daily``) and the senders:

- :class:`Message` is what one saved screen's run of one session has to say;
- a target is a plain dict (``{"name": ..., "kind": "webhook"|"slack"|"discord"|"email"|
  "telegram", ...}``) validated by :func:`technic_v4.notify.targets.parse_target`, stored by the
  daily runner as JSON (secrets included, never returned by the API);
- :func:`technic_v4.notify.send.deliver` sends one message to one target with timeouts and
  bounded retries and returns a :class:`Delivery` (it never raises for a failed send).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One screen's news for one session."""

    screen: str  # the saved screen's name
    session: dt.date  # the session it ran on
    # Rows of listings that entered / left the screen since its previous session's run; each a
    # dict with Symbol, Signal, TechRating, Entry, Stop, Target, PositionSize (None when unknown).
    entered: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)
    # Listings still in the screen whose Signal changed: Symbol, From, To.
    changed: list[dict[str, Any]] = field(default_factory=list)
    # Watchlist symbols whose stop or target was touched: Watchlist, Symbol, Level ("stop" or
    # "target"), Price (the level), Low, High (the session's bar).
    touched: list[dict[str, Any]] = field(default_factory=list)
    link: str | None = None  # a link to the page for this screen/session, when known
    catch_up: bool = False  # sent for a missed session, after the fact
    test: bool = False  # a sample sent by ``technic alerts test``

    @property
    def empty(self) -> bool:
        return not (self.entered or self.left or self.changed or self.touched)

    @property
    def key(self) -> str:
        """The same for every send of this (screen, session): receivers deduplicate on it (sent
        as ``key`` in a webhook body, the ``X-Technic-Key`` header and email header)."""
        return f"{self.screen}/{self.session.isoformat()}" + ("/test" if self.test else "")


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one message to one target."""

    target: str  # the target's name
    ok: bool
    attempts: int
    error: str | None = None  # one line, secrets scrubbed; None when ok
    status: int | None = None  # the last HTTP status / SMTP code, when there was one


def sample_message(screen: str = "sample", session: dt.date | None = None,
                   link: str | None = None) -> Message:
    """What ``technic alerts test NAME`` sends: a test message with a row in every group."""
    plan = {"Signal": "Long", "TechRating": 71.4, "Entry": 187.25, "Stop": 179.8,
            "Target": 202.15, "PositionSize": 134}
    return Message(
        screen=screen,
        session=session or dt.date.today(),
        entered=[{"Symbol": "AAPL", **plan},
                 {"Symbol": "MSFT", **plan, "Signal": "Strong Long", "TechRating": 80.2}],
        left=[{"Symbol": "XOM", **plan, "Signal": "Watch", "TechRating": 52.0}],
        changed=[{"Symbol": "NVDA", "From": "Watch", "To": "Long"}],
        touched=[{"Watchlist": "core", "Symbol": "TSLA", "Level": "stop", "Price": 231.5,
                  "Low": 229.9, "High": 240.1}],
        link=link,
        test=True,
    )
