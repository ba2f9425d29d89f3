"""``technic bench``: measure scans on this machine and write a markdown report.

Every number comes from this run, on the embedded market in temporary stores, each measurement
in its own child process so that "cold" really is cold:
- cold process: an empty store, ``technic scan`` builds it and scans;
- warm process: ``technic scan`` on a filled store (median of repeats);
- first scan: the first ``run_scan`` in a fresh process (store -> panel -> table);
- warm in-process: repeated ``run_scan`` with the panel in the L1 cache (median);
- baseline: the predecessor's way on the same data in the same child (one pandas frame per
  symbol, per-symbol TA-Lib calls in a 32-thread pool), as a ratio;
- a scan as of a past date (bars adjusted as of it), first and warm;
- 50,000 listings, local threads and Ray; historical scans over many dates, local and Ray;
- a replay (``technic backtest``) of a 10-clause screen over the last 250 sessions, and its ratio
  to one scan per session;
- replays over 20 years (5 with ``--quick``) of 1,500 / 3,000 / 6,000 listings at 250 ... 4,995
  sessions (the scaling curve), the issue's target ``backtest.run`` with its own peak RSS, and
  its ratio to one scan per session;
- with ``--ray-big``: the replay over 50,000 listings x 20 years on a local multi-node Ray
  cluster (tasks/s, peak RSS, the projection to N nodes);
- the backtest statistics kernels (forward returns, IC, deciles, turnover, screen stats) on a
  6,000 x 5,000-session synthetic panel;
- backtest trade plans: 10^6 signals played out over 6,000 × 5,000 bars, and the portfolio;
- with ``--ray-big``: the replay of the 10-clause screen over 50,000 listings x 20 years on a
  local multi-node Ray cluster (:func:`ray_replay_bench`), and its projection to N nodes;
- the embedded market's build (reference, actions, every session's bars in the fetch planner's
  chunks): the default one, and 20 years of 6,000 listings with its peak RSS and a cold
  ``technic scan`` on it (full runs only).
Scans of N listings use every listing type (so that N listings really enter the pre-screen).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (100, 2639, 5000, 6000)

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from technic_v4.scanner_core import run_scan, ScanConfig
from technic_v4 import data_engine
from technic_v4.universe.gics import TYPES
t_import = time.perf_counter() - t0
args = json.loads(sys.argv[1])
out = {"import_s": t_import, "rows": {}}
def cfg(n):
    return ScanConfig(max_symbols=n, types=TYPES)
t = time.perf_counter(); df, msg = run_scan(cfg(args["sizes"][-1]))
out["first_scan_s"] = time.perf_counter() - t
out["first_msg"] = msg
out["execution"] = df.attrs["stats"]["execution"]
for n in args["sizes"]:
    data_engine.clear_memory_cache()
    t = time.perf_counter(); df, _ = run_scan(cfg(n)); cold = time.perf_counter() - t
    times = []
    for _ in range(args["repeats"]):
        t = time.perf_counter(); df, msg = run_scan(cfg(n))
        times.append(time.perf_counter() - t)
    st = df.attrs["stats"]
    pre = next(s for s in st["stages"] if s["stage"] == "pre_screen")
    out["rows"][str(n)] = {"l1_cold_s": cold, "warm_s": sorted(times)[len(times) // 2],
                           "listings": pre["in"], "scanned": pre["out"], "rows": len(df),
                           "api_calls": st["counters"]["api_calls_total"],
                           "hit_rate": st["counters"]["hit_rate"]}
if args.get("stages"):
    # The default scan (stock types, default filters), warm: total and each stage's seconds.
    import statistics
    run_scan(ScanConfig())
    times, stages = [], {}
    for _ in range(args["stages"]):
        t = time.perf_counter(); df, _ = run_scan(ScanConfig())
        times.append(time.perf_counter() - t)
        st = df.attrs["stats"]
        for s in st["stages"]:
            stages.setdefault(s["stage"], []).append(s["seconds"])
        stages.setdefault("panel load", []).append(st["panel_seconds"])
    out["default"] = {"warm_s": statistics.median(times), "min_s": min(times), "rows": len(df),
                      "repeats": len(times),
                      "stages": {k: statistics.median(v) for k, v in stages.items()}}
if args.get("screens"):
    # What screens cost on the default scan, warm: a 10-clause screen over 4 indicator
    # functions, and all 61 candlestick patterns as output columns (TA-Lib's values over each
    # row's whole history), each against the plain scan alternated in the same loop; compiling.
    import statistics
    from technic_v4.terms.catalog import CANDLESTICKS
    from technic_v4.terms.language import compile as compile_screen
    where = ("close > sma(close,150) and sma(close,150) > sma(close,200) and rsi(close,2) < 90 "
             "and rsi(close,14) > 40 and volume > 0.5 * sma(volume,20) and close > 5 "
             "and atr(20) / close < 0.1 and close >= 0.7 * highest(high,252) "
             "and change(close,21) > -20 and dollar_volume > 1e6")
    candles = {f"C_{n}": f"cdl_{n}()" for n in CANDLESTICKS}
    configs = {"plain": ScanConfig(), "where": ScanConfig(where=where),
               "candles": ScanConfig(columns=candles)}
    times = {k: [] for k in configs}
    rows = {}
    for k, c in configs.items():
        run_scan(c)  # compile kernels, warm caches
    for _ in range(args["screens"]):
        for k, c in configs.items():
            t = time.perf_counter(); df, _ = run_scan(c); times[k].append(time.perf_counter() - t)
            rows[k] = len(df)
    med = {k: statistics.median(v) for k, v in times.items()}
    texts = [f"{where} and close > {i}" for i in range(200)]
    t = time.perf_counter()
    for x in texts:
        compile_screen(x)
    uncached = (time.perf_counter() - t) / len(texts)
    t = time.perf_counter()
    for x in texts:
        compile_screen(x)
    cached = (time.perf_counter() - t) / len(texts)
    out["screens"] = {"plain_s": med["plain"], "where_s": med["where"],
                      "candles_s": med["candles"], "where_rows": rows["where"],
                      "plain_rows": rows["plain"], "repeats": args["screens"],
                      "compile_uncached_s": uncached, "compile_cached_s": cached}
if args.get("past"):
    # A scan as of a past date (``past`` sessions back): bars adjusted as of that date.
    import statistics
    md = data_engine.market()
    sess = md.sessions(md.store.last_session())
    day = sess[-args["past"]].astype(object)
    c = ScanConfig(as_of_date=day)
    t = time.perf_counter(); df, _ = run_scan(c); first = time.perf_counter() - t
    times = []
    for _ in range(args["repeats"]):
        t = time.perf_counter(); df, _ = run_scan(c); times.append(time.perf_counter() - t)
    p = md.panel(day, c.bars_needed)
    out["past"] = {"as_of": str(day), "back": args["past"], "first_s": first,
                   "warm_s": statistics.median(times), "rows": len(df),
                   "adjusted_rows": 0 if p.raw is None else len(p.raw.rows)}
if args.get("history"):
    from technic_v4.history import scan_history
    md = data_engine.market()
    sess = md.sessions(md.store.last_session())
    dates = [d.astype(object) for d in sess[-args["history"] * 5::5]]
    t = time.perf_counter(); h = scan_history(ScanConfig(), dates); hs = time.perf_counter() - t
    out["history"] = {"dates": len(dates), "seconds": hs, "rows": len(h),
                      "backend": h.attrs["stats"]["backend"]["backend"]}
# The scans' own peak, before the replay below holds every stored bar of the market.
out["scan_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if args.get("replay"):
    # The replay of a 10-clause screen over the last N sessions (every session, lookback_days
    # None: every stored bar), warm, against one scan per session (scan_history, 5 sessions).
    from technic_v4.backtest import replay
    from technic_v4.history import scan_history
    md = data_engine.market()
    sess = md.sessions(md.store.last_session())
    start, end = sess[-args["replay"]].astype(object), sess[-1].astype(object)
    from technic_v4.bench import REPLAY_WHERE
    cfg = ScanConfig(where=REPLAY_WHERE)
    replay(cfg, start, end)  # compiled kernels, panel in memory
    t = time.perf_counter(); rep = replay(cfg, start, end); rs = time.perf_counter() - t
    few = [d.astype(object) for d in sess[-5:]]
    t = time.perf_counter()
    scan_history(cfg.model_copy(update={"lookback_days": None}), few)
    per = (time.perf_counter() - t) / len(few)
    out["replay"] = {"sessions": len(rep.sessions), "seconds": rs, "rows": len(rep.matches),
                     "pairs": rep.stats["pairs"], "bars": rep.stats["bars"],
                     "listings": rep.stats["listings"], "per_session_s": per,
                     "steps": rep.stats["seconds_by_step"]}
if args.get("baseline"):
    from technic_v4.bench import baseline
    out["baseline"] = baseline(args["sizes"][-1])
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH " + json.dumps(out))
"""


