"""Your own daily bars from CSV or Parquet files (``TECHNIC_DATA_PROVIDER=files``).

``TECHNIC_FILES_PATH`` names either

- a **directory** with one file per symbol — ``AAPL.csv``, ``msft.parquet``, ``BRK.B.csv.gz`` —
  whose symbol is the file name without its suffix, upper-cased (a file in the directory that
  has a symbol column instead carries its own symbols); or
- **one file**, a long table with a ``symbol`` (or ``ticker``) column; a single file without one
  holds the bars of the symbol in its name.

Columns are found by name, in any case and with any spacing (``Date``, ``OPEN``, ``adj_close``):
``date``, ``open``, ``high``, ``low``, ``close``, ``volume`` are required. ``adj close`` (a
vendor's split- and dividend-adjusted close) is ignored, and so are other extra columns.

Raw or split-adjusted (``TECHNIC_FILES_ADJUSTED``, default ``true``): most downloads (Yahoo,
Stooq, a vendor's default) give open/high/low/close/volume split-adjusted as of the day they were
made; technic stores bars as traded, so it un-adjusts them with the splits of the actions file:
raw(t) = adjusted(t) x F(t), volume(t) = adjusted volume(t) / F(t), where F(t) is the product of
the ratios of the symbol's splits with t < ex-date <= the last session in the files. Such files
must be adjusted as of their last session: after a split, export the whole history again (with
the split in the actions file). Without an actions file (or without splits in it) the bars are
stored as given, and views show them as given. ``TECHNIC_FILES_ADJUSTED=false``: the files hold
prices as traded (a split shows as a jump), stored as they are; views adjust them with the
actions file. Changing either setting (or the actions file's path) starts another store.

Corporate actions (``TECHNIC_FILES_ACTIONS``, optional) are a CSV or Parquet table with columns
``symbol`` (or ``ticker``), ``ex_date`` (``ex-date``, ``exdate``, ``date``, ``execution_date``),
``type`` (``split`` or ``dividend``, any case) and ``ratio`` (splits: new shares per old share —
4-for-1 is ``4``, ``4:1`` or ``4/1``, a 1-for-8 reverse split ``0.125`` or ``1:8``; or the
columns ``split_from`` and ``split_to``) or ``amount`` (dividends: cash per share as paid on the
ex-date, unadjusted). The ex-date is the first session traded in the new share basis (or without
the dividend). A bad type, ratio, amount or date, a missing column or the same action twice is a
one-line error naming the file, row and column, as for bar files. Dates are ``YYYY-MM-DD`` (a time or a UTC offset may
follow: timestamps are read as New York dates), ``MM/DD/YYYY``, ``YYYY/MM/DD`` or
``YYYYMMDD``. An empty price or volume cell is a missing value: the row goes on to validation,
which drops and counts it like a vendor's bad row (as it does non-positive prices and high < low).

A file that cannot be read right — a missing or doubled column, a date that does not parse, a
value that is not a number, the same session twice for a symbol — raises
:class:`technic_v4.errors.ValidationError` (a :class:`FileValidationError`) whose message names
the file, the row as a spreadsheet shows it (the header is row 1, the first data row is row 2;
Parquet files are numbered the same way) and the column. Rows dated on days the NYSE was closed
are never served; they are counted in :attr:`FilesProvider.off_calendar_rows` and logged.

Reference data (``TECHNIC_FILES_REFERENCE``, optional) is a CSV with a ``Symbol`` column and
any of ``Name, Type, Exchange, Sector, Industry, SharesOutstanding, ListDate, Delisted,
DelistReason`` (``Delisted``: the last session a listing traded, blank while listed;
``DelistReason``: acquired, bankrupt or other, default other). Types, GICS
sectors and industries are checked against :mod:`technic_v4.universe.gics` (any case); a blank
Type is "Common Stock", a blank ListDate is the symbol's first bar. Without a reference file (and
for symbols with bars that it does not list) technic derives a minimal row: Name = Symbol, Type
"Common Stock", Exchange, Sector and Industry None, SharesOutstanding unknown (NaN), ListDate
the first bar. A listing whose shares outstanding are unknown has no market cap, so a scan's
``min_market_cap`` pre-screen drops it: give SharesOutstanding, or scan with
``min_market_cap=0``.

The files are read when first needed and read again when any of them changes (size or
modification time), so appending today's rows makes the next update fetch today's session.
``request_counts`` counts file reads (``file_reads``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from technic_v4.data.bars import FIELDS, BarBatch
from technic_v4.data.calendar import all_sessions
from technic_v4.data.providers.base import ACTION_COLUMNS, LISTING_STATUS_COLUMNS, REFERENCE_COLUMNS
from technic_v4.data.store import ACTION_TYPES, DELIST_REASONS
from technic_v4.errors import ConfigError, ValidationError
from technic_v4.universe import gics

if TYPE_CHECKING:
    from technic_v4.config.settings import Settings

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
NY = "America/New_York"
MAX_LISTED = 5  # problems listed in one error message

# Normalised header (lower case, no spaces/underscores/dashes) -> canonical column.
_BAR_ALIASES = {"date": "date", "datetime": "date", "timestamp": "date", "time": "date",
                "day": "date", "symbol": "symbol", "ticker": "symbol", "open": "open",
                "high": "high", "low": "low", "close": "close", "volume": "volume",
                "adjclose": "_ignored", "adjustedclose": "_ignored"}
_REF_ALIASES = {"symbol": "Symbol", "ticker": "Symbol", "name": "Name", "type": "Type",
                "exchange": "Exchange", "sector": "Sector", "industry": "Industry",
                "sharesoutstanding": "SharesOutstanding", "shares": "SharesOutstanding",
                "listdate": "ListDate", "listingdate": "ListDate", "delisted": "Delisted",
                "delistdate": "Delisted", "delisteddate": "Delisted",
                "delistingdate": "Delisted", "delistreason": "DelistReason",
                "delistedreason": "DelistReason", "delistingreason": "DelistReason"}
_ACTION_ALIASES = {"symbol": "Symbol", "ticker": "Symbol", "exdate": "ExDate",
                   "exdividenddate": "ExDate", "date": "ExDate", "executiondate": "ExDate",
                   "type": "Type", "actiontype": "Type", "action": "Type", "ratio": "Ratio",
                   "splitratio": "Ratio", "amount": "Amount", "cashamount": "Amount",
                   "dividend": "Amount", "splitfrom": "SplitFrom", "splitto": "SplitTo"}
_ACTION_TYPES = {"split": "split", "splits": "split", "stocksplit": "split",
                 "reversesplit": "split", "dividend": "dividend", "dividends": "dividend",
                 "cashdividend": "dividend", "cash": "dividend"}
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?::|/|-?\s*for\s*-?)\s*(\d+(?:\.\d+)?)\s*$",
                    re.IGNORECASE)
_NA = {"", "na", "n/a", "nan", "null", "none", "-"}
_OFFSET = r"\d[T ]\d.*(?:Z|[+-]\d\d:?\d\d)$"  # a time followed by a UTC offset


class FileValidationError(ValidationError):
    """A user file that cannot be read right; ``file``, ``row`` (1-based, header = 1) and
    ``column`` locate the first problem."""

    def __init__(self, message: str, file: Path, row: int, column: str | None) -> None:
        super().__init__(message)
        self.file = file
        self.row = row
        self.column = column


@dataclass
class _Problem:
    row: int
    column: str | None
    what: str


def _fail(file: Path, problems: list[_Problem]) -> FileValidationError:
    first = problems[0]
    where = f"row {first.row}" + (f", column '{first.column}'" if first.column else "")
    msg = f"{file}: {where}: {first.what}"
    rest = problems[1:]
    if rest:
        listed = "; ".join(f"row {p.row}" + (f" '{p.column}'" if p.column else "")
                           for p in rest[:MAX_LISTED])
        more = f" and {len(rest) - MAX_LISTED} more" if len(rest) > MAX_LISTED else ""
        msg += f" (also: {listed}{more})"
    return FileValidationError(msg, file, first.row, first.column)


def _norm(name: object) -> str:
    return re.sub(r"[\s_\-.]+", "", str(name).strip().lower())


def _suffix(p: Path) -> str | None:
    name = p.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def _symbol_of(p: Path) -> str:
    s = _suffix(p) or p.suffix
    return p.name[: len(p.name) - len(s)].strip().upper()


@dataclass
class _Loaded:
    symbol: np.ndarray
    date: np.ndarray
    values: np.ndarray  # (n, 5) open, high, low, close, volume
    reference: pd.DataFrame
    off_calendar: int
    actions: pd.DataFrame  # ACTION_COLUMNS


class FilesProvider:
    """Bars and reference data from the user's CSV/Parquet files (see module docstring)."""

    name = "files"
    fetch_batch_sessions = 1 << 30  # everything is local: any number of sessions per call

    def __init__(self, path: Path | str, reference: Path | str | None = None,
                 actions: Path | str | None = None, adjusted: bool = True) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise ConfigError("files_path", f"{self.path} does not exist; set TECHNIC_FILES_PATH "
                              "to a CSV/Parquet file or a directory of them")
        self.reference_path = (Path(reference).expanduser().resolve() if reference is not None
                               else None)
        if self.reference_path is not None and not self.reference_path.is_file():
            raise ConfigError("files_reference", f"{self.reference_path} is not a file")
        self.actions_path = (Path(actions).expanduser().resolve() if actions is not None
                             else None)
        if self.actions_path is not None and not self.actions_path.is_file():
            raise ConfigError("files_actions", f"{self.actions_path} is not a file; set "
                              "TECHNIC_FILES_ACTIONS to a CSV/Parquet file of splits and "
                              "dividends, or leave it unset")
        self.adjusted = adjusted  # the bar files' prices are split-adjusted (un-adjusted here)
        self._counts = {"file_reads": 0}
        self._sig: tuple[Any, ...] | None = None
        self._data: _Loaded | None = None
        self.derived_reference_rows = 0  # symbols with bars but no reference row

    @classmethod
    def from_settings(cls, settings: Settings) -> FilesProvider:
        if settings.files_path is None:
            raise ConfigError("files_path", "TECHNIC_DATA_PROVIDER=files needs TECHNIC_FILES_PATH: "
                              "a CSV/Parquet file with a symbol column, or a directory with one "
                              "file per symbol")
        return cls(settings.files_path, settings.files_reference, settings.files_actions,
                   settings.files_adjusted)

    def __repr__(self) -> str:
        return (f"FilesProvider(path={str(self.path)!r}, reference={self.reference_path!r}, "
                f"actions={self.actions_path!r}, adjusted={self.adjusted})")

    # -- provider interface ------------------------------------------------------------------------
    @property
    def store_key(self) -> str:
        """``files-<name>-<hash>``: another folder is another store, and so are other bars derived
        from the same folder (raw vs adjusted files, another actions file)."""
        ident = str(self.path)
        if not self.adjusted or self.actions_path is not None:
            ident += f"\0adjusted={self.adjusted}\0actions={self.actions_path}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        stem = re.sub(r"[^A-Za-z0-9]+", "-", self.path.name).strip("-")[:40] or "root"
        return f"files-{stem}-{digest}"

    @property
    def request_counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def off_calendar_rows(self) -> int:
        """Rows dated on days the NYSE was closed (never served)."""
        return self._load().off_calendar

    def first_session(self) -> dt.date:
        d = self._load().date
        s = all_sessions()
        i = int(np.searchsorted(s, d.min(), side="left"))
        return s[min(i, len(s) - 1)].astype(dt.date)

    def latest_session(self) -> dt.date:
        d = self._load().date
        s = all_sessions()
        i = int(np.searchsorted(s, d.max(), side="right")) - 1
        return s[max(i, 0)].astype(dt.date)

    def reference(self) -> pd.DataFrame:
        return self._load().reference.copy()

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        data = self._load()
        want = np.asarray(list(sessions), dtype="datetime64[D]")
        return self._take(data, np.flatnonzero(np.isin(data.date, want)))

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        data = self._load()
        m = (np.isin(data.symbol, list(symbols)) & (data.date >= np.datetime64(start, "D"))
             & (data.date <= np.datetime64(end, "D")))
        return self._take(data, np.flatnonzero(m))

    def actions(self, since: dt.date) -> pd.DataFrame:
        """The actions file's rows with ex-date on or after ``since`` (:data:`ACTION_COLUMNS`;
        none without an actions file)."""
        acts = self._load().actions
        return acts[acts["ExDate"] >= pd.Timestamp(since)].reset_index(drop=True)

    # -- loading ---------------------------------------------------------------------------------
    @staticmethod
    def _take(data: _Loaded, idx: np.ndarray) -> BarBatch:
        v = data.values[idx]
        return BarBatch(data.symbol[idx], data.date[idx],
                        *(np.ascontiguousarray(v[:, j]) for j in range(len(FIELDS))))

    def _bar_files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        files = sorted(p for p in self.path.iterdir()
                       if p.is_file() and not p.name.startswith(".") and _suffix(p) is not None
                       and p.resolve() != self.reference_path)
        files = [p for p in files if p.resolve() != self.actions_path]
        if not files:
            raise ConfigError("files_path", f"no {', '.join(SUFFIXES)} files in {self.path}")
        return files

    def _signature(self, files: list[Path]) -> tuple[Any, ...]:
        paths = [*files, *(p for p in (self.reference_path, self.actions_path) if p is not None)]
        out = []
        for p in paths:
            st = p.stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _load(self) -> _Loaded:
        files = self._bar_files()
        sig = self._signature(files)
        if self._data is not None and sig == self._sig:
            return self._data
        parts = [self._read_bars(p) for p in files]
        acts = (_empty_actions() if self.actions_path is None
                else self._read_actions(self.actions_path))
        data = self._combine(files, parts, acts)
        self._data, self._sig = data, sig
        return data

    def _read(self, path: Path) -> pd.DataFrame:
        """A file as a frame (CSV cells as strings); raises FileValidationError if unreadable."""
        self._counts["file_reads"] += 1
        try:
            if _suffix(path) in (".parquet", ".pq"):
                return pd.read_parquet(path)
            return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
        except pd.errors.EmptyDataError as e:
            raise _fail(path, [_Problem(1, None, "the file is empty (no header row)")]) from e
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise _fail(path, [_Problem(1, None, f"cannot read as CSV: {e}")]) from e
        except (OSError, ValueError) as e:
            raise _fail(path, [_Problem(1, None, f"cannot read the file: {e}")]) from e

    def _read_bars(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 str]:
        """(symbols, dates, values (n, 5), spreadsheet row numbers, date column) of a file."""
        df = self._read(path)
        cols = _columns(path, df, _BAR_ALIASES)
        required = ["date", *FIELDS]
        missing = [c for c in required if c not in cols]
        if missing:
            found = ", ".join(repr(str(c)) for c in df.columns) or "none"
            raise _fail(path, [_Problem(1, c, f"required column missing (the header has {found};"
                                        " required: date, open, high, low, close, volume, in any "
                                        "case, and symbol for a long table)") for c in missing])
        rows = np.arange(len(df)) + 2
        if _suffix(path) not in (".parquet", ".pq") and len(df.columns):  # CSV: all strings
            blank = (df.astype(str).apply(lambda s: s.str.strip()) == "").all(axis=1).to_numpy()
            df, rows = df[~blank], rows[~blank]
        problems: list[_Problem] = []
        dates = _parse_dates(df[cols["date"]], rows, cols["date"], problems)
        values = np.column_stack([_parse_numbers(df[cols[f]], rows, cols[f], problems)
                                  for f in FIELDS]) if len(df) else np.empty((0, 5))
        if "symbol" in cols:
            sym = df[cols["symbol"]].astype(str).str.strip().to_numpy(dtype=object)
            bad = (sym == "") | (sym == "nan") | (sym == "None")
            problems += [_Problem(int(r), cols["symbol"], "empty symbol") for r in rows[bad]]
        else:
            s = _symbol_of(path)
            if not s:
                raise _fail(path, [_Problem(1, None, "no symbol column and no symbol in the "
                                            "file name")])
            sym = np.full(len(df), s, dtype=object)
        if problems:
            problems.sort(key=lambda p: p.row)
            raise _fail(path, problems)
        return sym, dates, values, rows, cols["date"]

    def _combine(self, files: list[Path], parts: list[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                             np.ndarray, str]],
                 acts: pd.DataFrame) -> _Loaded:
        sym = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=object)
        date = np.concatenate([p[1] for p in parts]).astype("datetime64[D]")
        values = np.concatenate([p[2] for p in parts]).reshape(-1, 5).astype(np.float64)
        rows = np.concatenate([p[3] for p in parts])
        fid = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
        if len(sym) == 0:
            raise _fail(files[0], [_Problem(2, None, "no bars in the files")])
        # The same session twice for a symbol: report the later row, naming the first.
        order = np.lexsort((rows, fid, date, sym.astype(str)))
        s_o, d_o = sym[order], date[order]
        dup = np.flatnonzero((s_o[1:] == s_o[:-1]) & (d_o[1:] == d_o[:-1])) + 1
        if len(dup):
            by_file: dict[int, list[_Problem]] = {}
            for k in dup.tolist():
                i, j = order[k], order[k - 1]
                first = f"row {rows[j]}" if fid[i] == fid[j] else f"{files[fid[j]].name} row {rows[j]}"
                by_file.setdefault(int(fid[i]), []).append(_Problem(
                    int(rows[i]), parts[int(fid[i])][4], f"duplicate session {d_o[k]} for {s_o[k]} "
                    f"(first at {first})"))
            f0 = min(by_file)
            raise _fail(files[f0], sorted(by_file[f0], key=lambda p: p.row))
        on_cal = np.isin(date, all_sessions())
        off = int((~on_cal).sum())
        if off:
            log.warning("%d rows in %s are dated on days the NYSE was closed (first: %s); they "
                        "are not used", off, self.path, date[~on_cal].min())
        keep = np.flatnonzero(on_cal)
        if len(keep) == 0:
            raise _fail(files[0], [_Problem(2, parts[0][4], "no row is dated on a day the NYSE "
                                            "was open")])
        order = keep[np.lexsort((sym[keep].astype(str), date[keep]))]
        sym, date, values = sym[order], date[order], values[order]
        _check_basis(self.path, sym, date, values, acts, self.adjusted)
        if self.adjusted:
            values = _unadjust(sym, date, values, acts)
        ref = self._reference(sym, date)
        return _Loaded(sym, date, values, ref, off, acts)

    # -- reference -------------------------------------------------------------------------------
    def _reference(self, sym: np.ndarray, date: np.ndarray) -> pd.DataFrame:
        codes, uniq = pd.factorize(sym)
        first = np.full(len(uniq), np.datetime64("NaT"), dtype="datetime64[D]")
        if len(codes):
            firsts = pd.Series(date).groupby(codes).min()
            first[firsts.index.to_numpy()] = firsts.to_numpy().astype("datetime64[D]")
        first_of = dict(zip(uniq.tolist(), first.tolist(), strict=True))
        if self.reference_path is None:
            ref = pd.DataFrame({c: pd.Series(dtype=object) for c in
                                (*REFERENCE_COLUMNS, *LISTING_STATUS_COLUMNS)})
        else:
            ref = self._read_reference(self.reference_path)
        known = set(ref["Symbol"])
        extra = [s for s in uniq.tolist() if s not in known]
        self.derived_reference_rows = len(extra)
        if extra and self.reference_path is not None:
            log.warning("%d symbols have bars but no row in %s (first: %s): minimal reference "
                        "rows derived (Type Common Stock, no sector, unknown shares)", len(extra),
                        self.reference_path, extra[0])
        minimal = pd.DataFrame({"Symbol": extra, "Name": extra,
                                "Type": [gics.COMMON_STOCK] * len(extra),
                                "Exchange": [None] * len(extra), "Sector": [None] * len(extra),
                                "Industry": [None] * len(extra),
                                "SharesOutstanding": np.full(len(extra), np.nan),
                                "ListDate": [first_of[s] for s in extra],
                                "Delisted": [None] * len(extra),
                                "DelistReason": [None] * len(extra)},
                               columns=[*REFERENCE_COLUMNS, *LISTING_STATUS_COLUMNS])
        out = minimal if not len(ref) else ref if not len(minimal) else pd.concat(
            [ref, minimal], ignore_index=True)
        blank = out["ListDate"].isna()
        out.loc[blank, "ListDate"] = [first_of.get(s) for s in out.loc[blank, "Symbol"]]
        out["SharesOutstanding"] = pd.to_numeric(out["SharesOutstanding"]).astype(np.float64)
        out["ListDate"] = pd.to_datetime(out["ListDate"])
        out["Delisted"] = pd.to_datetime(out["Delisted"])
        out["DelistReason"] = out["DelistReason"].astype(object).where(
            out["Delisted"].notna(), None)
        return out[[*REFERENCE_COLUMNS, *LISTING_STATUS_COLUMNS]].reset_index(drop=True)

    def _read_reference(self, path: Path) -> pd.DataFrame:
        df = self._read(path)
        cols = _columns(path, df, _REF_ALIASES)
        if "Symbol" not in cols:
            found = ", ".join(repr(str(c)) for c in df.columns) or "none"
            raise _fail(path, [_Problem(1, "Symbol", f"required column missing (the header has "
                                        f"{found}; columns: {', '.join(REFERENCE_COLUMNS)})")])
        rows = np.arange(len(df)) + 2
        cell = {c: pd.Series(df[src].to_numpy(dtype=object), dtype=object).map(
            lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else
            str(x).strip()).to_numpy(dtype=object) for c, src in cols.items()}
        for c, v in cell.items():
            if c != "Symbol":
                v[np.isin(np.char.lower(v.astype(str)), list(_NA))] = ""
        blank = np.all([v == "" for v in cell.values()], axis=0)
        keep = np.flatnonzero(~blank)
        rows = rows[keep]
        cell = {c: v[keep] for c, v in cell.items()}
        n = len(rows)

        def col(c: str) -> np.ndarray:
            return cell[c] if c in cell else np.full(n, "", dtype=object)

        problems: list[_Problem] = []
        shares = np.full(n, np.nan)
        if "SharesOutstanding" in cols:
            txt = pd.Series(col("SharesOutstanding"), dtype=object).str.replace(
                r"[,_\s]", "", regex=True)
            shares = _parse_numbers(txt, rows, cols["SharesOutstanding"], problems)
        list_day = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        if "ListDate" in cols:
            list_day = _parse_dates(pd.Series(col("ListDate"), dtype=object), rows,
                                    cols["ListDate"], problems, allow_empty=True)
        delisted = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        if "Delisted" in cols:
            delisted = _parse_dates(pd.Series(col("Delisted"), dtype=object), rows,
                                    cols["Delisted"], problems, allow_empty=True)
        reasons = np.full(n, None, dtype=object)
        for k, (row, why) in enumerate(zip(rows.tolist(), col("DelistReason"), strict=True)):
            if why and why.lower() not in DELIST_REASONS:
                problems.append(_Problem(row, cols["DelistReason"], f"unknown delist reason "
                                         f"{why!r}; valid: {', '.join(DELIST_REASONS)}"))
            elif why and np.isnat(delisted[k]):
                problems.append(_Problem(row, cols["DelistReason"], "a delist reason needs the "
                                         "last session traded in the Delisted column"))
            elif not np.isnat(delisted[k]):
                reasons[k] = why.lower() if why else "other"
        types = {t.lower(): t for t in gics.TYPES}
        sectors = {s.lower(): s for s in gics.SECTORS}
        industries = {i.lower(): (s, i) for s, inds in gics.SECTOR_INDUSTRIES.items()
                      for i in inds}
        seen: dict[str, int] = {}
        typ_out, sec_out, ind_out = [], [], []
        sym, typ, sec, ind = col("Symbol"), col("Type"), col("Sector"), col("Industry")
        for k, row in enumerate(rows.tolist()):
            if sym[k] == "":
                problems.append(_Problem(row, cols["Symbol"], "empty symbol"))
            elif sym[k] in seen:
                problems.append(_Problem(row, cols["Symbol"],
                                         f"{sym[k]} listed twice (first at row {seen[sym[k]]})"))
            seen.setdefault(sym[k], row)
            t = typ[k]
            if t and t.lower() not in types:
                problems.append(_Problem(row, cols.get("Type"), f"unknown type {t!r}; valid: "
                                         f"{', '.join(gics.TYPES)}"))
            typ_out.append(types.get(t.lower(), gics.COMMON_STOCK))
            sector = sectors.get(sec[k].lower()) if sec[k] else None
            if sec[k] and sector is None:
                problems.append(_Problem(row, cols.get("Sector"), f"unknown GICS sector "
                                         f"{sec[k]!r}; valid: {', '.join(gics.SECTORS)}"))
            industry = None
            if ind[k]:
                hit = industries.get(ind[k].lower())
                if hit is None or (sector is not None and hit[0] != sector):
                    valid = gics.SECTOR_INDUSTRIES[sector] if sector else gics.INDUSTRIES
                    problems.append(_Problem(row, cols.get("Industry"), f"unknown GICS industry "
                                             f"{ind[k]!r}" + (f" in {sector}" if sector else "")
                                             + f"; valid: {', '.join(valid)}"))
                else:
                    sector, industry = hit
            sec_out.append(sector)
            ind_out.append(industry)
        if problems:
            problems.sort(key=lambda p: p.row)
            raise _fail(path, problems)
        name = col("Name")
        exch = col("Exchange")
        return pd.DataFrame({
            "Symbol": pd.Series(sym, dtype=object),
            "Name": pd.Series(np.where(name == "", sym, name), dtype=object),
            "Type": pd.Series(typ_out, dtype=object),
            "Exchange": pd.Series([e or None for e in exch], dtype=object),
            "Sector": pd.Series(sec_out, dtype=object),
            "Industry": pd.Series(ind_out, dtype=object),
            "SharesOutstanding": shares,
            "ListDate": pd.Series(list_day.tolist(), dtype=object),
            "Delisted": pd.Series(delisted.tolist(), dtype=object),
            "DelistReason": pd.Series(reasons, dtype=object),
        }, columns=[*REFERENCE_COLUMNS, *LISTING_STATUS_COLUMNS])


    # -- corporate actions -------------------------------------------------------------------------
    def _read_actions(self, path: Path) -> pd.DataFrame:
        """The actions file as :data:`ACTION_COLUMNS` (sorted by ex-date, symbol); raises
        FileValidationError naming the row and column of the first problem."""
        df = self._read(path)
        cols = _columns(path, df, _ACTION_ALIASES)
        need = {"Symbol": "symbol", "ExDate": "ex_date", "Type": "type"}
        missing = [c for c in need if c not in cols]
        if not ({"Ratio", "Amount"} & set(cols) or {"SplitFrom", "SplitTo"} <= set(cols)):
            missing.append("Ratio")
        if missing:
            found = ", ".join(repr(str(c)) for c in df.columns) or "none"
            raise _fail(path, [_Problem(1, need.get(c, "ratio"), f"required column missing (the "
                                        f"header has {found}; columns: symbol, ex_date, type "
                                        "(split or dividend), and ratio (splits) or amount "
                                        "(dividends), in any case)") for c in missing])
        rows = np.arange(len(df)) + 2
        cell = {c: pd.Series(df[src].to_numpy(dtype=object), dtype=object).map(
            lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else
            str(x).strip()).to_numpy(dtype=object) for c, src in cols.items()}
        for v in cell.values():
            v[np.isin(np.char.lower(v.astype(str)), list(_NA))] = ""
        keep = np.flatnonzero(~np.all([v == "" for v in cell.values()], axis=0))
        rows, n = rows[keep], len(keep)
        cell = {c: v[keep] for c, v in cell.items()}

        def col(c: str) -> np.ndarray:
            return cell[c] if c in cell else np.full(n, "", dtype=object)

        problems: list[_Problem] = []
        ex = _parse_dates(pd.Series(col("ExDate"), dtype=object), rows, cols["ExDate"],
                          problems)
        sym = col("Symbol")
        typ = np.array([_ACTION_TYPES.get(_norm(t), "") for t in col("Type")], dtype=object)
        ratio, amount = np.full(n, np.nan), np.full(n, np.nan)
        seen: dict[tuple[str, Any, str], int] = {}
        for k, row in enumerate(rows.tolist()):
            if sym[k] == "":
                problems.append(_Problem(row, cols["Symbol"], "empty symbol"))
            if typ[k] == "":
                problems.append(_Problem(row, cols["Type"], f"unknown type {col('Type')[k]!r}; "
                                         f"valid: {', '.join(ACTION_TYPES)}"))
            elif typ[k] == "split":
                r, where = _ratio(col("Ratio")[k], col("SplitFrom")[k], col("SplitTo")[k])
                if r is None:
                    given = col("Ratio")[k] or (f"{col('SplitTo')[k]!r} for "
                                                f"{col('SplitFrom')[k]!r}")
                    problems.append(_Problem(row, cols.get(where, where), "a split needs a "
                                             "ratio > 0: new shares per old share (4-for-1: 4 "
                                             "or 4:1; 1-for-8 reverse: 0.125 or 1:8); got "
                                             f"{given!r}"))
                else:
                    ratio[k] = r
            else:
                a = _number(col("Amount")[k])
                if a is None or not a > 0:
                    problems.append(_Problem(row, cols.get("Amount", "amount"), "a dividend "
                                             "needs an amount > 0 (cash per share as paid); got "
                                             f"{col('Amount')[k]!r}"))
                else:
                    amount[k] = a
            key = (sym[k], ex[k], typ[k])
            if key in seen and typ[k]:
                problems.append(_Problem(row, cols["ExDate"], f"{typ[k]} of {sym[k]} on {ex[k]} "
                                         f"listed twice (first at row {seen[key]})"))
            seen.setdefault(key, row)
        if problems:
            problems.sort(key=lambda p: p.row)
            raise _fail(path, problems)
        out = pd.DataFrame({"Symbol": pd.Series(sym, dtype=object),
                            "ExDate": pd.to_datetime(ex), "Type": pd.Series(typ, dtype=object),
                            "Ratio": ratio, "Amount": amount}, columns=list(ACTION_COLUMNS))
        return out.sort_values(["ExDate", "Symbol", "Type"]).reset_index(drop=True)


