"""The daily run of one session: update the store, run every enabled saved screen, compare with
its previous session's run, check the watchlists' levels, store, then notify.

    1. update     ``MarketData.ensure_current`` (the session must then be stored)
    2. screens    every enabled screen without a stored run of the session, as of it, sharing one
                  panel load (the L1 cache) and, per group of screens with equal scan options,
                  stages 2-8 and one term Evaluator (equal terms computed once)
    3. compare    with the screen's stored run of the previous session (computed, not stored,
                  when there is none): entered, left, Signal changed
    4. watchlists symbols whose stop or target the session's bar touched (low <= stop,
                  high >= target)
    5. store      one transaction for the session: each screen's (and watchlist's) run and one
                  outbox row per target when there is news (``StateStore.store_runs``)
    6. send       every pending outbox row (``flush``): marked sent after its delivery, dead
                  with its one-line error when the sender gave up

Exactly once: a stored run is never recomputed, and a pending row is sent by the next run (or
``technic watch``) after a crash; the only window for a repeat is a crash between a receiver's
answer and the row being marked sent. Runs in one data dir take turns (a file lock), so two
processes never send one row twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from technic_v4 import pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.daily.state import RESULT_COLUMNS, NewRun, OutboxRow, StateStore
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError, DataError, TechnicError
from technic_v4.notify import Delivery, Message

log = logging.getLogger(__name__)

Sender = Callable[[dict[str, Any], Message], Delivery]
WATCHLIST_PREFIX = "watchlist:"
# Scan options that only the screen and output stages read: screens differing only in these
# share stages 2-8 (and one Evaluator).
_SCREEN_ONLY = {"where", "columns", "sort_by", "preset", "near_miss", "min_tech_rating", "top_n",
                "only_tradeable"}
# The plan levels of watchlist symbols come from a scan of just them, without the pre-screen.
_WATCH_OPTIONS: dict[str, Any] = {"min_price": 0.0, "min_dollar_volume": 0.0,
                                  "min_market_cap": 0.0, "min_history": 1,
                                  "max_stale_sessions": 5}


def default_send(target: dict[str, Any], message: Message) -> Delivery:
    """The notify package's sender: validate the stored target dict, deliver (never raises)."""
    import importlib

    # Imported by name: the senders are built beside the runner (technic_v4.notify).
    try:
        targets = importlib.import_module("technic_v4.notify.targets")
        send = importlib.import_module("technic_v4.notify.send")
    except ImportError as e:
        return Delivery(str(target.get("name")), False, 0, f"no sender installed ({e})")
    try:
        parsed = targets.parse_target(target)
    except ConfigError as e:
        return Delivery(str(target.get("name")), False, 0, f"invalid target: {e}")
    delivery: Delivery = send.deliver(parsed, message)
    return delivery


@dataclass
class SessionReport:
    session: dt.date
    ran: list[str] = field(default_factory=list)  # screens/watchlists computed and stored
    skipped: list[str] = field(default_factory=list)  # already stored: not recomputed
    failed: dict[str, str] = field(default_factory=dict)  # screen -> error (stored as failed)
    sent: int = 0
    dead: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.session.isoformat(), "ran": self.ran, "skipped": self.skipped,
                "failed": self.failed, "sent": self.sent, "dead": self.dead}


# -- evaluating many screens at once ---------------------------------------------------------------
def _group_key(cfg: ScanConfig) -> tuple[str, int]:
    return (cfg.model_dump_json(exclude=_SCREEN_ONLY), cfg.bars_needed)