def baseline(n: int) -> dict[str, Any]:
    """The predecessor's way: per-symbol frames, per-symbol TA-Lib calls, 32 threads."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pandas as pd

    try:
        import talib
    except ImportError:
        return {"skipped": "ta-lib not installed (run pip install -e '.[test]' in the technic "
                           "checkout)"}
    from technic_v4 import data_engine
    from technic_v4.config.scan import ScanConfig
    from technic_v4.scanner_core import run_scan
    from technic_v4.universe.gics import TYPES

    df, _ = run_scan(ScanConfig(max_symbols=n, types=TYPES))
    symbols = df["Symbol"].tolist()

    def one(frame: Any) -> dict[str, float]:
        # As the predecessor did per symbol: pandas columns, TA-Lib calls, a dict per row.
        c, h, lo = (frame[k].to_numpy(np.float64) for k in ("Close", "High", "Low"))
        macd, sig, hist = talib.MACD(c, 12, 26, 9)
        up, mid, dn = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
        ret = frame["Close"].pct_change()
        return {"SMA20": talib.SMA(c, 20)[-1], "SMA50": talib.SMA(c, 50)[-1],
                "SMA200": talib.SMA(c, 200)[-1], "EMA21": talib.EMA(c, 21)[-1],
                "RSI14": talib.RSI(c, 14)[-1], "MACD": macd[-1], "MACDSignal": sig[-1],
                "MACDHist": hist[-1], "ATR14": talib.ATR(h, lo, c, 14)[-1],
                "ADX14": talib.ADX(h, lo, c, 14)[-1], "PlusDI14": talib.PLUS_DI(h, lo, c, 14)[-1],
                "MinusDI14": talib.MINUS_DI(h, lo, c, 14)[-1], "BBUpper": up[-1],
                "BBMiddle": mid[-1], "BBLower": dn[-1],
                "High52W": frame["High"].rolling(252, min_periods=1).max().iloc[-1],
                "DollarVolume20": (frame["Close"] * frame["Volume"]).rolling(20).mean().iloc[-1],
                "RealizedVol20": float(np.log1p(ret).tail(20).std() * np.sqrt(252)),
                "Return21D": float(frame["Close"].iloc[-1] / frame["Close"].iloc[-22] - 1)}

    t = time.perf_counter()
    frames = data_engine.get_price_history_batch(symbols, 300)
    with ThreadPoolExecutor(32) as ex:
        rows = list(ex.map(one, frames.values()))
    pd.DataFrame(rows, index=list(frames)).sort_values("RSI14")
    return {"seconds": time.perf_counter() - t, "symbols": len(frames)}


# The embedded market's build, as the fetch planner drives it: reference data, the corporate
# actions, then every session's bars in CHUNK_SESSIONS-session calls (each batch dropped once
# counted, as the planner drops it once stored). Peak RSS is this child's own.
_BUILD = r"""
import datetime as dt, json, resource, sys, time
from technic_v4.data.fill import CHUNK_SESSIONS
from technic_v4.data.providers.synthetic import SyntheticProvider
a = json.loads(sys.argv[1])
t = time.perf_counter()
p = SyntheticProvider(n_listings=a["listings"], epoch=dt.date.fromisoformat(a["epoch"]),
                      end=dt.date.fromisoformat(a["end"]))
ref = p.reference()
acts = p.actions(p.first_session())
days = [d.astype(dt.date) for d in p.sessions]
rows = sum(len(p.bars_for_sessions(days[i:i + CHUNK_SESSIONS]))
           for i in range(0, len(days), CHUNK_SESSIONS))
