"""A backtest as files: ``write_report(result, directory)``.

Into ``directory`` (created when missing):

* ``report.html``: self-contained (the charts are SVG inside ``data:`` URIs, the style inline,
  no script, no external URL: it opens offline); every user-provided text (the screen) escaped;
* ``summary.md``: the same numbers as markdown tables, the charts beside it as ``*.svg`` files;
* Parquet of the per-session frames: ``matches.parquet`` (the scan's rows at each session),
  and when computed ``forward.parquet`` (each row's forward and excess returns),
  ``trades.parquet`` (each plan played out), ``equity.parquet`` (the portfolio at each session),
  ``ic.parquet`` (IC per session and horizon, top-quintile turnover).

The charts (matplotlib, drawn on a bare ``Figure``: no pyplot state, no GUI backend):

* cumulative excess return per horizon, over SPY and over the session's universe: at each
  replayed session the matches' mean ``h``-session excess return, as a per-session rate
  ``(1 + mean) ** (1 / h) - 1``, compounded over the replayed sessions;
* the portfolio's equity curve with its drawdown below;
* IC per session of ``rank_by`` at the main horizon (21 sessions when asked for, else the
  longest) with its rolling mean;
* mean (demeaned) forward return by quintile of ``rank_by`` at the main horizon;
* the histogram of the closed trades' R multiples.

A chart whose analysis is missing or empty is replaced by a one-line note saying why; a screen
that never matched gives a report saying so (never an error).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from technic_v4 import fsio
from technic_v4.backtest.runner import BacktestResult
from technic_v4.errors import ConfigError

ROLLING_IC = 21  # sessions in the IC chart's rolling mean


@dataclass
class Chart:
    """One chart: its file stem, title, alt text, and the SVG (``None``: skipped, ``note``
    says why)."""

    name: str
    title: str
    svg: bytes | None
    note: str = ""


def screen_text(result: BacktestResult) -> str:
    """The screen as the user gave it: the where expression and the preset."""
    cfg = result.replay.config
    parts = [f"where {cfg.where}" if cfg.where else "", f"preset {cfg.preset}" if cfg.preset
             else ""]
    return "; ".join(p for p in parts if p) or "every scored row (no screen)"


def main_horizon(result: BacktestResult) -> int:
    return 21 if 21 in result.horizons else max(result.horizons)


def check_directory(directory: Path | str) -> Path:
    """``directory`` if it is a folder, or can be created as one, that is writable; else a
    ConfigError naming ``report``."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ConfigError("report", f"{d} exists and is not a folder; give a folder path")
    probe = d
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError("report", f"{d}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError("report", f"{d}: folder {probe} is not writable")
    return d


def write_report(result: BacktestResult, directory: Path | str) -> Path:
    """Write the report files into ``directory`` (module docstring); returns the HTML's path."""
    d = check_directory(directory)
    d.mkdir(parents=True, exist_ok=True)
    charts = build_charts(result)
    for c in charts:
        if c.svg is not None:
            fsio.write_bytes(d / f"{c.name}.svg", c.svg)
    for name, frame in frames(result).items():
        with fsio.atomic_file(d / f"{name}.parquet", "wb") as f:
            frame.to_parquet(f)
    fsio.write_text(d / "summary.md", render_markdown(result, charts))
    out = d / "report.html"
    fsio.write_text(out, render_html(result, charts))
    return out


# --- frames ----------------------------------------------------------------------------------

def frames(result: BacktestResult) -> dict[str, pd.DataFrame]:
    """The per-session frames written as Parquet."""
    a = result.analyses
    out = {"matches": result.matches}
    if isinstance(a.get("forward"), pd.DataFrame):
        out["forward"] = a["forward"]
    if isinstance(a.get("trades"), pd.DataFrame):
        out["trades"] = a["trades"].assign(reason=a["trades"]["reason"].astype(str))
    if a.get("portfolio") is not None:
        out["equity"] = a["portfolio"].curve
    if isinstance(a.get("ic"), pd.DataFrame):
        ic = a["ic"].rename(columns=lambda h: f"IC{h}D")
        if isinstance(a.get("turnover"), pd.Series):
            ic = ic.assign(TopQuintileTurnover=a["turnover"])
        out["ic"] = ic
    return out


# --- charts ----------------------------------------------------------------------------------

def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _figure(rows: int = 1, height: float = 3.2, ratios: list[float] | None = None
            ) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(8.0, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": ratios} if ratios else None)
    for ax in axes[:, 0]:
        ax.grid(True, alpha=0.3)
    return fig, list(axes[:, 0])


def _chart(name: str, title: str, draw: Callable[[], Figure | str]) -> Chart:
    """``draw`` returns a figure, or a string: why the chart is skipped."""
    got = draw()
    if isinstance(got, str):
        return Chart(name, title, None, got)
    return Chart(name, title, _svg(got))


def build_charts(result: BacktestResult) -> list[Chart]:
    a, h = result.analyses, main_horizon(result)
    lacks = f" (this build lacks {', '.join(result.missing)})" if result.missing else ""
    nothing = "the screen matched no rows" if result.matches.empty else ""

    def excess() -> Figure | str:
        fwd = a.get("forward")
        if fwd is None:
            return f"no forward returns{lacks}"
        if fwd.empty:
            return f"no forward returns: {nothing or 'no rows'}"
        sides = [(p, t) for p, t in (("ExcessSPY", "over SPY"), ("Excess", "over the universe"))
                 if any(f"{p}{k}D" in fwd for k in result.horizons)]
        fig, axes = _figure(len(sides), 2.6 * len(sides) + 0.6)
        drawn = 0
        for ax, (prefix, label) in zip(axes, sides, strict=True):
            for k in result.horizons:
                col = f"{prefix}{k}D"
                if col not in fwd:
                    continue
                mean = fwd.groupby("AsOf")[col].mean().dropna()
                if mean.empty:
                    continue
                curve = np.cumprod(np.power(1.0 + mean.to_numpy(), 1.0 / k)) - 1.0
                ax.plot(mean.index, curve * 100, label=f"{k} sessions")
                drawn += 1
            ax.axhline(0, color="black", lw=0.6)
            ax.set_ylabel(f"% {label}")
            ax.legend(loc="best", fontsize=8)
        if not drawn:
            return "no forward return has ended inside the stored sessions yet"
        axes[0].set_title("Cumulative excess return of the matches, by horizon")
        return fig

    def equity() -> Figure | str:
        port = a.get("portfolio")
        if port is None:
            return f"no portfolio{lacks}"
        if port.curve.empty or not port.stats.get("trades_taken"):
            return f"no portfolio: {nothing or 'no trade was taken'}"
        c = port.curve
        fig, (top, bottom) = _figure(2, 4.4, [3, 1])
        top.plot(c.index, c["equity"], color="tab:blue")
        top.set_ylabel("equity")
        top.set_title("Equal-risk portfolio: equity and drawdown")
        bottom.fill_between(c.index, -c["drawdown"].to_numpy() * 100, 0, color="tab:red",
                            alpha=0.5)
        bottom.set_ylabel("drawdown %")
        return fig

    def ic() -> Figure | str:
        frame = a.get("ic")
        if frame is None:
            return ("no IC: give --rank-by (rank_by=) a numeric column" if not lacks
                    else f"no IC{lacks}")
        s = frame[h].dropna() if h in frame else pd.Series(dtype=float)
        if s.empty:
            return f"no IC at {h} sessions: no session had scores and ended returns"
        fig, (ax,) = _figure()
        ax.bar(s.index, s.to_numpy(), color="tab:gray", width=1.0, label="IC per session")
        ax.plot(s.index, s.rolling(ROLLING_IC, min_periods=1).mean(), color="tab:orange",
                label=f"rolling mean ({ROLLING_IC} sessions)")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"IC of {result.rank_by} with {h}-session forward returns")
        ax.legend(loc="best", fontsize=8)
        return fig

    def quantiles() -> Figure | str:
        qs = a.get("quantiles")
        if qs is None or h not in qs:
            return ("no quantiles: give --rank-by (rank_by=) a numeric column" if not lacks
                    else f"no quantiles{lacks}")
        q = qs[h]
        if not np.isfinite(q.mean).any():
            return f"no quantiles at {h} sessions: no session had scores and ended returns"
        fig, (ax,) = _figure()
        x = np.arange(1, q.quantiles + 1)
        ax.bar(x, q.mean * 100, yerr=q.std_error * 100, color="tab:green", capsize=3)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x)
        ax.set_xlabel(f"quantile of {result.rank_by} (1 = lowest)")
        ax.set_ylabel("mean demeaned return %")
        ax.set_title(f"{h}-session forward return by quantile of {result.rank_by}")
        return fig

    def r_multiples() -> Figure | str:
        trades = a.get("trades")
        if trades is None:
            return f"no trades{lacks}"
        from technic_v4.backtest.trades import CLOSED_REASONS  # same trades as the summary

        closed = trades[trades["reason"].isin(CLOSED_REASONS)]
        r = closed["r_multiple"].to_numpy(np.float64)
        r = r[np.isfinite(r)]
        if not len(r):
            return f"no closed trade: {nothing or 'no plan reached its stop, target or end'}"
        fig, (ax,) = _figure()
        ax.hist(r, bins=min(40, max(5, len(r) // 5)), color="tab:purple")
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel("R multiple")
        ax.set_ylabel("trades")
        ax.set_title(f"R multiples of {len(r):,} closed trades (mean {r.mean():+.2f} R)")
        return fig

    return [
        _chart("cumulative_excess", "Cumulative excess return", excess),
        _chart("equity_drawdown", "Equity curve and drawdown", equity),
        _chart("ic", "IC over time", ic),
        _chart("quantile_returns", "Mean return by quantile", quantiles),
        _chart("r_multiples", "R-multiple histogram", r_multiples),
    ]


# --- tables ----------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        x = float(v)
        if math.isnan(x):
            return ""
        return f"{x:,.2f}" if abs(x) >= 1e4 else f"{x:.4g}"
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat()
    return "" if v is None else str(v)


def tables(result: BacktestResult) -> list[tuple[str, pd.DataFrame]]:
    """(title, frame) of every number the report shows."""
    a, rep = result.analyses, result.replay
    per_day = result.matches.groupby("AsOf").size()
    run = pd.DataFrame({"value": [
        screen_text(result),
        f"{rep.sessions[0].date()} .. {rep.sessions[-1].date()}" if len(rep.sessions) else "",
        len(rep.sessions), len(per_day), len(result.matches),
        ", ".join(map(str, result.horizons)), result.rank_by or "", result.max_hold]},
        index=pd.Index(["screen", "range", "sessions replayed", "sessions matched",
                        "rows", "horizons", "rank by", "max hold"], name="run"))
    out = [("Run", run.reset_index())]
    if isinstance(a.get("summary"), pd.DataFrame):
        out.append(("Forward returns of the matches", a["summary"].reset_index()))
    if isinstance(a.get("ic_decay"), pd.DataFrame):
        out.append((f"IC of {result.rank_by} by horizon", a["ic_decay"].reset_index()))
    if isinstance(a.get("quantiles"), dict):
        qs = a["quantiles"]
        n = max((v.quantiles for v in qs.values()), default=0)
        q = pd.DataFrame({f"{h} sessions": v.mean for h, v in qs.items()},
                         index=pd.Index(range(1, n + 1), name="quantile"))
        out.append((f"Mean demeaned return by quantile of {result.rank_by}", q.reset_index()))
    ts = a.get("trade_summary")
    if ts:
        flat = {k: v for k, v in ts.items() if k != "by_reason"}
        flat.update({f"reason {k}": v for k, v in ts["by_reason"].items()})
        out.append(("Trade plans played out",
                    pd.DataFrame({"value": list(flat.values())},
                                 index=pd.Index(list(flat), name="statistic")).reset_index()))
    if a.get("portfolio") is not None:
        st = {k: v for k, v in a["portfolio"].stats.items() if k != "by_status"}
        out.append(("Portfolio", pd.DataFrame({"value": list(st.values())},
                                              index=pd.Index(list(st), name="statistic")
                                              ).reset_index()))
    return out


def _headline(result: BacktestResult) -> str:
    if result.matches.empty:
        return (f"The screen never matched: no rows at any of the {len(result.replay.sessions)}"
                " replayed sessions.")
    return result.message


def _md_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def render_markdown(result: BacktestResult, charts: Iterable[Chart]) -> str:
    parts = ["# technic backtest", "", _headline(result), ""]
    for title, frame in tables(result):
        parts += [f"## {title}", "", _md_table(frame), ""]
    parts += ["## Charts", ""]
    for c in charts:
        parts.append(f"![{c.title}]({c.name}.svg)" if c.svg is not None
                     else f"*{c.title}: {c.note}.*")
        parts.append("")
    return "\n".join(parts)


_STYLE = ("body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
          "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;"
          "padding:.2rem .5rem;text-align:right}th{background:#f3f3f3}"
          ".note{color:#666;font-style:italic}img{max-width:100%}")


def _html_table(frame: pd.DataFrame) -> str:
    rows = ["<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
            + "</tr>"]
    for row in frame.itertuples(index=False):
        rows.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
                    + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_html(result: BacktestResult, charts: Iterable[Chart]) -> str:
    body = [f"<h1>technic backtest</h1><p>{html.escape(_headline(result))}</p>"]
    for title, frame in tables(result):
        body.append(f"<h2>{html.escape(title)}</h2>{_html_table(frame)}")
    body.append("<h2>Charts</h2>")
    for c in charts:
        if c.svg is None:
            body.append(f'<p class="note">{html.escape(c.title)}: {html.escape(c.note)}.</p>')
        else:
            data = base64.b64encode(c.svg).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(c.title)}" '
                        f'src="data:image/svg+xml;base64,{data}"></figure>')
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>technic backtest</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


__all__ = ["Chart", "build_charts", "check_directory", "write_report"]
