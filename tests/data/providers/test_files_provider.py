"""FilesProvider: the user's CSV/Parquet bars and reference data, and errors that point at the
file, the row and the column."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.config.settings import Settings
from technic_v4.data.bars import FIELDS, BarBatch
from technic_v4.data.market import MarketData, make_provider
from technic_v4.data.providers.base import ACTION_COLUMNS, LISTING_STATUS_COLUMNS, REFERENCE_COLUMNS
from technic_v4.data.providers.files import FilesProvider, FileValidationError
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.errors import ConfigError, ValidationError
from technic_v4.pipeline import scan
from technic_v4.universe import gics


@pytest.fixture(scope="module")
def bars(synth: SyntheticProvider) -> BarBatch:
    return synth.bars_for_sessions([d.astype(dt.date) for d in synth.sessions])


@pytest.fixture(scope="module")
def frame(bars: BarBatch) -> pd.DataFrame:
    return bars.to_frame()


def canon(b: BarBatch) -> pd.DataFrame:
    return b.to_frame().sort_values(["date", "symbol"]).reset_index(drop=True)


def assert_same(a: BarBatch, b: BarBatch) -> None:
    fa, fb = canon(a), canon(b)
    assert fa["symbol"].tolist() == fb["symbol"].tolist()
    np.testing.assert_array_equal(fa["date"].to_numpy(), fb["date"].to_numpy())
    for f in FIELDS:
        np.testing.assert_array_equal(fa[f].to_numpy(), fb[f].to_numpy(), err_msg=f)


def write_dir(frame: pd.DataFrame, d: Path, fmt: str = "csv") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for s, g in frame.groupby("symbol"):
        out = g.drop(columns="symbol").rename(columns={
            "date": "Date", "open": "OPEN", "high": "High", "low": "low", "close": "Close",
            "volume": "Volume"})
        out["Adj Close"] = out["Close"] * 0.98  # ignored
        if fmt == "csv":
            out.to_csv(d / f"{s}.csv", index=False)
        else:
            out.to_parquet(d / f"{str(s).lower()}.parquet", index=False)
    return d


def sessions_of(synth: SyntheticProvider) -> list[dt.date]:
    return [d.astype(dt.date) for d in synth.sessions]


# -- reading ----------------------------------------------------------------------------------


def test_csv_directory_one_file_per_symbol(synth: SyntheticProvider, bars: BarBatch,
                                           frame: pd.DataFrame, tmp_path: Path) -> None:
    d = write_dir(frame, tmp_path / "bars")
    (d / "README.txt").write_text("not a bar file")
    p = FilesProvider(d)
    n_files = frame["symbol"].nunique()
    assert_same(p.bars_for_sessions(sessions_of(synth)), bars)
    assert p.first_session() == synth.first_session()
    assert p.latest_session() == synth.latest_session()
    assert p.request_counts == {"file_reads": n_files}
    # Served from memory until a file changes.
    p.bars_for_sessions(sessions_of(synth)[:3])
    assert p.request_counts == {"file_reads": n_files}
    spy = d / "SPY.csv"
    st = spy.stat()
    os.utime(spy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    p.reference()
    assert p.request_counts == {"file_reads": 2 * n_files}
    # Per-symbol requests.
    one = p.bars_for_symbols(["SPY"], dt.date(2026, 11, 1), dt.date(2026, 11, 20))
    assert set(one.symbol) == {"SPY"} and len(one) == 15  # sessions 2026-11-02..20


def test_derived_minimal_reference(synth: SyntheticProvider, frame: pd.DataFrame,
                                   tmp_path: Path) -> None:
    p = FilesProvider(write_dir(frame, tmp_path / "bars"))
    ref = p.reference()
    assert tuple(ref.columns) == REFERENCE_COLUMNS + LISTING_STATUS_COLUMNS
    assert ref["Delisted"].isna().all() and ref["DelistReason"].isna().all()
    assert sorted(ref["Symbol"]) == sorted(frame["symbol"].unique())
    assert (ref["Type"] == gics.COMMON_STOCK).all() and (ref["Name"] == ref["Symbol"]).all()
    assert ref["Sector"].isna().all() and ref["Industry"].isna().all()
    assert ref["Exchange"].isna().all() and ref["SharesOutstanding"].isna().all()
    first = frame.groupby("symbol")["date"].min()
    got = ref.set_index("Symbol")["ListDate"]
    assert (pd.to_datetime(got[first.index]).to_numpy() == pd.to_datetime(first).to_numpy()).all()
    assert p.derived_reference_rows == len(ref)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "csv.gz"])
def test_long_table_with_a_symbol_column(synth: SyntheticProvider, bars: BarBatch,
                                         frame: pd.DataFrame, tmp_path: Path, fmt: str) -> None:
    f = tmp_path / f"all.{fmt}"
    out = frame.rename(columns={"symbol": "Ticker", "date": "DATE"})
    if fmt == "parquet":
        out.to_parquet(f, index=False)
    else:
        out.assign(DATE=out["DATE"].astype(str)).to_csv(f, index=False)
    p = FilesProvider(f)
    assert_same(p.bars_for_sessions(sessions_of(synth)), bars)
    assert p.request_counts == {"file_reads": 1}


def test_parquet_directory(synth: SyntheticProvider, bars: BarBatch, frame: pd.DataFrame,
                           tmp_path: Path) -> None:
    p = FilesProvider(write_dir(frame, tmp_path / "pq", fmt="parquet"))
    assert_same(p.bars_for_sessions(sessions_of(synth)), bars)  # symbols upper-cased


def test_reference_csv(synth: SyntheticProvider, frame: pd.DataFrame, tmp_path: Path) -> None:
    want = synth.reference()
    ref_csv = tmp_path / "reference.csv"
    out = want.copy()
    out["Type"] = out["Type"].str.upper()  # any case
    out["Sector"] = out["Sector"].str.lower()
    out.drop(index=[3]).rename(columns={"SharesOutstanding": "shares_outstanding"}).to_csv(
        ref_csv, index=False)
    p = FilesProvider(write_dir(frame, tmp_path / "bars"), ref_csv)
    got = p.reference().set_index("Symbol")
    w = want.set_index("Symbol")
    missing = want["Symbol"].iloc[3]
    assert p.derived_reference_rows == (1 if missing in set(frame["symbol"]) else 0)
    w = w.drop(index=[missing])
    g = got.loc[w.index]
    for c in ("Name", "Type", "Exchange", "Sector", "Industry"):
        assert g[c].fillna("-").tolist() == w[c].fillna("-").tolist(), c
    np.testing.assert_array_equal(g["SharesOutstanding"].to_numpy(),
                                  w["SharesOutstanding"].to_numpy())
    assert (pd.to_datetime(g["ListDate"]) == pd.to_datetime(w["ListDate"])).all()


def test_rows_on_closed_days_are_counted_not_served(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text("date,open,high,low,close,volume\n"
                 "2026-11-19,10,11,9,10.5,100\n"
                 "2026-11-21,10,11,9,10.5,100\n"  # a Saturday
                 "2026-11-20,10,11,9,,100\n"  # an empty close: passed on to validation
                 "\n")
    p = FilesProvider(f)
    assert p.off_calendar_rows == 1
    b = p.bars_for_sessions([dt.date(2026, 11, 19), dt.date(2026, 11, 20),
                             dt.date(2026, 11, 21)])
    assert b.date.astype(str).tolist() == ["2026-11-19", "2026-11-20"]
    assert np.isnan(b.close[1])
    assert (p.first_session(), p.latest_session()) == (dt.date(2026, 11, 19),
                                                       dt.date(2026, 11, 20))


def test_dates_in_other_formats(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text("Date,Open,High,Low,Close,Volume\n"
                 "11/18/2026,10,11,9,10.5,100\n"
                 "2026-11-19T00:00:00-05:00,10,11,9,10.5,100\n"
                 "20261120,10,11,9,10.5,100\n")
    b = FilesProvider(f).bars_for_sessions([dt.date(2026, 11, d) for d in (18, 19, 20)])
    assert b.date.astype(str).tolist() == ["2026-11-18", "2026-11-19", "2026-11-20"]


def test_store_key_follows_the_folder(frame: pd.DataFrame, tmp_path: Path) -> None:
    a = FilesProvider(write_dir(frame.head(50), tmp_path / "a"))
    b = FilesProvider(write_dir(frame.head(50), tmp_path / "b"))
    a2 = FilesProvider(tmp_path / "x" / ".." / "a")
    assert a.store_key != b.store_key and a.store_key == a2.store_key
    assert a.store_key.startswith("files-a-")
    assert a.name == "files" and a.fetch_batch_sessions >= 1 << 20


# -- errors that point at file, row and column --------------------------------------------------


def expect(path: Path, row: int, column: str | None, text: str) -> None:
    with pytest.raises(ValidationError) as ei:
        FilesProvider(path).reference()
    e = ei.value
    assert isinstance(e, FileValidationError)
    msg = str(e)
    assert e.row == row and f"row {row}" in msg, msg
    assert e.column == column, msg
    if column is not None:
        assert f"column '{column}'" in msg, msg
    assert text in msg, msg


HEADER = "Date,Open,High,Low,Close,Volume\n"
GOOD = "2026-11-18,10,11,9,10.5,100\n"


def test_missing_column(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text("Date,Open,High,Low,Volume\n" + "2026-11-18,10,11,9,100\n")
    expect(f, 1, "close", "required column missing")
    assert "AAA.csv" in _msg(f)


def test_column_twice(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text("Date,Open,High,Low,Close,close,Volume\n")
    expect(f, 1, "close", "appears twice")


def test_unparsable_date(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text(HEADER + GOOD + "\n" + "2026-13-45,10,11,9,10.5,100\n")  # row 4: after a blank
    expect(f, 4, "Date", "cannot read '2026-13-45' as a date")


def test_duplicate_session_within_a_symbol(tmp_path: Path) -> None:
    f = tmp_path / "long.csv"
    f.write_text("symbol," + HEADER + "AAA," + GOOD + "BBB," + GOOD + "AAA,2026-11-19,1,1,1,1,1\n"
                 "AAA," + GOOD)
    expect(f, 5, "Date", "duplicate session 2026-11-18 for AAA (first at row 2)")


def test_duplicate_session_across_files(tmp_path: Path) -> None:
    d = tmp_path / "bars"
    d.mkdir()
    (d / "AAA.csv").write_text(HEADER + GOOD)
    pd.DataFrame({"date": ["2026-11-17", "2026-11-18"], "open": [1.0, 1.0], "high": [1.0, 1.0],
                  "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [1.0, 1.0]}).to_parquet(
        d / "aaa.parquet", index=False)
    with pytest.raises(FileValidationError) as ei:
        FilesProvider(d).reference()
    assert ei.value.file.name == "aaa.parquet" and ei.value.row == 3
    assert "first at AAA.csv row 2" in str(ei.value)


def test_text_in_a_number_column(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text(HEADER + GOOD + "2026-11-19,10,11,9,ten,100\n" + "2026-11-20,10,x,9,1,100\n")
    expect(f, 3, "Close", "not a number: 'ten'")
    assert "also: row 4 'High'" in _msg(f)


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "AAA.csv"
    f.write_text("")
    expect(f, 1, None, "empty")


def _msg(path: Path) -> str:
    with pytest.raises(ValidationError) as ei:
        FilesProvider(path).reference()
    return str(ei.value)


@pytest.mark.parametrize(("content", "row", "column", "text"), [
    ("Name,Type\nA,Common Stock\n", 1, "Symbol", "required column missing"),
    ("Symbol,Type\nAAA,Stock\n", 2, "Type", "unknown type 'Stock'; valid: Common Stock"),
    ("Symbol,Sector\nAAA,Tech\n", 2, "Sector", "unknown GICS sector 'Tech'"),
    ("Symbol,Sector,Industry\nAAA,Energy,Software\n", 2, "Industry",
     "unknown GICS industry 'Software' in Energy"),
    ("Symbol,SharesOutstanding\nAAA,lots\n", 2, "SharesOutstanding", "not a number: 'lots'"),
    ("Symbol,ListDate\nAAA,someday\n", 2, "ListDate", "cannot read 'someday' as a date"),
    ("Symbol\nAAA\n\nAAA\n", 4, "Symbol", "AAA listed twice (first at row 2)"),
])
def test_reference_errors(tmp_path: Path, content: str, row: int, column: str, text: str
                          ) -> None:
    (tmp_path / "AAA.csv").write_text(HEADER + GOOD)
    ref = tmp_path / "ref.txt"
    ref.write_text(content)
    with pytest.raises(FileValidationError) as ei:
        FilesProvider(tmp_path / "AAA.csv", ref).reference()
    e = ei.value
    assert e.file == ref and e.row == row and e.column == column
    assert str(e).startswith(f"{ref}: row {row}, column '{column}': ")
    assert text in str(e)


def test_reference_values_any_case_and_industry_implies_sector(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text(HEADER + GOOD)
    ref = tmp_path / "ref.csv"
    ref.write_text("SYMBOL,type,Industry,shares outstanding,List Date\n"
                   "AAA,adr,software,\"1,500,000\",\n")
    got = FilesProvider(tmp_path / "AAA.csv", ref).reference().iloc[0]
    assert (got["Type"], got["Sector"], got["Industry"]) == (gics.ADR, "Information Technology",
                                                             "Software")
    assert got["SharesOutstanding"] == 1.5e6
    assert got["ListDate"] == pd.Timestamp("2026-11-18")  # blank: the first bar


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="files_path"):
        make_provider(Settings(data_provider="files"))
    with pytest.raises(ConfigError, match="does not exist"):
        FilesProvider(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \.csv"):
        FilesProvider(tmp_path / "empty").reference()


# -- end to end ---------------------------------------------------------------------------------


def test_files_market_scans(synth: SyntheticProvider, frame: pd.DataFrame, tmp_path: Path
                            ) -> None:
    d = write_dir(frame, tmp_path / "bars")
    ref = tmp_path / "reference.csv"
    synth.reference().to_csv(ref, index=False)
    s = Settings(data_dir=tmp_path / "data", data_provider="files", files_path=d,
                 files_reference=ref, progress=False)
    md = MarketData(settings=s)
    try:
        assert isinstance(md.provider, FilesProvider)
        rep = md.ensure_current()
        assert rep.sessions_fetched == sessions_of(synth)
        res = scan(ScanConfig(min_history=20, lookback_days=30), md)
        assert len(res.frame) > 0
        assert res.stats["counters"]["api_calls"] == {}
    finally:
        md.store.close()


# -- corporate actions, raw or split-adjusted files ---------------------------------------------


def _provider(bars: str, actions: str | None, tmp_path: Path, adjusted: bool = True,
              name: str = "actions.csv") -> FilesProvider:
    (tmp_path / "bars").mkdir(parents=True, exist_ok=True)
    f = tmp_path / "bars" / "long.csv"
    f.write_text(bars)
    a = None
    if actions is not None:
        a = tmp_path / name
        a.write_text(actions)
    return FilesProvider(f, actions=a, adjusted=adjusted)


# Hand-written, labelled values (not market data): AAA splits 2-for-1 on 2026-11-18, BBB has a
# 1-for-8 reverse split on 2026-11-19 and pays a dividend on 2026-11-20.
RAW = ("symbol,date,open,high,low,close,volume\n"
       "AAA,2026-11-16,100,102,99,101,1000\n"
       "AAA,2026-11-17,101,104,100,102,1200\n"
       "AAA,2026-11-18,51,52,50,51.5,2600\n"
       "AAA,2026-11-19,51.5,53,51,52,2400\n"
       "AAA,2026-11-20,52,53,51,52.5,2200\n"
       "BBB,2026-11-16,0.5,0.52,0.48,0.5,80000\n"
       "BBB,2026-11-17,0.5,0.51,0.47,0.48,96000\n"
       "BBB,2026-11-18,0.48,0.5,0.46,0.47,88000\n"
       "BBB,2026-11-19,3.8,3.9,3.6,3.7,10000\n"
       "BBB,2026-11-20,3.7,3.8,3.5,3.6,12000\n")
ACTIONS = ("Ticker,Ex-Date,Type,Split Ratio,Amount\n"
           "AAA,2026-11-18,Split,2:1,\n"
           "BBB,2026-11-19,split,1-for-8,\n"
           "\n"
           "BBB,2026-11-20,DIVIDEND,,0.05\n")


def _vendor_adjusted(raw: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """The vendors' convention, written independently of the provider: prices divided by, and
    volume multiplied by, the ratios of the splits after each bar up to the last session."""
    out = raw.copy()
    last = pd.to_datetime(out["date"]).max()
    for _, a in actions[actions["Type"] == "split"].iterrows():
        if a["ExDate"] > last:
            continue
        rows = (out["symbol"] == a["Symbol"]) & (pd.to_datetime(out["date"]) < a["ExDate"])
        for f in ("open", "high", "low", "close"):
            out.loc[rows, f] = out.loc[rows, f] / a["Ratio"]
        out.loc[rows, "volume"] = out.loc[rows, "volume"] * a["Ratio"]
    return out


def test_actions_file_any_spelling(tmp_path: Path) -> None:
    p = _provider(RAW, ACTIONS, tmp_path, adjusted=False)
    acts = p.actions(dt.date(2026, 11, 1))
    assert tuple(acts.columns) == ACTION_COLUMNS
    assert acts["Symbol"].tolist() == ["AAA", "BBB", "BBB"]
    assert acts["ExDate"].dt.date.astype(str).tolist() == ["2026-11-18", "2026-11-19",
                                                            "2026-11-20"]
    assert acts["Type"].tolist() == ["split", "split", "dividend"]
    np.testing.assert_array_equal(acts["Ratio"].to_numpy(), [2.0, 0.125, np.nan])
    np.testing.assert_array_equal(acts["Amount"].to_numpy(), [np.nan, np.nan, 0.05])
    assert len(p.actions(dt.date(2026, 11, 19))) == 2  # ex-date on or after ``since``
    # Parquet, Polygon's split_from/split_to columns.
    pq = tmp_path / "actions.parquet"
    pd.DataFrame({"symbol": ["AAA"], "execution_date": [pd.Timestamp("2026-11-18")],
                  "type": ["split"], "split_from": [1], "split_to": [2]}).to_parquet(pq)
    q = FilesProvider(tmp_path / "bars" / "long.csv", actions=pq, adjusted=False)
    assert q.actions(dt.date(2026, 1, 1))["Ratio"].tolist() == [2.0]
    # No actions file: none.
    assert len(_provider(RAW, None, tmp_path).actions(dt.date(2000, 1, 1))) == 0


def test_raw_files_are_served_as_given_adjusted_ones_unadjusted(tmp_path: Path) -> None:
    raw = _provider(RAW, ACTIONS, tmp_path / "raw", adjusted=False)
    days = [dt.date(2026, 11, d) for d in range(16, 21)]
    want = canon(raw.bars_for_sessions(days))
    given = pd.read_csv(tmp_path / "raw" / "bars" / "long.csv")
    np.testing.assert_array_equal(want["close"].to_numpy(),
                                  given.sort_values(["date", "symbol"])["close"].to_numpy())
    adj = _vendor_adjusted(given, raw.actions(dt.date(2000, 1, 1)))
    assert adj.loc[0, "close"] == 50.5 and adj.loc[5, "close"] == 4.0  # AAA /2, BBB x8
    p = _provider(adj.to_csv(index=False), ACTIONS, tmp_path / "adj", adjusted=True)
    got = canon(p.bars_for_sessions(days))
    for f in FIELDS:
        np.testing.assert_allclose(got[f].to_numpy(), want[f].to_numpy(), rtol=1e-12,
                                   err_msg=f)
    # The same adjusted files read as raw are served as given: the setting matters.
    as_raw = _provider(adj.to_csv(index=False), ACTIONS, tmp_path / "adj2", adjusted=False)
    assert canon(as_raw.bars_for_sessions(days))["close"].iloc[0] == 50.5
    assert as_raw.store_key != p.store_key  # other bars from the same folder: another store
    # Adjusted files without an actions file are stored as given.
    plain = _provider(adj.to_csv(index=False), None, tmp_path / "adj3")
    assert canon(plain.bars_for_sessions(days))["close"].iloc[0] == 50.5


@pytest.mark.parametrize(("content", "row", "column", "text"), [
    ("symbol,ex_date,type,ratio\nAAA,2026-11-18,merger,2\n", 2, "type",
     "unknown type 'merger'; valid: split, dividend"),
    ("symbol,ex_date,type,ratio\nAAA,2026-11-18,split,two\n", 2, "ratio",
     "a split needs a ratio > 0"),
    ("symbol,ex_date,type,ratio\nAAA,2026-11-18,split,2\nAAA,2026-11-19,split,-2\n", 3,
     "ratio", "got '-2'"),
    ("symbol,ex_date,type,ratio\nAAA,2026-11-18,split,0:1\n", 2, "ratio",
     "a split needs a ratio > 0"),
    ("symbol,ex_date,type,amount\nAAA,2026-11-18,dividend,\n", 2, "amount",
     "a dividend needs an amount > 0"),
    ("symbol,type,ratio\nAAA,split,2\n", 1, "ex_date", "required column missing"),
    ("symbol,ex_date,ratio\nAAA,2026-11-18,2\n", 1, "type", "required column missing"),
    ("symbol,ex_date,type\nAAA,2026-11-18,split\n", 1, "ratio", "required column missing"),
    ("symbol,ex_date,type,ratio\nAAA,18.11.2026,split,2\n", 2, "ex_date",
     "cannot read '18.11.2026' as a date"),
    ("symbol,ex_date,type,ratio\nAAA,2026-11-18,split,2\n\nAAA,2026-11-18,split,3\n", 4,
     "ex_date", "split of AAA on 2026-11-18 listed twice (first at row 2)"),
])
def test_actions_file_errors(tmp_path: Path, content: str, row: int, column: str, text: str
                             ) -> None:
    p = _provider(RAW, content, tmp_path)
    with pytest.raises(FileValidationError) as ei:
        p.actions(dt.date(2026, 1, 1))
    e = ei.value
    f = tmp_path / "actions.csv"
    assert e.file == f and e.row == row and e.column == column, str(e)
    assert str(e).startswith(f"{f}: row {row}, column '{column}': "), str(e)
    assert text in str(e) and "\n" not in str(e)


def test_reference_with_delisted_listings(tmp_path: Path) -> None:
    (tmp_path / "AAA.csv").write_text(HEADER + GOOD)
    ref = tmp_path / "ref.csv"
    ref.write_text("Symbol,Delisted,Delist Reason\nAAA,,\nOLD,2024-03-01,Bankrupt\n"
                   "GONE,2025-06-30,\n")
    got = FilesProvider(tmp_path / "AAA.csv", ref).reference().set_index("Symbol")
    assert pd.isna(got.loc["AAA", "Delisted"]) and got.loc["AAA", "DelistReason"] is None
    assert got.loc["OLD", "Delisted"] == pd.Timestamp("2024-03-01")
    assert got.loc["OLD", "DelistReason"] == "bankrupt"
    assert got.loc["GONE", "DelistReason"] == "other"
    for content, text in (("Symbol,Delisted,DelistReason\nAAA,2025-01-02,merged\n",
                           "unknown delist reason 'merged'; valid: acquired, bankrupt, other"),
                          ("Symbol,DelistReason\nAAA,acquired\n", "needs the last session")):
        ref.write_text(content)
        with pytest.raises(FileValidationError) as ei:
            FilesProvider(tmp_path / "AAA.csv", ref).reference()
        assert ei.value.row == 2 and ei.value.column == "DelistReason" and text in str(ei.value)


# -- real bars: AAPL, IBM and MSFT 2003-01..2005-03 (tests/data/fixtures/real/README.md) --------

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"


def _real_market(tmp_path: Path, bars: Path, adjusted: bool) -> MarketData:
    s = Settings(data_dir=tmp_path / "data", data_provider="files", files_path=bars,
                 files_actions=REAL / "actions.csv", files_adjusted=adjusted, progress=False)
    return MarketData(settings=s)


def _split_view(bars: pd.DataFrame, actions: pd.DataFrame, basis: pd.Timestamp) -> pd.DataFrame:
    """Brute force: every bar adjusted for the splits with bar date < ex-date <= basis."""
    out = bars.copy()
    for _, a in actions[actions["Type"] == "split"].iterrows():
        if a["ExDate"] > basis:
            continue
        rows = (out["symbol"] == a["Symbol"]) & (out["date"] < a["ExDate"])
        for f in ("open", "high", "low", "close"):
            out.loc[rows, f] = out.loc[rows, f] / a["Ratio"]
        out.loc[rows, "volume"] = out.loc[rows, "volume"] * a["Ratio"]
    return out


def test_real_raw_and_adjusted_files_round_trip(tmp_path: Path) -> None:
    raw = pd.read_csv(REAL / "bars_raw.csv", parse_dates=["date"])
    acts = FilesProvider(REAL / "bars_raw.csv", actions=REAL / "actions.csv",
                         adjusted=False).actions(dt.date(2000, 1, 1))
    assert len(acts) == 16 and (acts["Type"] == "split").sum() == 2
    # The real splits, as traded: AAPL 88.99 -> 44.86 over 2005-02-28, MSFT 48.30 -> 24.96.
    close = raw.set_index(["symbol", "date"])["close"]
    assert close["AAPL", pd.Timestamp("2005-02-25")] == 88.99
    assert close["AAPL", pd.Timestamp("2005-02-28")] == 44.86
    assert close["MSFT", pd.Timestamp("2003-02-14")] == 48.3
    assert close["MSFT", pd.Timestamp("2003-02-18")] == 24.96
    # The vendor's split-adjusted files, made from the raw ones.
    last = raw["date"].max()
    adjusted = _split_view(raw, acts, last)
    adj_file = tmp_path / "adjusted.csv"
    adjusted.assign(date=adjusted["date"].dt.strftime("%Y-%m-%d")).to_csv(adj_file, index=False)
    sql = ("SELECT s.symbol, b.date, b.open, b.high, b.low, b.close, b.volume FROM bars b "
           "JOIN symbols s USING (sid) ORDER BY b.date, s.symbol")
    stores = {}
    for name, path, adj in (("raw", REAL / "bars_raw.csv", False), ("adjusted", adj_file, True)):
        md = _real_market(tmp_path / name, path, adj)
        try:
            rep = md.ensure_current()
            assert len(rep.sessions_fetched) == 565 and rep.failed == {}
            assert rep.actions_stored == 16 and rep.actions_dropped == {}
            stores[name] = (md.store.fetch_df(sql), md.store.actions(), md.store.content())
        finally:
            md.close()
    (bars_r, acts_r, digest_r), (bars_a, acts_a, digest_a) = stores["raw"], stores["adjusted"]
    # The same stored raw bars (2:1 splits un-adjust exactly) and the same actions.
    pd.testing.assert_frame_equal(bars_r, bars_a)
    pd.testing.assert_frame_equal(acts_r, acts_a)
    assert digest_r == digest_a
    want = raw.sort_values(["date", "symbol"]).reset_index(drop=True)
    np.testing.assert_array_equal(bars_r["close"].to_numpy(), want["close"].to_numpy())
    np.testing.assert_array_equal(bars_r["volume"].to_numpy(), want["volume"].to_numpy())
    # The same adjusted views: as of the last session they are the vendor's adjusted file, as
    # of 2005-02-25 (before AAPL's split) AAPL is as traded and MSFT adjusted.
    stored = bars_r.assign(date=pd.to_datetime(bars_r["date"]))
    stored_acts = acts_r.assign(ExDate=pd.to_datetime(acts_r["ExDate"]))
    view = _split_view(stored, stored_acts, last)
    for f in FIELDS:
        np.testing.assert_array_equal(
            view[f].to_numpy(),
            adjusted.sort_values(["date", "symbol"])[f].to_numpy(), err_msg=f)
    then = _split_view(stored, stored_acts, pd.Timestamp("2005-02-25"))
    aapl = then[then["symbol"] == "AAPL"]
    np.testing.assert_array_equal(aapl["close"].to_numpy(),
                                  want[want["symbol"] == "AAPL"]["close"].to_numpy())
    msft = then[(then["symbol"] == "MSFT") & (then["date"] == pd.Timestamp("2003-02-14"))]
    assert msft["close"].tolist() == [24.15]
    # No split shows as a jump in the adjusted view: the largest daily move stays real-sized.
    for _, g in view.groupby("symbol"):
        assert np.abs(np.diff(np.log(g["close"].to_numpy()))).max() < 0.2


def test_files_that_contradict_the_adjusted_setting_are_named_in_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw_bars = REAL / "bars_raw.csv"
    acts = REAL / "actions.csv"
    with caplog.at_level("WARNING"):
        FilesProvider(raw_bars, actions=acts, adjusted=False).reference()
    assert not [r for r in caplog.records if "TECHNIC_FILES_ADJUSTED" in r.getMessage()]
    with caplog.at_level("WARNING"):
        FilesProvider(raw_bars, actions=acts, adjusted=True).reference()
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "TECHNIC_FILES_ADJUSTED=true, but the bars" in msg and "2 split(s)" in msg
    assert "first: MSFT 2003-02-18" in msg
    caplog.clear()
    raw = pd.read_csv(raw_bars, parse_dates=["date"])
    adj = _split_view(raw, FilesProvider(raw_bars, actions=acts, adjusted=False).actions(
        dt.date(2000, 1, 1)), raw["date"].max())
    f = tmp_path / "adjusted.csv"
    adj.to_csv(f, index=False)
    with caplog.at_level("WARNING"):
        FilesProvider(f, actions=acts, adjusted=False).reference()
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "TECHNIC_FILES_ADJUSTED=false, but the bars" in msg and "do not move" in msg
