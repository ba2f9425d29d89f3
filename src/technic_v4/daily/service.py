"""Saved screens, watchlists and alert targets: the functions the CLI (``technic screens``,
``watchlists``, ``alerts``) and the HTTP routes (``/v1/screens``, ``/v1/watchlists``,
``/v1/alerts``) share. Each validates where the request enters and raises ``ConfigError``
naming the field; secrets are never returned (shown as ``"set"``).
"""

from __future__ import annotations

import datetime as dt
import importlib
from typing import Any

from technic_v4.config.scan import ScanConfig
from technic_v4.daily.run import WATCHLIST_PREFIX, Sender, default_send
from technic_v4.daily.state import StateStore, check_name
from technic_v4.errors import ConfigError
from technic_v4.notify import Message

KINDS = ("webhook", "slack", "discord", "email", "telegram")
# Fields shown as "set" when the notify package cannot say which are secret.
_SECRET_HINTS = ("secret", "password", "token", "url")


def open_state(state: StateStore | None = None) -> StateStore:
    from technic_v4.config.settings import get_settings

    return state or StateStore(get_settings().data_dir)


def _list(value: Any, field: str) -> list[Any]:
    """A JSON list (a string or an object would be split into its characters or keys)."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ConfigError(field, f"expected a list, got {type(value).__name__}")
    return list(value)


def _names(value: Any, field: str = "targets") -> list[str]:
    names = _list(value, field)
    for v in names:
        if not isinstance(v, str):
            raise ConfigError(field, f"expected alert target names, got {v!r}")
    return names


# -- screens ---------------------------------------------------------------------------------------
def screen_config(config: dict[str, Any]) -> dict[str, Any]:
    """A saved screen's ScanConfig fields, validated (a bad ``where`` fails naming it)."""
    if not isinstance(config, dict):
        raise ConfigError("config", "expected an object of ScanConfig fields, got "
                          f"{type(config).__name__}")
    if config.get("as_of_date") is not None:
        raise ConfigError("as_of_date", "a saved screen runs as of each session; leave it out "
                          "(use `technic screens run NAME --as-of D` to look back)")
    cfg = ScanConfig(**config)
    if not cfg.screen().active and not config:
        raise ConfigError("where", "a saved screen needs a where, a preset or scan options")
    return cfg.model_dump(mode="json", exclude_defaults=True)


RESERVED = ("validate", "presets")  # /v1/screens/<these> are other routes


def add_screen(name: str, config: dict[str, Any], targets: list[str] | None = None,
               enabled: bool = True, replace: bool = False,
               state: StateStore | None = None) -> dict[str, Any]:
    check_name(name)
    if name in RESERVED:
        raise ConfigError("name", f"{name!r} is reserved; choose another name")
    if not isinstance(enabled, bool):
        raise ConfigError("enabled", f"expected true or false, got {enabled!r}")
    st = open_state(state)
    st.put_screen(name, screen_config(config), enabled, _names(targets), replace=replace)
    return show_screen(name, st)


def list_screens(state: StateStore | None = None) -> list[dict[str, Any]]:
    st = open_state(state)
    out = []
    for s in st.screens():
        runs = st.runs(s["name"], limit=1)
        out.append({"name": s["name"], "enabled": s["enabled"], "config": s["config"],
                    "targets": s["targets"],
                    "last_run": runs[0].summary() if runs else None})
    return out


def show_screen(name: str, state: StateStore | None = None, runs: int = 10) -> dict[str, Any]:
    st = open_state(state)
    s = st.screen(name)
    history = st.runs(name, limit=runs)
    last = history[0] if history else None
    return {"name": name, "enabled": s["enabled"], "config": s["config"],
            "targets": s["targets"], "created_at": str(s["created_at"]),
            "updated_at": str(s["updated_at"]), "runs": [r.summary() for r in history],
            "last_run": None if last is None else {**last.summary(), "changes": last.changes,
                                                   "result": last.rows}}


def remove_screen(name: str, state: StateStore | None = None) -> None:
    open_state(state).remove_screen(name)


def run_screen(name: str, as_of: dt.date | None = None, state: StateStore | None = None
               ) -> tuple[Any, str]:
    """The saved screen's scan now (or as of a session), as ``run_scan`` returns it; nothing
    is stored or sent (the daily run does that)."""
    from technic_v4.scanner_core import run_scan

    cfg = dict(open_state(state).screen(name)["config"])
    if as_of is not None:
        cfg["as_of_date"] = as_of
    return run_scan(ScanConfig(**cfg))


# -- watchlists ------------------------------------------------------------------------------------
def parse_item(item: str | dict[str, Any]) -> dict[str, Any]:
    """``SYMBOL[:entry[:stop[:size]]]`` (empty parts allowed: ``AAPL::180``) or a dict with
    symbol, entry, stop, target, size."""
    if isinstance(item, str):
        parts = item.split(":")
        if len(parts) > 4:
            raise ConfigError("items", f"{item!r}: expected SYMBOL[:entry[:stop[:size]]]")
        d: dict[str, Any] = {"symbol": parts[0]}
        for key, text in zip(("entry", "stop", "size"), parts[1:], strict=False):
            if text.strip():
                try:
                    d[key] = float(text)
                except ValueError:
                    raise ConfigError(f"items.{parts[0]}.{key}",
                                      f"{text!r} is not a number") from None
        item = d
    if not isinstance(item, dict):
        raise ConfigError("items", "each item is SYMBOL[:entry[:stop[:size]]] or an object")
    unknown = set(item) - {"symbol", "entry", "stop", "target", "size"}
    if unknown:
        raise ConfigError(f"items.{sorted(unknown)[0]}", "unknown field; valid: symbol, entry, "
                          "stop, target, size")
    sym = item.get("symbol")
    if not isinstance(sym, str) or not sym.strip() or len(sym) > 16:
        raise ConfigError("items.symbol", f"{sym!r} is not a ticker")
    out: dict[str, Any] = {"symbol": sym.strip().upper()}
    for key in ("entry", "stop", "target", "size"):
        v = item.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 or v == float("inf"):
            raise ConfigError(f"items.{out['symbol']}.{key}", f"must be a positive number, got "
                              f"{v!r}")
        out[key] = float(v)
    return out


