"""``technic bench``: measure scans on this machine and write a markdown report.

Every number is measured in this run, on the embedded market in a temporary store:
- cold: a fresh process with an empty store runs ``technic scan`` (builds the store, then scans);
- process warm: a fresh process with a filled store runs ``technic scan`` (median of repeats);
- first scan: ``run_scan`` in a fresh process on a filled store (no memory cache yet);
- warm in-process: repeated ``run_scan`` with the panel in the L1 cache (median of repeats);
- baseline: the predecessor's way on the same data in the same run (one pandas frame per
  symbol, TA-Lib calls per symbol in a 32-thread pool), for a ratio.
Peak RSS is the child process's maximum resident set size.
"""

from __future__ import annotations

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
t_import = time.perf_counter() - t0
sizes, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
out = {"import_s": t_import, "rows": {}}
t = time.perf_counter(); df, msg = run_scan(ScanConfig(max_symbols=sizes[-1]))
out["first_scan_s"] = time.perf_counter() - t
out["first_msg"] = msg
for n in sizes:
    data_engine.clear_memory_cache()
    t = time.perf_counter(); df, _ = run_scan(ScanConfig(max_symbols=n)); cold = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); df, msg = run_scan(ScanConfig(max_symbols=n))
        times.append(time.perf_counter() - t)
    st = df.attrs["stats"]
    pre = next(s for s in st["stages"] if s["stage"] == "pre_screen")
    out["rows"][n] = {"memory_cold_s": cold, "warm_s": sorted(times)[len(times) // 2],
                      "warm_min_s": min(times), "listings": pre["in"], "scanned": pre["out"],
                      "rows": len(df), "api_calls": st["counters"]["api_calls_total"],
                      "hit_rate": st["counters"]["hit_rate"]}
if len(sys.argv) > 3:
    from technic_v4.bench import baseline
    out["baseline"] = baseline(sizes[-1])
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH " + json.dumps(out))
"""


def baseline(n: int) -> dict[str, Any]:
    """The predecessor's way: per-symbol frames, per-symbol TA-Lib calls, 32 threads."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    try:
        import talib
    except ImportError:
        return {"skipped": "ta-lib not installed (pip install 'technic[test]')"}
    from technic_v4 import data_engine
    from technic_v4.config.scan import ScanConfig
    from technic_v4.scanner_core import run_scan

    df, _ = run_scan(ScanConfig(max_symbols=n))
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
    import pandas as pd

    pd.DataFrame(rows, index=list(frames)).sort_values("RSI14")
    return {"seconds": time.perf_counter() - t, "symbols": len(frames)}


def _child(env: dict[str, str], args: list[str]) -> tuple[float, dict[str, Any] | None, str]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                       check=False)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {r.stderr[-2000:]}")
    data = None
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            data = json.loads(line[6:])
    return wall, data, r.stderr


def run_bench(quick: bool = False, listings: int = 6000) -> str:
    repeats = 3 if quick else 7
    proc_repeats = 2 if quick else 5
    sizes = [s for s in SIZES if s <= listings]
    with tempfile.TemporaryDirectory(prefix="technic-bench-") as tmp:
        env = {**os.environ, "TECHNIC_DATA_DIR": tmp, "TECHNIC_SYNTHETIC_LISTINGS": str(listings),
               "TECHNIC_PROGRESS": "false"}
        cli = ["-m", "technic_v4.cli", "scan", "--format", "csv", "-o", str(Path(tmp) / "o.csv")]
        cold_wall, _, _ = _child(env, cli)
        warm_walls = [_child(env, cli)[0] for _ in range(proc_repeats)]
        _, res, _ = _child(env, ["-c", _CHILD, json.dumps(sizes), str(repeats), "baseline"])
    assert res is not None
    return _report(res, cold_wall, warm_walls, listings, quick)


def _report(res: dict[str, Any], cold_wall: float, warm_walls: list[float], listings: int,
            quick: bool) -> str:
    rows = res["rows"]
    top = rows[str(max(int(k) for k in rows))]
    lines = [
        "# technic benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; embedded market of {listings:,} listings "
        f"({'quick' if quick else 'full'} run). Medians of repeats; seconds.",
        "",
        "| scan | listings in universe | scanned after pre-screen | rows | first (L1 cold) s "
        "| warm median s | listings/s (warm) | vendor requests | hit rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in sorted(rows.items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| max_symbols={int(n):,} | {r['listings']:,} | {r['scanned']:,} | {r['rows']:,} | "
            f"{r['memory_cold_s']:.3f} | {r['warm_s']:.3f} | {r['listings'] / r['warm_s']:,.0f} | "
            f"{r['api_calls']} | {r['hit_rate']:.1f}% |")
    lines += [
        "",
        "| whole run | seconds |",
        "|---|---:|",
        f"| cold: fresh store, `technic scan` process (builds the store, then scans) | "
        f"{cold_wall:.2f} |",
        f"| warm: `technic scan` process on a filled store (median of {len(warm_walls)}) | "
        f"{statistics.median(warm_walls):.2f} |",
        f"| first `run_scan` in a fresh process (store -> panel -> table) | "
        f"{res['first_scan_s']:.3f} |",
        f"| import of technic_v4.scanner_core | {res['import_s']:.3f} |",
        f"| peak RSS of the in-process benchmark | {res['peak_rss_mb']:.0f} MB |",
    ]
    b = res.get("baseline", {})
    if "seconds" in b:
        ratio = b["seconds"] / top["warm_s"]
        lines += [
            f"| predecessor-style baseline on the same {b['symbols']:,} symbols (per-symbol "
            f"frames + TA-Lib, 32 threads) | {b['seconds']:.2f} |",
            f"| speed-up of the warm scan over that baseline | {ratio:.0f}x |",
        ]
    elif b:
        lines.append(f"| baseline | {b.get('skipped')} |")
    lines += ["", f"Last message: `{res['first_msg']}`", ""]
    return "\n".join(lines)