def evaluate_screens(configs: dict[str, ScanConfig], data: MarketData, as_of: dt.date,
                     stats: dict[str, Any] | None = None
                     ) -> dict[str, pd.DataFrame | ConfigError]:
    """Each config's scan result as of a stored session (as ``pipeline.scan`` would return it),
    computed together: one panel load per width (the widest first; the L1 cache serves the
    others from it), stages 2-8 once per group of equal scan options, one Evaluator per group.
    A config the store cannot serve (a term needing more history) maps to its ConfigError.
    ``stats`` (when given) receives ``groups`` and ``computed`` (computations per term key)."""
    from collections import Counter

    from technic_v4.execution import get_backend
    from technic_v4.terms.engine import Evaluator
    from technic_v4.terms.kernels import Bars

    out: dict[str, pd.DataFrame | ConfigError] = {}
    if not configs:
        return out
    ref = data.reference()
    shares = data.shares_as_of(as_of)  # market cap as of a past session: its shares
    sess_days = data.sessions(as_of).astype(np.int64)
    stored = min(data.max_bars(), len(sess_days))
    groups: dict[tuple[str, int], list[str]] = {}
    for name, cfg in configs.items():
        try:
            pipeline.check_bars(cfg, stored, as_of)
        except ConfigError as e:
            out[name] = e
            continue
        groups.setdefault(_group_key(cfg), []).append(name)
    backend = get_backend(data.settings)
    computed: Counter[str] = Counter()
    for (_, width), names in sorted(groups.items(), key=lambda kv: -kv[0][1]):
        base = configs[names[0]]
        stages = pipeline._Stages(None, None)
        notes: list[str] = []
        long_panel = data.panel(as_of, width)
        panel = long_panel.tail(base.lookback)
        bench_close = None
        if base.lookback < pipeline.REGIME_BARS:
            i = np.flatnonzero(long_panel.symbols == pipeline.BENCHMARK)
            if len(i):
                bench_close = data.panel(as_of, pipeline.REGIME_BARS, count_rows=i).close[i[0]]
        _, alive = pipeline.universe(ref, as_of)
        _, alive = pipeline.smart_filter(base, ref, alive, notes)
        _, idx, row_of, mcap = pipeline.max_symbols(base, ref, panel, alive, shares)
        _, idx, rows = pipeline.pre_screen(base, panel, idx, row_of, mcap, sess_days, notes)
        _, cols, _ = pipeline.indicators(panel, rows, backend, stages.tick, notes)
        _, s, sig, _ = pipeline.scores(base, cols, panel, bench_close, notes)
        _, p = pipeline.plans_stage(base, cols, sig)
        sub_ref = pipeline.screen_ref(ref, idx, shares)
        builtin = pipeline.builtin_columns(ref, idx, mcap, cols, s, sig, p)
        ev = None
        for name in names:
            cfg = configs[name]
            if cfg.screen().active and len(idx):
                if ev is None:
                    ev = Evaluator(Bars.of(long_panel, rows), sub_ref, builtin,
                                   reuse_builtins=long_panel.close.shape[1] <= cfg.lookback)
                _, scr = pipeline.screen(cfg, long_panel, sub_ref, builtin, rows=rows,
                                         evaluator=ev)
            elif cfg.screen().active:
                _, scr = pipeline.screen(cfg, long_panel, sub_ref, builtin, rows=rows)
            else:
                _, scr = pipeline.no_screen(len(idx))
            _, frame = pipeline.output(cfg, ref, idx, mcap, cols, s, sig, p, scr)
            out[name] = frame
        if ev is not None:
            computed.update(ev.computed)
    if stats is not None:
        stats["groups"] = len(groups)
        stats["computed"] = computed
    return out


def result_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The stored part of a result: Symbol, Signal, TechRating, Entry, Stop, Target,
    PositionSize (NaN as None)."""
    recs = frame[list(RESULT_COLUMNS)].to_dict("records")
    return [{str(k): _clean(v) for k, v in r.items()} for r in recs]


def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def compare(prev: list[dict[str, Any]], cur: list[dict[str, Any]]) -> dict[str, Any]:
    """entered (in ``cur`` only), left (in ``prev`` only; their last row), changed (Signal)."""
    p = {r["Symbol"]: r for r in prev}
    c = {r["Symbol"]: r for r in cur}
    return {
        "entered": [r for s, r in c.items() if s not in p],
        "left": [r for s, r in p.items() if s not in c],
        "changed": [{"Symbol": s, "From": p[s]["Signal"], "To": r["Signal"]}
                    for s, r in c.items() if s in p and p[s]["Signal"] != r["Signal"]],
    }


def watch_levels(items: list[dict[str, Any]], plan: dict[str, dict[str, Any]]
                 ) -> dict[str, tuple[float | None, float | None]]:
    """(stop, target) per symbol: the user's own levels; a target from the user's entry and
    stop at the default reward/risk when only those are given; the plan's otherwise."""
    rr = ScanConfig().target_rr
    out: dict[str, tuple[float | None, float | None]] = {}
    for it in items:
        sym = it["symbol"]
        stop, target, entry = it.get("stop"), it.get("target"), it.get("entry")
        if target is None and entry is not None and stop is not None:
            target = entry + float(rr) * (entry - stop)
        row = plan.get(sym, {})
        out[sym] = (stop if stop is not None else row.get("Stop"),
                    target if target is not None else row.get("Target"))
    return out