def add_watchlist(name: str, items: list[str | dict[str, Any]], targets: list[str] | None = None,
                  replace: bool = False, state: StateStore | None = None) -> dict[str, Any]:
    check_name(name)
    items = _list(items, "items")
    if not items:
        raise ConfigError("items", "a watchlist needs at least one symbol")
    parsed = [parse_item(i) for i in items]
    st = open_state(state)
    st.put_watchlist(name, parsed, _names(targets), replace=replace)
    return show_watchlist(name, st)


def list_watchlists(state: StateStore | None = None) -> list[dict[str, Any]]:
    st = open_state(state)
    return [{"name": w["name"], "symbols": [i["symbol"] for i in w["items"]],
             "targets": w["targets"]} for w in st.watchlists()]


def show_watchlist(name: str, state: StateStore | None = None) -> dict[str, Any]:
    """Each item with its last run's Signal and Close (Entry), its levels and the distance to
    them in percent of the close."""
    st = open_state(state)
    w = st.watchlist(name)
    runs = st.runs(WATCHLIST_PREFIX + name, limit=1)
    last = runs[0] if runs else None
    rows = {r["Symbol"]: r for r in (last.rows if last else [])}
    levels = (last.changes.get("levels", {}) if last else {})
    items = []
    for it in w["items"]:
        r = rows.get(it["symbol"], {})
        close = r.get("Entry")
        lv = levels.get(it["symbol"], {})
        stop = it.get("stop", lv.get("Stop"))
        target = it.get("target", lv.get("Target"))
        items.append({**it, "Signal": r.get("Signal"), "Close": close, "Stop": stop,
                      "Target": target,
                      "ToStopPct": _pct(stop, close), "ToTargetPct": _pct(target, close)})
    return {"name": name, "targets": w["targets"], "items": items,
            "last_run": None if last is None else {**last.summary(),
                                                   "touched": last.changes.get("touched", [])}}


def _pct(level: float | None, close: float | None) -> float | None:
    if level is None or close is None or not close:
        return None
    return round(100.0 * (level - close) / close, 4)


def remove_watchlist(name: str, state: StateStore | None = None) -> None:
    open_state(state).remove_watchlist(name)


# -- alert targets ---------------------------------------------------------------------------------
def _targets_module() -> Any:
    try:
        return importlib.import_module("technic_v4.notify.targets")
    except ImportError:  # the senders not installed yet: a basic check only
        return None


def check_target(spec: dict[str, Any]) -> dict[str, Any]:
    check_name(spec.get("name"))
    mod = _targets_module()
    if mod is not None:
        mod.parse_target(spec)  # raises ConfigError naming the field
    elif spec.get("kind") not in KINDS:
        raise ConfigError("kind", f"{spec.get('kind')!r} is not a target kind; valid: "
                          f"{', '.join(KINDS)}")
    return {k: v for k, v in spec.items() if v is not None}


def public_target(spec: dict[str, Any]) -> dict[str, Any]:
    """A target as shown by the API and CLI: secrets as "set"."""
    mod = _targets_module()
    if mod is not None:
        try:
            return dict(mod.public_view(mod.parse_target(spec)))
        except ConfigError:
            pass  # a target stored before a rule tightened: fall back to the generic mask
    return {k: ("set" if any(h in k.lower() for h in _SECRET_HINTS) and v else v)
            for k, v in spec.items()}


def add_target(spec: dict[str, Any], replace: bool = False, state: StateStore | None = None
               ) -> dict[str, Any]:
    clean = check_target(spec)
    open_state(state).put_target(clean, replace=replace)
    return public_target(clean)


def list_targets(state: StateStore | None = None) -> dict[str, Any]:
    """Every target (secrets "set") and the dead letters (deliveries that failed for good)."""
    st = open_state(state)
    dead = [{"id": o.id, "target": o.target, "screen": o.payload.get("screen"),
             "session": o.payload.get("session"), "attempts": o.attempts,
             "last_error": o.last_error, "created_at": str(o.created_at)}
            for o in st.outbox("dead")]
    return {"targets": [public_target(t) for t in st.targets()], "dead_letters": dead}


def test_target(name: str, send: Sender | None = None, state: StateStore | None = None
                ) -> dict[str, Any]:
    """Send a sample message to one target now; returns the delivery."""
    from technic_v4 import notify

    spec = open_state(state).target(name)
    # The senders' own sample when they ship one (a row in every group), else a small one.
    make = getattr(notify, "sample_message", None)
    sample = make() if callable(make) else Message(
        "sample", dt.date.today(), entered=[{
            "Symbol": "TEST", "Signal": "Long", "TechRating": 70.0, "Entry": 100.0,
            "Stop": 95.0, "Target": 110.0, "PositionSize": 100}], test=True)
    d = (send or default_send)(spec, sample)
    return {"target": d.target, "ok": d.ok, "attempts": d.attempts, "error": d.error,
            "status": d.status}


def remove_target(name: str, state: StateStore | None = None) -> None:
    open_state(state).remove_target(name)