def _empty_actions() -> pd.DataFrame:
    return pd.DataFrame({"Symbol": pd.Series(dtype=object),
                         "ExDate": pd.Series(dtype="datetime64[ns]"),
                         "Type": pd.Series(dtype=object), "Ratio": pd.Series(dtype=float),
                         "Amount": pd.Series(dtype=float)})


def _number(text: str) -> float | None:
    try:
        v = float(text.replace(",", ""))
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _ratio(ratio: str, split_from: str, split_to: str) -> tuple[float | None, str]:
    """A split's ratio (new shares per old share) and the column it came from; None if bad."""
    if ratio:
        m = _RATIO.match(ratio)
        r = float(m.group(1)) / float(m.group(2)) if m and float(m.group(2)) else _number(ratio)
        return (r if r is not None and r > 0 else None), "Ratio"
    to, frm = _number(split_to), _number(split_from)
    if to is None or frm is None or not (to > 0 and frm > 0):
        return None, "SplitTo" if split_to or split_from else "Ratio"
    return to / frm, "SplitTo"


def _check_basis(path: Path, sym: np.ndarray, date: np.ndarray, values: np.ndarray,
                 acts: pd.DataFrame, adjusted: bool) -> None:
    """Warn when the bars around the actions' splits contradict ``TECHNIC_FILES_ADJUSTED``:
    raw files show a split as a jump of its ratio from the last close before the ex-date to
    the first open on it; adjusted files do not."""
    splits = acts[(acts["Type"] == "split") & ((acts["Ratio"] - 1.0).abs() > 0.2)]
    raw_like, adj_like = [], []
    for s, ex, r in zip(splits["Symbol"], splits["ExDate"].to_numpy("datetime64[D]"),
                        splits["Ratio"], strict=True):
        rows = np.flatnonzero(sym == s)
        i = int(np.searchsorted(date[rows], ex, side="left"))
        if i == 0 or i == len(rows):
            continue  # no bar on one side of the split
        jump = values[rows[i - 1], 3] / values[rows[i], 0]  # last close / first open
        if not np.isfinite(jump) or jump <= 0:
            continue
        if abs(np.log(jump / r)) < abs(np.log(jump)) / 2:
            raw_like.append(f"{s} {ex}")
        elif abs(np.log(jump)) < abs(np.log(r)) / 2:
            adj_like.append(f"{s} {ex}")
    if adjusted and raw_like:
        log.warning("TECHNIC_FILES_ADJUSTED=true, but the bars in %s jump by the split ratio at "
                    "%d split(s) (first: %s), as prices as traded do: set "
                    "TECHNIC_FILES_ADJUSTED=false if the files hold raw prices", path,
                    len(raw_like), raw_like[0])
    if not adjusted and adj_like:
        log.warning("TECHNIC_FILES_ADJUSTED=false, but the bars in %s do not move at %d "
                    "split(s) (first: %s), as split-adjusted prices do: set "
                    "TECHNIC_FILES_ADJUSTED=true if the files are split-adjusted", path,
                    len(adj_like), adj_like[0])


