"""``technic backtest --report DIR`` and ``write_report``: an offline HTML report, a markdown
summary with its charts beside it, Parquet of the per-session frames; a screen that never
matched is a report saying so; a bad folder is one line before any replay."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from replay_support import END, build_market

from technic_v4 import data_engine
from technic_v4.backtest import BacktestResult, run
from technic_v4.backtest.report import write_report
from technic_v4.cli import main
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError

# A screen with characters HTML must escape (the comparison and the quotes).
WHERE = 'close > sma(close, 20) and RSI14 > 40 and Sector != "<b>none</b>"'
CHARTS = ("Cumulative excess return", "Equity curve and drawdown", "IC over time",
          "Mean return by quantile", "R-multiple histogram")


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = build_market(tmp_path_factory.mktemp("report"))
    data_engine._market = m
    yield m
    data_engine._market = None
    m.close()


@pytest.fixture(scope="module")
def result(md: MarketData) -> BacktestResult:
    cfg = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0, top_n=8,
                     where=WHERE)
    return run(cfg, "2026-01-05", END, horizons=(1, 5, 21), rank_by="TechRating", data=md)


def _images(page: str) -> dict[str, str]:
    """alt text -> src of every <img> of the page."""
    return {alt: src for src, alt in
            ((m.group(2), m.group(1)) for m in
             re.finditer(r'<img alt="([^"]*)" src="([^"]*)"', page))}


def _same_rows(path: Path, want: pd.DataFrame) -> None:
    """The Parquet file holds ``want`` (Parquet has no second unit: datetimes read back as
    milliseconds, the same instants)."""
    got = pd.read_parquet(path)
    units = {c: want[c].dtype for c in want.columns if str(want[c].dtype).startswith("datetime")}
    got = got.astype(units)
    if isinstance(want.index, pd.DatetimeIndex):
        got.index = got.index.astype(want.index.dtype)
    pd.testing.assert_frame_equal(got, want, check_freq=False)


def test_report_files_charts_and_escaping(result: BacktestResult, tmp_path: Path) -> None:
    assert len(result.matches) > 0 and "portfolio" in result.analyses
    out = write_report(result, tmp_path / "new" / "rep")
    d = out.parent
    assert out == d / "report.html"
    page = out.read_text()
    # The screen, escaped: no raw tag from the user's text, the escaped form present.
    assert "<b>none</b>" not in page
    assert "Sector != &quot;&lt;b&gt;none&lt;/b&gt;&quot;" in page
    imgs = _images(page)
    assert set(imgs) == set(CHARTS)
    assert all(src.startswith("data:image/svg+xml;base64,") for src in imgs.values())
    # Offline: no resource (nor any other) reference to the network.
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link)\b", page)
    md_text = (d / "summary.md").read_text()
    for name in ("cumulative_excess", "equity_drawdown", "ic", "quantile_returns",
                 "r_multiples"):
        assert f"]({name}.svg)" in md_text
        assert (d / f"{name}.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert "| horizon | of | n | hit_rate |" in md_text
    ts = result.analyses["trade_summary"]
    assert f"R multiples of {ts['trades']:,} closed trades" in (d / "r_multiples.svg").read_text()
    assert f"| win_rate | {result.analyses['trade_summary']['win_rate']:.4g} |" in md_text
    # Parquet: the same rows as the result's frames.
    _same_rows(d / "matches.parquet", result.matches)
    _same_rows(d / "forward.parquet", result.analyses["forward"])
    _same_rows(d / "equity.parquet", result.analyses["portfolio"].curve)
    trades = pd.read_parquet(d / "trades.parquet")
    assert len(trades) == len(result.analyses["trades"])
    ic = pd.read_parquet(d / "ic.parquet")
    assert list(ic.columns) == ["IC1D", "IC5D", "IC21D", "TopQuintileTurnover"]
    assert not [p.name for p in d.iterdir() if p.name.startswith(".")]  # no temporaries


def test_a_screen_that_never_matched_is_a_report_saying_so(md: MarketData,
                                                            tmp_path: Path) -> None:
    cfg = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0,
                     where="close < 0")
    res = run(cfg, "2026-03-02", END, data=md)
    assert res.matches.empty
    out = write_report(res, tmp_path)
    page = out.read_text()
    assert "The screen never matched" in page
    assert "The screen never matched" in (tmp_path / "summary.md").read_text()
    assert _images(page) == {}  # no rank_by: no IC charts either
    for title in CHARTS:
        assert re.search(rf'<p class="note">{re.escape(title)}: [^<]+\.</p>', page), title
    assert "the screen matched no rows" in page
    assert pd.read_parquet(tmp_path / "matches.parquet").empty


def test_cli_report(md: MarketData, tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    r = CliRunner().invoke(main, ["backtest", "--where", "RSI14 > 40", "--from", "2026-03-02",
                                  "--to", str(END), "--top", "5", "--rank-by", "TechRating",
                                  "--report", str(d)])
    assert r.exit_code == 0, r.output
    assert f"wrote {d / 'report.html'}" in r.stderr
    page = (d / "report.html").read_text()
    assert "where RSI14 &gt; 40" in page and len(_images(page)) == len(CHARTS)
    rows = pd.read_parquet(d / "matches.parquet")
    assert len(rows) == len(pd.read_parquet(d / "forward.parquet")) > 0
    assert set(rows["AsOf"]) <= set(pd.bdate_range("2026-03-02", END))


def test_cli_bad_report_folder_is_one_line_before_the_replay(md: MarketData,
                                                             tmp_path: Path) -> None:
    """The --from after --to mistake would be reported by the replay's validation: the
    --report error comes first, so the folder is checked before anything runs."""
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for bad, says in ((a_file, "exists and is not a folder"),
                      (a_file / "sub", "is not a folder")):
        r = CliRunner().invoke(main, ["backtest", "--from", "2026-03-10", "--to", "2026-03-02",
                                      "--report", str(bad)])
        assert r.exit_code == 1
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: --report "), r.output
        assert says in lines[0] and "start:" not in r.output
    assert a_file.read_text() == "x"
    with pytest.raises(ConfigError) as e:
        write_report(BacktestResult.__new__(BacktestResult), a_file)
    assert e.value.field == "report"