print("BENCH " + json.dumps({
    "seconds": time.perf_counter() - t, "sessions": len(days), "listings": len(ref),
    "rows": rows, "splits": int((acts["Type"] == "split").sum()),
    "dividends": int((acts["Type"] == "dividend").sum()),
    "delisted": int(ref["Delisted"].notna().sum()),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# A CLI command in this child, reporting the child's own peak RSS after it.
_CLI_RSS = r"""
import json, resource, runpy, sys
sys.argv = ["technic", *json.loads(sys.argv[1])]
try:
    runpy.run_module("technic_v4.cli", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
print("BENCH " + json.dumps({"peak_rss_mb":
                             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

LONG_EPOCH = "2006-01-03"  # 20 years of embedded market


def build_bench(env: dict[str, str], full: bool) -> dict[str, Any]:
    """The embedded market's build: default (median of 3), and in full runs 20 years of 6,000
    listings (build, and a cold ``technic scan`` filling a store from it)."""
    from technic_v4.data.calendar import latest_completed_session

    end = env.get("TECHNIC_SYNTHETIC_END") or str(latest_completed_session())
    args = {"listings": 6000, "epoch": "2023-01-03", "end": end}
    runs = [_child(env, ["-c", _BUILD, json.dumps(args)])[1] or {} for _ in range(3)]
    out: dict[str, Any] = {"default": sorted(runs, key=lambda r: r["seconds"])[1]}
    if full:
        _, out["long"] = _child(env, ["-c", _BUILD, json.dumps({**args, "epoch": LONG_EPOCH})])
        with tempfile.TemporaryDirectory(prefix="technic-bench-long-") as tmp:
            env_long = {**env, "TECHNIC_DATA_DIR": tmp, "TECHNIC_SYNTHETIC_LISTINGS": "6000",
                        "TECHNIC_SYNTHETIC_EPOCH": LONG_EPOCH, "TECHNIC_SYNTHETIC_END": end}
            cli = ["scan", "--format", "csv", "-o", str(Path(tmp) / "o.csv")]
            out["long_scan_s"], out["long_scan"] = _child(env_long,
                                                          ["-c", _CLI_RSS, json.dumps(cli)])
    return out


_VENDOR_SERVER = r"""
import sys, datetime as dt
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.vendor_server import VendorServer
p = SyntheticProvider(n_listings=int(sys.argv[1]), epoch=dt.date.fromisoformat(sys.argv[3]),
                      end=dt.date.fromisoformat(sys.argv[4]))
srv = VendorServer(p, api_key="bench-key", delay_s=float(sys.argv[2])).start()
print(srv.url, flush=True)
sys.stdin.read()
"""


def vendor_bench(listings: int = 6000, sessions: int = 320, delay_s: float = 0.02
                 ) -> dict[str, Any]:
    """The data layer against the loopback vendor (in its own process, ``delay_s`` per
    request): reference data once, a cold fill of ``sessions`` sessions, a one-session daily
    update, and a second instance filling from Redis."""
    from technic_v4.config.settings import Settings
    from technic_v4.data import calendar
    from technic_v4.data.market import MarketData
    from technic_v4.data.providers.polygon import PolygonProvider
    from technic_v4.testing import RedisServer

    end = calendar.latest_completed_session()
    sess = calendar.sessions_between(dt.date(2000, 1, 3), end)
    start, day_before = sess[-sessions - 1].astype(dt.date), sess[-2].astype(dt.date)
    epoch = sess[-sessions - 30].astype(dt.date)
    out: dict[str, Any] = {"listings": listings, "sessions": sessions, "delay_ms": delay_s * 1e3}
    srv = subprocess.Popen([sys.executable, "-c", _VENDOR_SERVER, str(listings), str(delay_s),
                            str(epoch), str(end)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    try:
        url = (srv.stdout.readline() if srv.stdout else "").strip()
        with tempfile.TemporaryDirectory(prefix="technic-vbench-") as tmp, RedisServer() as rs:
            def provider(until: dt.date) -> PolygonProvider:
                return PolygonProvider("bench-key", base_url=url, cache_dir=Path(tmp) / "ref",
                                       end=until, history_start=start)

            def market(name: str, prov: PolygonProvider) -> MarketData:
                s = Settings(data_dir=Path(tmp) / name, progress=False, redis_url=rs.url)
                return MarketData(settings=s, provider=prov)

            p = provider(day_before)
            t = time.perf_counter()
            p.reference()
            out["reference_s"], out["reference_requests"] = time.perf_counter() - t, dict(
                p.request_counts)
            a = market("a", p)
            before = sum(p.request_counts.values())
            t = time.perf_counter()
            rep = a.ensure_current()
            out["cold_fill_s"] = time.perf_counter() - t
            out["cold_fill_sessions"] = len(rep.sessions_fetched)
            out["cold_fill_requests"] = sum(p.request_counts.values()) - before
            a.close()
            p2 = provider(end)
            a = market("a", p2)
            t = time.perf_counter()
            rep = a.ensure_current()
            out["daily_s"] = time.perf_counter() - t
            out["daily_requests"] = {k: v for k, v in p2.request_counts.items() if v}
            a.close()
            p3 = provider(end)
            b = market("b", p3)
            from technic_v4.config.scan import ScanConfig
            from technic_v4.pipeline import scan

            t = time.perf_counter()
            res = scan(ScanConfig(), b)
            out["redis_instance_s"] = time.perf_counter() - t
            out["redis_instance_requests"] = sum(p3.request_counts.values())
            out["redis_instance_rows"] = len(res.frame)
            b.close()
    finally:
        if srv.stdin:
            srv.stdin.close()
        srv.wait(timeout=30)
    return out


def trades_bench(listings: int = 6000, sessions: int = 5000, signals: int = 1_000_000,
                 repeats: int = 3) -> dict[str, Any]:
    """Plan simulation and the equal-risk portfolio on a random-walk panel (compute only; the
    first call compiles or loads the numba cache and is not counted). Medians of repeats."""
    import numpy as np

    from technic_v4.backtest.trades import simulate_portfolio, simulate_trades

    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (listings, sessions)), axis=1))
    open_ = close * np.exp(rng.normal(0.0, 0.005, close.shape))
    high, low = np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99
    lst = rng.integers(0, listings, signals)
    ses = rng.integers(0, sessions - 1, signals)
    entry = close[lst, ses]
    kw: dict[str, Any] = {"listing": lst, "session": ses, "stop": entry * 0.95,
                          "target": entry * 1.10, "rank": rng.random(signals), "max_hold": 20}
    simulate_portfolio(simulate_trades(open_[:1, :3], high[:1, :3], low[:1, :3], close[:1, :3],
                                       listing=[0], session=[0], stop=[1.0], target=[2.0]),
                       close[:1, :3])
    sim, port = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        trades = simulate_trades(open_, high, low, close, **kw)
        sim.append(time.perf_counter() - t)
        t = time.perf_counter()
        simulate_portfolio(trades, close, max_positions=20)
        port.append(time.perf_counter() - t)
    return {"listings": listings, "sessions": sessions, "signals": signals,
            "simulate_s": statistics.median(sim), "portfolio_s": statistics.median(port)}


# A replay over many years of a stored market: the issue's target run (6,000 listings x 20
# years, the 10-clause screen, TechRating IC, forward returns at 4 horizons, plans played out)
# and the scaling curve over listings x sessions. One child per store: its peak RSS is its own.
_REPLAY_CHILD = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
from technic_v4.testing import make_market
from technic_v4.config.scan import ScanConfig
from technic_v4.backtest import replay, run
from technic_v4.bench import REPLAY_WHERE
a = json.loads(sys.argv[1])
t = time.perf_counter()
md = make_market(Path(a["path"]), n=a["listings"], epoch=dt.date.fromisoformat(a["epoch"]),
                 end=dt.date.fromisoformat(a["end"]))
md.ensure_current(progress=False)
out = {"listings": a["listings"], "fill_s": time.perf_counter() - t, "curve": []}
sess = md.store.stored_sessions()
cfg = ScanConfig(where=REPLAY_WHERE, top_n=a.get("top_n"))
end = sess[-1].astype(dt.date)
for n in a["sessions"]:
    start = sess[-n].astype(dt.date)
    replay(cfg, start, end, data=md)  # compiled kernels, panel in memory: warm
    t = time.perf_counter(); r = replay(cfg, start, end, data=md); sec = time.perf_counter() - t
    out["curve"].append({"sessions": len(r.sessions), "seconds": sec, "pairs": r.stats["pairs"],
                         "rows": len(r.matches), "steps": r.stats["seconds_by_step"]})
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if a.get("run"):
    start = sess[-a["sessions"][-1]].astype(dt.date)
    del r
    from technic_v4 import heap
    heap.trim()
    try:  # the run's own peak: reset the high-water mark (Linux) after the curve's replays
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t = time.perf_counter()
    res = run(cfg, start, end, horizons=(1, 5, 21, 63), rank_by="TechRating", max_hold=20,
              data=md)
    out["run"] = {"seconds": time.perf_counter() - t, "rows": len(res.matches),
                  "sessions": len(res.replay.sessions),
                  "trades": int(res.analyses["trade_summary"]["signals"]),
                  "replay_steps": res.replay.stats["seconds_by_step"],
                  "replay_s": res.replay.stats["seconds"],
                  "analyses": res.seconds_by_step,
                  "peak_rss_mb": hwm_mb(), "peak_is_the_runs": reset}
    del res
    from technic_v4.history import scan_history
    few = [d.astype(object) for d in sess[-5:]]
    t = time.perf_counter()
    scan_history(cfg.model_copy(update={"lookback_days": None}), few, data=md)
    out["per_session_s"] = (time.perf_counter() - t) / len(few)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH " + json.dumps(out))
"""

REPLAY_WHERE = ("close > sma(close,150) and sma(close,150) > sma(close,200) and rsi(close,2) < 90 "
                "and rsi(close,14) > 40 and volume > 0.5 * sma(volume,20) and close > 5 "
                "and atr(20) / close < 0.1 and close >= 0.7 * highest(high,252) "
                "and change(close,21) > -20 and dollar_volume > 1e6")


def replay_bench(quick: bool = False, root: Path | None = None) -> dict[str, Any]:
    """The 20-year target run (full) and the scaling curve: for each store size, replays of
    the last N sessions, warm (each measured after one unmeasured run). Stores are built under
    ``root`` (a temporary directory by default) and reused when present."""
    years = 5 if quick else 20
    sizes = (1000, 2000) if quick else (1500, 3000, 6000)
    lengths = [250, 950] if quick else [250, 1250, 2500, 4995]  # 260 warm-up sessions left
    env = {**os.environ, "TECHNIC_PROGRESS": "false", "TECHNIC_USE_RAY": "false"}
    out: dict[str, Any] = {"years": years, "stores": []}
    with tempfile.TemporaryDirectory(prefix="technic-bench-replay-") as tmp:
        base = root or Path(tmp)
        end = dt.date(2026, 11, 20)
        epoch = dt.date(end.year - years, 1, 2)
        for n in sizes:
            args = {"path": str(base / f"m{n}y{years}"), "listings": n,
                    "epoch": epoch.isoformat(), "end": end.isoformat(), "sessions": lengths,
                    "run": n == sizes[-1]}
            _, got = _child(env, ["-c", _REPLAY_CHILD, json.dumps(args)])
            out["stores"].append(got)
    return out


# Backtest statistics kernels on a seeded synthetic panel (listings start at random sessions, so
# the panel has the NaN head a real history has): forward returns at every horizon (with a
# benchmark), IC decay, deciles, turnover, rank autocorrelation and a boolean screen's stats.
_BACKTEST_CHILD = r"""
import json, os, resource, sys, time
import numpy as np
from technic_v4.backtest import metrics as M, returns as R
a = json.loads(sys.argv[1])
n, t, hs = a["listings"], a["sessions"], tuple(a["horizons"])
w = os.cpu_count() or 1
rng = np.random.default_rng(0)
close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, t)), axis=1))
open_ = close * np.exp(rng.normal(0, 0.005, (n, t)))
score = rng.normal(size=(n, t))
late = np.arange(t)[None, :] < rng.integers(0, t // 2, n)[:, None]
close[late] = open_[late] = score[late] = np.nan
matched = score > 1.5
def run(o, c, s, m, steps):
    def step(name, f):
        t0 = time.perf_counter(); r = f(); steps[name] = time.perf_counter() - t0; return r
    fw = step("forward returns", lambda: R.forward_return_panels(
        o, c, hs, benchmark_open=o[0], benchmark_close=c[0], workers=w))
    sp = step("sort the score", lambda: M.prepare_score(s, workers=w))
    step("IC decay", lambda: M.ic_decay(sp, {h: f.raw for h, f in fw.items()}, workers=w))
    q = step("deciles", lambda: M.quantize(sp, 10))
    step("mean return by decile", lambda: [M.mean_return_by_quantile(q, f.raw, 10)
                                           for f in fw.values()])
    step("turnover + rank autocorrelation", lambda: (M.quantile_turnover(q, 10),
                                                      M.rank_autocorrelation(sp)))
    step("screen stats (raw + excess)", lambda: [M.screen_stats(m, x) for f in fw.values()
                                                 for x in (f.raw, f.over_universe)])
run(open_[:50, :200], close[:50, :200], score[:50, :200], matched[:50, :200], {})
steps = {}
r0 = resource.getrusage(resource.RUSAGE_SELF)
t0 = time.perf_counter(); run(open_, close, score, matched, steps)
r1 = resource.getrusage(resource.RUSAGE_SELF)
out = {"listings": n, "sessions": t, "horizons": list(hs), "workers": w,
       "seconds": time.perf_counter() - t0,
       "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
       "steps": steps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print("BENCH " + json.dumps(out))
"""


_DAILY_CHILD = r"""
import datetime as dt, json, statistics, sys, tempfile, time
from pathlib import Path
from technic_v4.config.settings import Settings
from technic_v4.daily.run import run_session
from technic_v4.daily.state import StateStore
from technic_v4.data import calendar
from technic_v4.data.market import MarketData
from technic_v4.notify import Delivery
args = json.loads(sys.argv[1])
end = dt.date.fromisoformat(args["end"])
prev = calendar.session_on_or_before(end - dt.timedelta(days=1))
base = Path(args["dir"])
def market(day):
    return MarketData(Settings(data_dir=base / "data", synthetic_end=day, progress=False,
                               synthetic_listings=args["listings"]))
WHERES = ["close > sma(close, 50) and RSI14 < {k}", "rsi(close, 2) < {k} and close > SMA200",
          "close > highest(high, {k})[1]", "change(close, 21) > {k} / 100",
          "volume > 1.5 * sma(volume, 50) and close > open and RSI14 > {k}",
          'rank(change(close, 126), by="sector") >= {k} + 40', "atr(14) / close < {k} / 1000",
          "crossed_above(ema(close, 10), sma(close, {k}))",
          "close < lowest(low, {k})[1] * 1.05", "TechRating > {k} + 30"]
def screens(st):
    for i in range(args["screens"]):
        k = 10 + 5 * (i // len(WHERES))
        opts = [{}, {"top_n": 25}, {"min_tech_rating": 40}, {"sectors": ["Energy"]}][i % 4]
        st.put_screen(f"s{i}", {"where": WHERES[i % len(WHERES)].format(k=k), **opts}, True,
                      ["sink"])
sent = []
def sink(target, message):
    sent.append(message.screen)
    return Delivery(target["name"], True, 1)
def fresh_state(name):
    st = StateStore(base / name)
    st.put_target({"name": "sink", "kind": "webhook", "url": "http://127.0.0.1:9/"})
    screens(st)
    return st
md = market(prev)
md.ensure_current()
st = fresh_state("state0")
run_session(prev, state=st, data=md, send=sink)  # yesterday's runs; compiles the kernels
md2 = market(end)  # the next session: the provider has one session the store lacks
t = time.perf_counter()
rep = run_session(end, state=st, data=md2, send=sink)
daily_s = time.perf_counter() - t
warm = []
for r in range(args["repeats"]):
    st_r = fresh_state(f"state{r + 1}")
    run_session(prev, state=st_r, data=md2, send=sink, update=False)
    t = time.perf_counter()
    run_session(end, state=st_r, data=md2, send=sink)
    warm.append(time.perf_counter() - t)
print("BENCH " + json.dumps({"daily_s": daily_s, "warm_s": statistics.median(warm),
                             "screens": args["screens"], "ran": len(rep.ran),
                             "notified": rep.sent, "listings": args["listings"]}))
"""


def daily_bench(listings: int = 6000, screens: int = 50, repeats: int = 3) -> dict[str, Any]:
    """The daily run of ``screens`` saved screens over the embedded market: a store that lacks
    the newest session is updated, every screen runs, changes are stored and sent to a sink."""
    with tempfile.TemporaryDirectory(prefix="technic-bench-daily-") as tmp:
        env = {**os.environ, "TECHNIC_PROGRESS": "false", "TECHNIC_USE_RAY": "false"}
        args = {"listings": listings, "screens": screens, "repeats": repeats,
                "end": "2026-11-20", "dir": tmp}
        _, data = _child(env, ["-c", _DAILY_CHILD, json.dumps(args)])
    assert data is not None
    return data


_RAY_BUILD = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
from technic_v4.testing import make_market
a = json.loads(sys.argv[1])
t = time.perf_counter()
md = make_market(Path(a["dir"]), n=a["listings"], epoch=dt.date.fromisoformat(a["epoch"]),
                 end=dt.date.fromisoformat(a["end"]))
md.ensure_current()
print("BENCH " + json.dumps({"seconds": time.perf_counter() - t,
                             "sessions": len(md.store.stored_sessions()),
                             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The replay of the 10-clause screen on a local multi-node Ray cluster (Ray's cluster_utils:
# one raylet per node on this machine), each task loading its listings from the store.
_RAY_REPLAY = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster
from technic_v4.backtest import replay
from technic_v4.config.scan import ScanConfig
from technic_v4.testing import make_market
a = json.loads(sys.argv[1])
mb = 1024 * 1024
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": a["cpus_per_node"], "object_store_memory": a["object_store_mb"] * mb,
    "include_dashboard": False})
try:
    for _ in range(a["nodes"] - 1):
        cluster.add_node(num_cpus=a["cpus_per_node"], object_store_memory=a["object_store_mb"] * mb)
    cluster.wait_for_nodes()
    md = make_market(Path(a["dir"]), n=a["listings"], epoch=dt.date.fromisoformat(a["epoch"]),
                     end=dt.date.fromisoformat(a["end"]), use_ray=True,
                     ray_address=cluster.address)
    sess = md.store.stored_sessions()
    cfg = ScanConfig(where=("close > sma(close,150) and sma(close,150) > sma(close,200) "
                            "and rsi(close,2) < 90 and rsi(close,14) > 40 and volume > 0.5 * "
                            "sma(volume,20) and close > 5 and atr(20) / close < 0.1 and close "
                            ">= 0.7 * highest(high,252) and change(close,21) > -20 and "
                            "dollar_volume > 1e6"))
    start = sess[a["warmup"]].astype(object)
    t = time.perf_counter()
    rep = replay(cfg, start, sess[-1].astype(object), every=a["every"], data=md)
    seconds = time.perf_counter() - t
    out = {"seconds": seconds, "sessions": len(rep.sessions), "listings": rep.stats["listings"],
           "bars": rep.stats["bars"], "pairs": rep.stats["pairs"], "rows": len(rep.matches),
           "runner": rep.stats["runner"], "steps": rep.stats["seconds_by_step"],
           "first": str(rep.sessions[0].date()), "last": str(rep.sessions[-1].date()),
           "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
finally:
    ray.shutdown()
    cluster.shutdown()
print("BENCH " + json.dumps(out))
"""


def ray_replay_bench(listings: int = 50_000, epoch: str = "2006-01-03", end: str = "2026-11-20",
                     every: int = 5, nodes: int = 2, cpus_per_node: int = 1,
                     data_dir: Path | None = None) -> dict[str, Any]:
    """The replay of the 10-clause screen over ``listings`` x every stored session from
    ``epoch`` (20 years by default) on a local Ray cluster of ``nodes`` raylets x
    ``cpus_per_node`` CPUs, at every ``every``-th session after a year of warm-up bars; the
    embedded market is built under ``data_dir`` (reused when already there; a temporary
    directory when None): its build time and disk size; sessions, listings, pairs, tasks,
    tasks/s, seconds, peak RSS of the driver and of the workers, and what the same run needs
    on N real nodes (tasks/s per CPU x CPUs, plus the driver's own steps)."""
    with tempfile.TemporaryDirectory(prefix="technic-bench-ray-") as tmp:
        where = Path(data_dir) if data_dir is not None else Path(tmp)
        env = {**os.environ, "TECHNIC_PROGRESS": "false", "TECHNIC_USE_RAY": "false"}
        args = {"dir": str(where), "listings": listings, "epoch": epoch, "end": end}
        out: dict[str, Any] = {"every": every, "nodes": nodes, "cpus_per_node": cpus_per_node}
        fresh = not any(where.glob("*.duckdb"))
        if fresh:
            _, out["build"] = _child(env, ["-c", _RAY_BUILD, json.dumps(args)])
        out["built_now"] = fresh
        out["disk_mb"] = sum(f.stat().st_size for f in where.rglob("*") if f.is_file()) / 1e6
        _, out["replay"] = _child(env, ["-c", _RAY_REPLAY, json.dumps({
            **args, "every": every, "nodes": nodes, "cpus_per_node": cpus_per_node,
            "warmup": 252, "object_store_mb": 2048})])
    r = out["replay"]
    run = r["runner"]
    cpus = run["cpus"]
    per_cpu = run["tasks"] / run["seconds"] / cpus  # tasks/s of one CPU on this machine
    driver_s = r["seconds"] - run["seconds"]  # cross-section, output, load: on the driver
    # N nodes run the tasks in waves of N x CPUs (no faster than one task per CPU at once).
    out["projection"] = {
        str(n): round(driver_s + -(-run["tasks"] // (n * cpus_per_node)) / per_cpu, 1)
        for n in (1, 4, 16, 64)}
    out["tasks_per_s_per_cpu"] = per_cpu
    out["driver_s"] = driver_s
    return out


def ray_big_report(b: dict[str, Any]) -> list[str]:
    """The Ray replay of :func:`ray_replay_bench`, as markdown lines."""
    r, run = b["replay"], b["replay"]["runner"]
    built = (f"built in {b['build']['seconds']:.0f} s (peak RSS "
             f"{b['build']['peak_rss_mb']:,.0f} MB), " if "build" in b else "")
    proj = ", ".join(f"{n} nodes ~{s:.0f} s" for n, s in b["projection"].items())
    return ["", f"Replay on a local Ray cluster ({run['nodes']} raylets x {b['cpus_per_node']} "
            f"CPU, tasks load their listings from the store): {r['listings']:,} listings x "
            f"{r['bars']:,} stored sessions ({built}{b['disk_mb']:,.0f} MB on disk), the "
            f"10-clause screen at one session in {b['every']}, {r['first']}..{r['last']} "
            f"({r['sessions']:,} sessions, {r['pairs']:,} scored pairs, {r['rows']:,} rows): "
            f"{r['seconds']:.1f} s, {run['tasks']:,} tasks on {run['nodes_used']} nodes, "
            f"{run['tasks_per_s']:.2f} tasks/s ({b['tasks_per_s_per_cpu']:.2f} per CPU); peak "
            f"RSS driver {r['driver_peak_rss_mb']:,.0f} MB, a worker "
            f"{run['worker_peak_rss_mb']:,.0f} MB. The same run on N nodes of "
            f"{b['cpus_per_node']} such CPU (waves of tasks at this machine's tasks/s per CPU, "
            f"plus the driver's "
            f"{b['driver_s']:.1f} s): {proj}."]


def _child(env: dict[str, str], args: list[str]) -> tuple[float, dict[str, Any] | None]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                       check=False)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {r.stderr[-3000:]}")
    data = None
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            data = json.loads(line[6:])
    return wall, data


def run_bench(quick: bool = False, listings: int = 6200, big: int = 50_000,
              ray: bool = True, vendor: bool = True, daily: bool = True,
              ray_big: bool = False, ray_big_dir: Path | None = None) -> str:
    """Run every measurement (see module docstring) and return the markdown report."""
    repeats = 3 if quick else 7
    proc_repeats = 2 if quick else 5
    res: dict[str, Any] = {"quick": quick, "listings": listings}
    with tempfile.TemporaryDirectory(prefix="technic-bench-") as tmp:
        env = {**os.environ, "TECHNIC_DATA_DIR": str(Path(tmp) / "std"),
               "TECHNIC_SYNTHETIC_LISTINGS": str(listings), "TECHNIC_PROGRESS": "false",
               "TECHNIC_USE_RAY": "false"}
        cli = ["-m", "technic_v4.cli", "scan", "--format", "csv", "-o", str(Path(tmp) / "o.csv")]
        res["cold_process_s"], _ = _child(env, cli)
        res["warm_process_s"] = [_child(env, cli)[0] for _ in range(proc_repeats)]
        args = {"sizes": list(SIZES), "repeats": repeats, "baseline": True, "history": 24,
                "stages": 3 * repeats, "screens": repeats, "past": 60,
                "replay": 60 if quick else 250}
        _, res["std"] = _child(env, ["-c", _CHILD, json.dumps(args)])
        if ray:
            env_ray = {**env, "TECHNIC_USE_RAY": "true"}
            _, res["std_ray"] = _child(env_ray, ["-c", _CHILD, json.dumps(
                {"sizes": [SIZES[-1]], "repeats": repeats, "history": 24})])
        if big:
            env_big = {**env, "TECHNIC_DATA_DIR": str(Path(tmp) / "big"),
                       "TECHNIC_SYNTHETIC_LISTINGS": str(big),
                       "TECHNIC_SYNTHETIC_EPOCH": "2025-04-01"}
            big_args = json.dumps({"sizes": [big], "repeats": repeats})
            res["big_fill_s"], res["big"] = _child(env_big, ["-c", _CHILD, big_args])
            if ray:
                _, res["big_ray"] = _child({**env_big, "TECHNIC_USE_RAY": "true"},
                                           ["-c", _CHILD, big_args])
        res["build"] = build_bench(env, full=not quick)
        _, res["backtest"] = _child(env, ["-c", _BACKTEST_CHILD, json.dumps(
            {"listings": 6000, "sessions": 1250 if quick else 5000, "horizons": [1, 5, 21, 63]})])
    res["big_listings"] = big
    if vendor:
        res["vendor"] = vendor_bench()
    res["trades"] = trades_bench(repeats=2 if quick else 3)
    res["replay"] = replay_bench(quick)
    if daily:
        res["daily"] = daily_bench(repeats=2 if quick else 3)
    if ray_big:
        res["ray_big"] = ray_replay_bench(listings=big or 50_000, data_dir=ray_big_dir)
    return report(res)


def report(res: dict[str, Any]) -> str:
    std = res["std"]
    rows = std["rows"]
    top = rows[str(SIZES[-1])]
    out = [
        "# technic benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; embedded market of {res['listings']:,} listings, every "
        f"listing type ({'quick' if res['quick'] else 'full'} run). Seconds; medians of "
        "repeats.",
        "",
        "| scan (in-process) | listings into pre-screen | scanned | rows | first, L1 cold "
        "| warm median | listings/s warm | vendor requests | hit rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        r = rows[str(n)]
        out.append(
            f"| max_symbols={n:,} | {r['listings']:,} | {r['scanned']:,} | {r['rows']:,} | "
            f"{r['l1_cold_s']:.3f} | {r['warm_s']:.3f} | {r['listings'] / r['warm_s']:,.0f} | "
            f"{r['api_calls']} | {r['hit_rate']:.1f}% |")
    if "screens" in std:
        sc = std["screens"]
        out += ["", f"Screens on the default scan, warm, in-process (medians of {sc['repeats']}, "
                "each alternated with the plain scan in one loop):", "",
                "| measurement | result |", "|---|---:|",
                f"| plain default scan ({sc['plain_rows']:,} rows) | "
                f"{sc['plain_s'] * 1e3:.1f} ms |",
                f"| + a 10-clause `where` over 4 indicator functions ({sc['where_rows']:,} rows) "
                f"| +{(sc['where_s'] - sc['plain_s']) * 1e3:.1f} ms |",
                f"| + all 61 candlestick patterns as columns (TA-Lib's values, whole rows) | "
                f"+{(sc['candles_s'] - sc['plain_s']) * 1e3:.0f} ms |",
                f"| compiling that 10-clause screen, first time / cached | "
                f"{sc['compile_uncached_s'] * 1e3:.2f} ms / "
                f"{sc['compile_cached_s'] * 1e6:.1f} µs |"]
    if "default" in std:
        d = std["default"]
        out += ["", f"Default scan (`ScanConfig()`: stock types, default filters; {d['rows']:,} "
                f"rows), warm, in-process: median {d['warm_s'] * 1e3:.1f} ms (best "
                f"{d['min_s'] * 1e3:.1f} ms) of {d['repeats']}; each stage's median:", "",
                "| stage | ms |", "|---|---:|"]
        out += [f"| {name} | {sec * 1e3:.2f} |" for name, sec in d["stages"].items()]
    out += ["", "| measurement | result |", "|---|---:|",
            f"| cold: empty store, `technic scan` process (builds the store, then scans) | "
            f"{res['cold_process_s']:.2f} s |",
            f"| warm: `technic scan --format csv` process (median of "
            f"{len(res['warm_process_s'])}) | {statistics.median(res['warm_process_s']):.2f} s |",
            f"| first `run_scan` in a fresh process, 6,000 listings | "
            f"{std['first_scan_s']:.3f} s |",
            f"| import of technic_v4.scanner_core | {std['import_s']:.3f} s |",
            f"| peak RSS, in-process benchmark child: scans / with the replay and baseline | "
            f"{std.get('scan_peak_rss_mb', std['peak_rss_mb']):.0f} MB / "
            f"{std['peak_rss_mb']:.0f} MB |"]
    b = std.get("baseline", {})
    if "seconds" in b:
        out += [f"| predecessor-style baseline, same {b['symbols']:,} symbols (per-symbol frames"
                f" + TA-Lib, 32 threads) | {b['seconds']:.2f} s |",
                f"| warm scan speed-up over that baseline | {b['seconds'] / top['warm_s']:.0f}x |",
                f"| warm scan speed-up over the seed's 90 s for 6,000 | "
                f"{90 / top['warm_s']:,.0f}x |"]
    if "past" in std:
        pa = std["past"]
        out.append(f"| default scan as of a past date ({pa['as_of']}, {pa['back']} sessions "
                   f"back; {pa['adjusted_rows']:,} rows split-adjusted as of it), first / warm "
                   f"median | {pa['first_s']:.3f} s / {pa['warm_s']:.3f} s |")
    if "history" in std:
        h = std["history"]
        out.append(f"| history: {h['dates']} as-of dates x 6,000 listings, local | "
                   f"{h['seconds']:.2f} s |")
    if "replay" in std:
        r = std["replay"]
        ratio = r["per_session_s"] * r["sessions"] / r["seconds"]
        out.append(f"| replay: a 10-clause screen at each of {r['sessions']} sessions x "
                   f"{r['listings']:,} listings (every stored bar, {r['bars']} sessions; "
                   f"{r['pairs']:,} listing-sessions scored, {r['rows']:,} rows), warm; vs one "
                   f"scan per session ({r['per_session_s']:.2f} s each) | {r['seconds']:.2f} s "
                   f"({ratio:.0f}x faster) |")
    if "std_ray" in res:
        r = res["std_ray"]
        out.append(f"| 6,000 listings on Ray (local cluster), warm median | "
                   f"{r['rows'][str(SIZES[-1])]['warm_s']:.3f} s |")
        if "history" in r:
            out.append(f"| history: {r['history']['dates']} dates on Ray "
                       f"({r['history']['backend']}) | {r['history']['seconds']:.2f} s |")
    if "big" in res:
        big = res["big"]["rows"][str(res["big_listings"])]
        out += [f"| {res['big_listings']:,} listings: fill + first scan (fresh process, ~415 "
                f"sessions) | {res['big_fill_s']:.1f} s |",
                f"| {res['big_listings']:,} listings: warm scan median, local "
                f"({big['listings']:,} into pre-screen) | {big['warm_s']:.3f} s |",
                f"| {res['big_listings']:,} listings: peak RSS | "
                f"{res['big']['peak_rss_mb']:,.0f} MB |"]
        if "big_ray" in res:
            br = res["big_ray"]["rows"][str(res["big_listings"])]
            out.append(f"| {res['big_listings']:,} listings: warm scan median, Ray "
                       f"(ratio to local {br['warm_s'] / big['warm_s']:.2f}) | "
                       f"{br['warm_s']:.3f} s |")
    if "trades" in res:
        tb = res["trades"]
        out += [f"| backtest: {tb['signals']:,} trade plans played out over {tb['listings']:,} "
                f"× {tb['sessions']:,} bars (max_hold 20) | {tb['simulate_s']:.2f} s |",
                f"| backtest: equal-risk portfolio over those trades (20 slots) | "
                f"{tb['portfolio_s']:.2f} s |"]
    if "build" in res:
        out += build_report(res["build"])
    if "vendor" in res:
        v = res["vendor"]
        out += ["", f"Data layer against the loopback Polygon-format vendor ({v['listings']:,} "
                f"listings, {v['delay_ms']:.0f} ms added per request, vendor in its own process):",
                "", "| step | seconds | vendor requests |", "|---|---:|---:|",
                f"| reference data, once (tickers + details, cached afterwards) | "
                f"{v['reference_s']:.1f} | {sum(v['reference_requests'].values()):,} |",
                f"| cold fill of {v['cold_fill_sessions']} sessions | {v['cold_fill_s']:.1f} | "
                f"{v['cold_fill_requests']:,} |",
                f"| daily update (1 new session) | {v['daily_s']:.2f} | "
                f"{sum(v['daily_requests'].values())} "
                f"({', '.join(f'{k} {n}' for k, n in v['daily_requests'].items())}) |",
                f"| second instance, empty store, fills from Redis and scans | "
                f"{v['redis_instance_s']:.2f} | {v['redis_instance_requests']} |"]
    if "backtest" in res:
        bt = res["backtest"]
        out += ["", f"Backtest statistics kernels (`technic_v4.backtest`), {bt['listings']:,} "
                f"listings x {bt['sessions']:,} sessions x horizons {bt['horizons']}, seeded "
                f"synthetic panel, one process, {bt['workers']} threads: {bt['seconds']:.2f} s "
                f"wall ({bt['cpu_s']:.2f} s CPU, user + system), peak RSS "
                f"{bt['peak_rss_mb']:,.0f} MB.", "", "| step | s |", "|---|---:|"]
        out += [f"| {name} | {sec:.2f} |" for name, sec in bt["steps"].items()]
    if "daily" in res:
        d = res["daily"]
        out += ["", f"Daily run ({d['screens']} saved screens over {d['listings']:,} listings, "
                f"{d['ran']} stored, {d['notified']} notifications to a local sink): "
                f"{d['daily_s']:.2f} s with the store update of the new session (a new "
                f"MarketData: L1 cold), {d['warm_s']:.2f} s warm (median)."]
    if "replay" in res:
        out += replay_report(res["replay"])
    if "ray_big" in res:
        out += ray_big_report(res["ray_big"])
    out += ["", f"Message of the first scan: `{std['first_msg']}`", ""]
    return "\n".join(out)


def replay_report(rp: dict[str, Any]) -> list[str]:
    """The replay section: the target run, its ratio to one scan per session, the curve."""
    out = ["", f"Replays over {rp['years']} years of the embedded market (`technic backtest`, "
           "the 10-clause screen, every session, every stored bar, warm, local threads):", "",
           "| listings | sessions | (listing, session) pairs scored | rows | seconds | "
           "pairs/s | steps (s) |", "|---:|---:|---:|---:|---:|---:|---|"]
    for st in rp["stores"]:
        for c in st["curve"]:
            steps = ", ".join(f"{k} {v:.1f}" for k, v in c["steps"].items())
            out.append(f"| {st['listings']:,} | {c['sessions']:,} | {c['pairs']:,} | "
                       f"{c['rows']:,} | {c['seconds']:.2f} | {c['pairs'] / c['seconds']:,.0f} "
                       f"| {steps} |")
    big = rp["stores"][-1]
    if "run" in big:
        r = big["run"]
        n = r.get("sessions", big["curve"][-1]["sessions"])
        one_by_one = big["per_session_s"] * n
        out += ["", "| target run | result |", "|---|---:|",
                f"| `backtest.run`: {big['listings']:,} listings x {n:,} sessions, forward "
                f"returns at 4 horizons, TechRating IC/quantiles, {r['trades']:,} plans played "
                f"out | {r['seconds']:.1f} s (replay {r['replay_s']:.1f} s) |",
                f"| peak RSS of that run (the warm panel in memory included) | "
                f"{r['peak_rss_mb'] / 1024:.1f} GB"
                f"{'' if r.get('peak_is_the_runs') else ' (the process, warm-ups included)'} |",
                f"| one `run_scan` per session instead (5 measured, x {n:,}) | "
                f"{one_by_one / 60:.0f} min: the replay is {one_by_one / r['replay_s']:,.0f}x "
                "faster |"]
    return out


def build_report(b: dict[str, Any]) -> list[str]:
    """The embedded market's build, as markdown lines."""
    d = b["default"]
    out = ["", "Embedded market build (reference, corporate actions, every session's bars in the "
           "fetch planner's chunks; each in a fresh child process):", "",
           "| market | sessions | bars | splits | dividends | delisted | seconds | peak RSS |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("default, 6,000 listings from 2023-01-03 (median of 3)", d)]
    if "long" in b:
        rows.append((f"20 years, 6,000 listings from {LONG_EPOCH}", b["long"]))
    out += [f"| {name} | {r['sessions']:,} | {r['rows']:,} | {r['splits']:,} | "
            f"{r['dividends']:,} | {r['delisted']:,} | {r['seconds']:.1f} | "
            f"{r['peak_rss_mb']:,.0f} MB |" for name, r in rows]
    if "long_scan" in b:
        out += ["", f"Cold `technic scan` on the 20-year market (fills an empty store, then "
                f"scans): {b['long_scan_s']:.1f} s, peak RSS "
                f"{b['long_scan']['peak_rss_mb']:,.0f} MB."]
    return out