def _unadjust(sym: np.ndarray, date: np.ndarray, values: np.ndarray, acts: pd.DataFrame
              ) -> np.ndarray:
    """Bars split-adjusted as of their last session, as traded: prices x F(t), volume / F(t),
    F(t) = the product of the ratios of the symbol's splits with t < ex-date <= that session."""
    last = date.max() if len(date) else np.datetime64("NaT")
    splits = acts[(acts["Type"] == "split")
                  & (acts["ExDate"].to_numpy("datetime64[D]") <= last)]
    if len(splits) == 0:
        return values
    values = values.copy()
    ex = splits["ExDate"].to_numpy("datetime64[D]")
    ratio = splits["Ratio"].to_numpy(np.float64)
    for s in np.unique(splits["Symbol"].to_numpy(dtype=object)).tolist():
        mine = splits["Symbol"].to_numpy(dtype=object) == s
        order = np.argsort(ex[mine], kind="stable")
        days, r = ex[mine][order], ratio[mine][order]
        # suffix[i] = product of r[i:]: the factor of a bar dated before days[i] (and on or
        # after days[i - 1]).
        suffix = np.append(np.cumprod(r[::-1])[::-1], 1.0)
        rows = np.flatnonzero(sym == s)
        f = suffix[np.searchsorted(days, date[rows], side="right")]
        hit = f != 1.0
        rows, f = rows[hit], f[hit]
        values[rows, :4] *= f[:, None]
        values[rows, 4] /= f
    return values