def touched(watchlist: str, items: list[dict[str, Any]], plan: dict[str, dict[str, Any]],
            bars: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """Watchlist symbols whose stop (low <= stop) or target (high >= target) the session's bar
    ``bars[symbol] = (low, high)`` reached."""
    hits = []
    for sym, (stop, target) in watch_levels(items, plan).items():
        if sym not in bars:
            continue
        low, high = bars[sym]
        if stop is not None and low <= stop:
            hits.append({"Watchlist": watchlist, "Symbol": sym, "Level": "stop", "Price": stop,
                         "Low": low, "High": high})
        if target is not None and high >= target:
            hits.append({"Watchlist": watchlist, "Symbol": sym, "Level": "target",
                         "Price": target, "Low": low, "High": high})
    return hits


def session_bars(data: MarketData, session: dt.date, symbols: Iterable[str]
                 ) -> dict[str, tuple[float, float]]:
    """(low, high) of each symbol's bar on ``session`` (symbols without one are left out)."""
    ref = data.reference()
    symbols = list(symbols)
    pos = pd.Index(ref["Symbol"].astype(str)).get_indexer(pd.Index(symbols))
    wanted = [(s, int(i)) for s, i in zip(symbols, pos, strict=True) if i >= 0]
    if not wanted:
        return {}
    p = data.symbols_panel([i for _, i in wanted], session, 1)
    day = np.datetime64(session, "D").astype(np.int64)
    out = {}
    for k, (sym, _) in enumerate(wanted):
        if p.day[k, -1] == day and np.isfinite(p.low[k, -1]):
            out[sym] = (float(p.low[k, -1]), float(p.high[k, -1]))
    return out


# -- the run ---------------------------------------------------------------------------------------
def message_payload(msg: Message) -> dict[str, Any]:
    """The message as JSON-ready fields (its rows are plain dicts of scalars: no deep copy)."""
    d = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    d["session"] = msg.session.isoformat()
    return d


def payload_message(d: dict[str, Any]) -> Message:
    return Message(**{**d, "session": dt.date.fromisoformat(d["session"])})


def page_link(base: str | None, name: str, kind: str = "screen") -> str | None:
    """The web page showing a screen's (or watchlist's) last run, under ``base``."""
    from urllib.parse import quote

    return None if not base else f"{base.rstrip('/')}/#{kind}={quote(name)}"


def previous_session(data: MarketData, session: dt.date) -> dt.date | None:
    stored = data.store.stored_sessions()
    i = int(np.searchsorted(stored, np.datetime64(session, "D"))) - 1
    return None if i < 0 else stored[i].astype(dt.date)


def run_session(session: dt.date, *, catch_up: bool = False, state: StateStore | None = None,
                data: MarketData | None = None, send: Sender | None = None,
                names: Iterable[str] | None = None, link: str | None = None,
                update: bool = True) -> SessionReport:
    """Run every enabled saved screen and watchlist (or those in ``names``; a watchlist as
    ``watchlist:<name>``) for ``session``, store the runs with their outbox rows in one
    transaction, then send what is pending (see module docstring). A run already stored is not
    recomputed. ``link``: the web page's base URL for the messages (default
    ``TECHNIC_PUBLIC_URL``)."""
    from technic_v4 import data_engine

    data = data or data_engine.market()
    state = state or StateStore(data.settings.data_dir)
    rep = SessionReport(session)
    with FileLock(str(state.path) + ".run.lock", thread_local=False):
        page = link if link is not None else data.settings.public_url
        if update:
            data.ensure_current()
        stored = data.store.stored_sessions()
        if not (stored == np.datetime64(session, "D")).any():
            raise DataError(f"session {session} is not in the local store (latest: "
                            f"{data.store.last_session()}); it is run once its data is stored")
        wanted = None if names is None else set(names)
        # Before reading the screens: a screen updated after this is compared afresh next time.
        started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        screens = [s for s in state.screens(enabled_only=True)
                   if wanted is None or s["name"] in wanted]
        watch = [w for w in state.watchlists()
                 if wanted is None or WATCHLIST_PREFIX + w["name"] in wanted]
        prev_day = previous_session(data, session)
        known = state.runs_at([s["name"] for s in screens] +
                              [WATCHLIST_PREFIX + w["name"] for w in watch],
                              [session] + ([prev_day] if prev_day is not None else []))
        todo = []
        for s in screens:
            if (s["name"], session) in known:
                rep.skipped.append(s["name"])
            else:
                todo.append(s)
        configs = {s["name"]: ScanConfig(**s["config"]) for s in todo}
        now = evaluate_screens(configs, data, session) if configs else {}
        baseline: dict[str, list[dict[str, Any]]] = {}
        need_prev: dict[str, ScanConfig] = {}
        for s in todo:
            old = known.get((s["name"], prev_day)) if prev_day is not None else None
            # A screen edited (or re-created) since that run is compared with its config as
            # saved now, as of the previous session, not with what another config found.
            if old is not None and old.status == "done" and s["updated_at"] <= old.started_at:
                baseline[s["name"]] = old.rows
            elif prev_day is not None:
                need_prev[s["name"]] = configs[s["name"]]
        if need_prev and prev_day is not None:
            for name, res in evaluate_screens(need_prev, data, prev_day).items():
                baseline[name] = result_rows(res) if isinstance(res, pd.DataFrame) else []
        new: list[NewRun] = []
        for s in todo:
            name = s["name"]
            res = now[name]
            if isinstance(res, ConfigError):
                rep.failed[name] = str(res)
                new.append(NewRun(name, session, started, catch_up, [], {"error": str(res)}, [],
                                  "failed"))
                continue
            rows = result_rows(res)
            changes = compare(baseline.get(name, []), rows)
            msg = Message(name, session, changes["entered"], changes["left"],
                          changes["changed"], link=page_link(page, name), catch_up=catch_up)
            outbox = [] if msg.empty else [(t, message_payload(msg)) for t in s["targets"]]
            new.append(NewRun(name, session, started, catch_up, rows, changes, outbox))
        watch = [w for w in watch if (WATCHLIST_PREFIX + w["name"], session) not in known]
        new += _watchlist_runs(watch, data, session, prev_day, catch_up, page, started)
        for run, run_id in zip(new, state.store_runs(new), strict=True):
            if run_id is not None and run.status == "done":
                rep.ran.append(run.name)
        sent, dead = flush(state, send)
        rep.sent, rep.dead = sent, dead
    return rep


def _watchlist_runs(todo: list[dict[str, Any]], data: MarketData, session: dt.date,
                    prev_day: dt.date | None, catch_up: bool, link: str | None,
                    started: dt.datetime) -> list[NewRun]:
    if not todo:
        return []
    symbols = sorted({it["symbol"] for w in todo for it in w["items"]})
    plan: dict[str, dict[str, Any]] = {}
    current: dict[str, dict[str, Any]] = {}
    if symbols:
        cfg = ScanConfig(symbols=symbols, **_WATCH_OPTIONS)
        for day, into in ((prev_day, plan), (session, current)):
            if day is None:
                continue
            res = evaluate_screens({"watch": cfg}, data, day)["watch"]
            if isinstance(res, pd.DataFrame):
                into.update({r["Symbol"]: r for r in result_rows(res)})
    bars = session_bars(data, session, symbols)
    out = []
    for w in todo:
        hits = touched(w["name"], w["items"], plan, bars)
        rows = [current[it["symbol"]] for it in w["items"] if it["symbol"] in current]
        levels = {s: {"Stop": st, "Target": tg} for s, (st, tg) in
                  watch_levels(w["items"], plan).items()}
        msg = Message(WATCHLIST_PREFIX + w["name"], session, touched=hits,
                      link=page_link(link, w["name"], "watchlist"), catch_up=catch_up)
        outbox = [] if msg.empty else [(t, message_payload(msg)) for t in w["targets"]]
        out.append(NewRun(WATCHLIST_PREFIX + w["name"], session, started, catch_up, rows,
                          {"touched": hits, "levels": levels}, outbox))
    return out


def resume(state: StateStore, send: Sender | None = None) -> tuple[int, int]:
    """Send what a killed run left pending, taking turns with runs in this data dir."""
    with FileLock(str(state.path) + ".run.lock", thread_local=False):
        return flush(state, send)


def flush(state: StateStore, send: Sender | None = None) -> tuple[int, int]:
    """Send every pending outbox row; returns (sent, dead). Rows of different targets go out in
    parallel (one failing target never delays another), a target's rows in order."""
    send = send or default_send
    pending = state.outbox("pending")
    by_target: dict[str, list[OutboxRow]] = {}
    for row in pending:
        by_target.setdefault(row.target, []).append(row)
    if not by_target:
        return 0, 0
    targets = {t["name"]: t for t in state.targets()}

    def one_target(rows: list[OutboxRow]) -> tuple[int, int]:
        sent = dead = 0
        for row in rows:
            spec = targets.get(row.target)
            if spec is None:
                state.mark(row.id, "dead", 0, f"alert target {row.target!r} was removed")
                dead += 1
                continue
            try:
                d = send(spec, payload_message(row.payload))
            except TechnicError as e:  # a sender is not meant to raise; record, never lose
                d = Delivery(row.target, False, 1, " ".join(str(e).split()))
            if d.ok:
                state.mark(row.id, "sent", d.attempts, None)
                sent += 1
            else:
                state.mark(row.id, "dead", d.attempts, " ".join((d.error or "failed").split()))
                dead += 1
                log.warning("alert to %s for %s %s failed: %s", row.target,
                            row.payload.get("screen"), row.payload.get("session"), d.error)
        return sent, dead

    with ThreadPoolExecutor(max_workers=min(8, len(by_target))) as pool:
        results = list(pool.map(one_target, by_target.values()))
    return sum(r[0] for r in results), sum(r[1] for r in results)
