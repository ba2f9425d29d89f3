"""``technic backtest`` and ``backtest.run``: thin front doors over the replay; bad input is one
line naming the field; ``--lookback all`` scans every stored bar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from replay_support import END, build_market

from technic_v4 import data_engine
from technic_v4.backtest import replay, run
from technic_v4.backtest.runner import aligned_bars
from technic_v4.cli import main
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError

PLAIN = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0, top_n=8)


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = build_market(tmp_path_factory.mktemp("cli"))
    data_engine._market = m
    yield m
    data_engine._market = None
    m.close()


def test_cli_writes_the_replayed_rows(md: MarketData, tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    r = CliRunner().invoke(main, ["backtest", "--signal", "Strong Long", "--signal", "Long",
                                  "--from", "2026-03-02", "--to", str(END), "--every", "2",
                                  "--top", "5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(out)
    want = replay(ScanConfig(where='Signal == "Strong Long" or Signal == "Long"', top_n=5),
                  "2026-03-02", END, every=2, data=md).matches
    assert len(got) == len(want) > 0
    assert set(got["Signal"]) <= {"Strong Long", "Long"}
    assert list(got.columns[:2]) == ["AsOf", "Symbol"]
    assert "Replayed" in r.stderr and "sessions matched" in r.stdout
    assert "trade plans:" in r.stdout and "max drawdown" in r.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (["--from", "2026-03-10", "--to", "2026-03-02"], "start: 2026-03-10 is after end"),
    (["--from", "2026-03-02", "--to", "2031-01-02"], "end: 2031-01-02 is after the latest"),
    (["--from", "2026-03-02", "--to", "2026-03-31", "--horizons", "1,x"], "horizons:"),
    (["--from", "2026-03-02", "--to", "2026-03-31", "--rank-by", "Nope"], "rank_by: unknown"),
    (["--from", "2026-03-02", "--to", "2026-03-31", "--every", "0"], "every: must be"),
    (["--from", "2026-03-02", "--to", "2026-03-31", "--signal", "Buy"], "unknown signal"),
    # Checked alone: parenthesised with the signal clause it would have or-ed it away.
    (["--from", "2026-03-02", "--to", "2026-03-31", "--where", "close > 1) or (close > 0",
      "--signal", "Long"], "where"),
])
def test_cli_bad_input_is_one_line(md: MarketData, args: list[str], fragment: str) -> None:
    r = CliRunner().invoke(main, ["backtest", *args])
    assert r.exit_code != 0
    assert fragment in r.output
    assert "Traceback" not in r.output


def test_run_checks_its_options_and_says_what_it_lacks(md: MarketData) -> None:
    res = run(PLAIN, "2026-03-02", END, horizons="1,5", rank_by="TechRating", data=md)
    assert res.horizons == (1, 5) and res.rank_by == "TechRating"
    pd.testing.assert_frame_equal(res.matches,
                                  replay(PLAIN, "2026-03-02", END, data=md).matches)
    for kw, field in [({"horizons": (0, 5)}, "horizons"), ({"horizons": (5, 5)}, "horizons"),
                      ({"horizons": (1.5,)}, "horizons"), ({"rank_by": "Symbol"}, "rank_by"),
                      ({"max_hold": 0}, "max_hold")]:
        with pytest.raises(ConfigError) as e:
            run(PLAIN, "2026-03-02", END, data=md, **kw)  # type: ignore[arg-type]
        assert e.value.field == field
    cols = ScanConfig(columns={"Gap": "open / close[1] - 1"}, min_history=60)
    assert run(cols, "2026-03-30", END, rank_by="Gap", data=md).rank_by == "Gap"


def test_cli_lookback_all(md: MarketData) -> None:
    r = CliRunner().invoke(main, ["scan", "--lookback", "all", "--format", "csv",
                                  "--as-of", str(END)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["scan", "--lookback", "most"])
    assert r.exit_code == 2 and "a number of sessions or 'all'" in r.output


def test_run_plays_out_the_plans_in_one_price_basis(md: MarketData) -> None:
    """Plans made before a split are expressed in the bars' basis (split-adjusted as of the
    last session): a 3:1 split divides the levels by 3; entries are the next session's open."""
    from replay_support import FWD

    cfg = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0,
                     symbols=(FWD, "S004", "S005", "S006", "S007"))
    res = run(cfg, "2026-01-05", END, data=md, max_hold=10, max_positions=3)
    assert "trades" not in res.missing
    trades = res.analyses["trades"]
    longs = res.matches[~res.matches["Signal"].isin(("Short", "Strong Short"))]
    assert len(trades) == len(longs) > 0
    split = pd.Timestamp("2026-01-15")
    before = (trades["Symbol"] == FWD).to_numpy() & (trades["AsOf"] < split).to_numpy()
    after = ~before
    assert before.any(), "the split listing should be among the rows before its split"
    rows = longs.reset_index(drop=True)
    np.testing.assert_allclose(trades.loc[before, "stop"], rows.loc[before, "Stop"] / 3.0)
    np.testing.assert_array_equal(trades.loc[after, "stop"], rows.loc[after, "Stop"])
    # Entry: the open of the session after the signal, in the last session's basis.
    bars = aligned_bars(md)
    t = trades[trades["reason"] != "no_entry"].iloc[0]
    i = int(pd.Index(md.reference()["Symbol"].astype(str)).get_loc(t["Symbol"]))
    assert t["entry_session"] == t["signal_session"] + 1
    assert t["entry_price"] == bars.open[i, t["entry_session"]]
    assert res.analyses["trade_summary"]["signals"] == len(trades)
    curve = res.analyses["portfolio"].curve
    assert curve.index[0] == pd.Timestamp("2026-01-05") and curve["positions"].max() <= 3


def test_run_forward_returns_and_ic(md: MarketData) -> None:
    """With the analysis kernels in the build: each row's forward return is the brute-force
    close[d+h] / open[d+1] - 1 on total-return bars; IC per horizon for rank_by."""
    pytest.importorskip("technic_v4.backtest.returns")
    pytest.importorskip("technic_v4.backtest.metrics")
    res = run(PLAIN, "2026-01-05", END, horizons=(1, 5), rank_by="TechRating", data=md)
    fwd = res.analyses["forward"]
    assert len(fwd) == len(res.matches)
    bars = aligned_bars(md, "total")
    names = list(md.reference()["Symbol"].astype(str))
    checked = 0
    for _, row in fwd.iloc[:: max(1, len(fwd) // 15)].iterrows():
        i = names.index(row["Symbol"])
        d = int(np.searchsorted(bars.sessions, np.datetime64(row["AsOf"].date(), "D")))
        if d + 5 < len(bars.sessions) and np.isfinite(bars.close[i, d + 5]):
            assert row["Fwd5D"] == pytest.approx(bars.close[i, d + 5] / bars.open[i, d + 1] - 1)
            checked += 1
    assert checked >= 5
    assert set(res.analyses["ic_decay"].index) == {1, 5}
    assert {1, 5} <= set(res.analyses["summary"].index.get_level_values("horizon"))