def _columns(path: Path, df: pd.DataFrame, aliases: dict[str, str]) -> dict[str, str]:
    """canonical name -> the file's column name; a column named twice is an error."""
    out: dict[str, str] = {}
    for c in df.columns:
        canon = aliases.get(_norm(c))
        if canon is None or canon == "_ignored":
            continue
        if canon in out:
            raise _fail(path, [_Problem(1, str(c), f"column {canon!r} appears twice (as "
                                        f"{out[canon]!r} and {str(c)!r})")])
        out[canon] = str(c)
    return out


def _parse_dates(col: pd.Series, rows: np.ndarray, name: str, problems: list[_Problem],
                 allow_empty: bool = False) -> np.ndarray:
    """Dates as ``datetime64[D]`` (New York dates for timestamps); problems appended."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        ts = pd.DatetimeIndex(col)
        if ts.tz is not None:
            ts = ts.tz_convert(NY).tz_localize(None)
        out = ts.to_numpy().astype("datetime64[D]")
        if not allow_empty:
            problems += [_Problem(int(r), name, "empty date") for r in rows[np.isnat(out)]]
        return out
    s = col.map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x))
                else str(x).strip())
    s = pd.Series(s.to_numpy(dtype=object), dtype=object)
    out = np.full(len(s), np.datetime64("NaT"), dtype="datetime64[D]")
    todo = (s != "").to_numpy()
    if todo.any():
        # Timestamps with a UTC offset are New York dates; naive ones are dates as written.
        aware = todo & s.str.contains(_OFFSET, regex=True).to_numpy()
        for mask, utc in ((todo & ~aware, False), (aware, True)):
            if not mask.any():
                continue
            try:
                idx = pd.DatetimeIndex(pd.to_datetime(s[mask], format="ISO8601",
                                                      errors="coerce", utc=utc))
            except ValueError:  # mixed offsets the pattern missed: reported row by row below
                continue
            if idx.tz is not None:
                idx = idx.tz_convert(NY).tz_localize(None)
            out[mask] = idx.to_numpy().astype("datetime64[D]")
        for fmt in ("%m/%d/%Y", "%Y/%m/%d", "%Y%m%d"):
            left = todo & np.isnat(out)
            if not left.any():
                break
            more = pd.to_datetime(s[left], format=fmt, errors="coerce")
            out[left] = pd.DatetimeIndex(more).to_numpy().astype("datetime64[D]")
    bad = np.isnat(out) & (todo | (not allow_empty))
    for r, v in zip(rows[bad].tolist(), s[bad].tolist(), strict=True):
        problems.append(_Problem(int(r), name, "empty date" if v == "" else
                                 f"cannot read {v!r} as a date (use YYYY-MM-DD)"))
    return out


def _parse_numbers(col: pd.Series, rows: np.ndarray, name: str, problems: list[_Problem]
                   ) -> np.ndarray:
    """Floats; empty/NA cells are NaN (validation drops those rows); text is a problem."""
    if pd.api.types.is_bool_dtype(col.dtype):
        problems.append(_Problem(int(rows[0]) if len(rows) else 2, name, "true/false is not a "
                                 "number"))
        return np.full(len(col), np.nan)
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    s = pd.Series(col.to_numpy(dtype=object), dtype=object).map(
        lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x).strip())
    na = s.str.lower().isin(_NA).to_numpy()
    num = pd.to_numeric(s.where(~na, None), errors="coerce").to_numpy(dtype=np.float64,
                                                                          na_value=np.nan)
    bad = ~na & np.isnan(num)
    for r, v in zip(rows[bad].tolist(), s[bad].tolist(), strict=True):
        problems.append(_Problem(int(r), name, f"not a number: {v!r}"))
    return num
