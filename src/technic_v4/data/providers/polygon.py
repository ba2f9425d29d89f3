"""Polygon.io / Massive REST provider: raw calls only (validation happens above, in ``bars.py``).

Endpoints (request counters use the names on the left):

====================  =============================================================================
``grouped_daily``     ``GET /v2/aggs/grouped/locale/us/market/stocks/{date}?adjusted=false`` — one
                      per session; fields T, o, h, l, c, v (vw, t, n are read or ignored)
``aggs_ticker``       ``GET /v2/aggs/ticker/{T}/range/1/day/{from}/{to}?adjusted=false&sort=asc&
                      limit=50000``, following ``next_url``
``tickers``           ``GET /v3/reference/tickers?market=stocks&active=true&limit=1000``, following
                      ``next_url``
``delisted_tickers``  ``GET /v3/reference/tickers?market=stocks&active=false&sort=delisted_utc&
                      order=desc&limit=1000``, following ``next_url`` only as far as needed
``ticker_details``    ``GET /v3/reference/tickers/{T}`` — SIC code, shares outstanding, list date
                      (``?date=`` the last session for a delisted ticker)
``splits``            ``GET /v3/reference/splits?execution_date.gte=...&execution_date.lte=...``,
                      following ``next_url``
``dividends``         ``GET /v3/reference/dividends?ex_dividend_date.gte=...&ex_dividend_date.lte=
                      ...``, following ``next_url``
====================  =============================================================================

Bars are requested **unadjusted** (``adjusted=false``: as traded); splits and dividends come
separately, as corporate actions (:meth:`PolygonProvider.actions`), and a new split is one more
action row, never a re-fetch of history.

Corporate actions (``actions(since)``), ex-dates from ``since`` through the latest session
(announced future actions are not returned: they arrive once their ex-date is a session served):

- splits: ``Ratio = split_to / split_from`` (a 4-for-1 has ``split_from`` 1, ``split_to`` 4:
  4.0; a 1-for-10 reverse split 0.1); ``ExDate`` = ``execution_date``, the first session
  traded in the new share basis.
- dividends: every **cash** distribution counts, whatever ``dividend_type``: ``CD`` (regular),
  ``SC`` (special cash), ``LT`` / ``ST`` (a fund's long- and short-term capital gain
  distributions) — each is cash paid per share that comes off the price on the ex-date, as the
  usual total-return convention (CRSP, Yahoo's adjusted close) counts them. ``Amount`` =
  ``cash_amount``, ``ExDate`` = ``ex_dividend_date``. Only US dollar amounts are kept (the bars
  are in dollars): a row whose ``currency`` is another currency is skipped and counted in
  :attr:`PolygonProvider.skipped_actions` (``dividend_currency``); a row without ``currency``
  is taken as dollars. A ``dividend_type`` outside those four is skipped and counted
  (``dividend_type``).
- Bad values are handled as for bars: returned as sent for the store's one validation step
  (``Store.upsert_actions`` drops and counts a missing or unreadable ex-date as
  ``missing_ex_date``, a non-positive or non-finite ratio or amount — ``null``, 0, negative,
  ``split_from`` 0 — as ``bad_value``, a ticker it does not list as ``unknown_symbol``). Only
  rows that cannot be read at all (not an object, no ticker, a value that is not a number) are
  dropped here and counted in :attr:`PolygonProvider.malformed_rows`
  (``splits_row``, ``dividends_row``).

Delisted listings (survivorship): :meth:`PolygonProvider.reference` lists every listing known
through the latest session, delisted ones included:

- ``Delisted`` is the **last session the listing traded**: the last session whose close had
  passed at the vendor's ``delisted_utc``. Polygon stamps it at 00:00 New York of the day the
  ticker stopped being active (``2019-10-07T04:00:00Z``: no longer trading on Monday the 7th,
  so the last session is Friday the 4th); a time after a session's close keeps that session.
  The vendor's date is when it marked the ticker inactive, which can lag the real last trade
  by a few days; the store keeps whichever bars the vendor has.
- ``DelistReason`` is ``"other"``: Polygon does not say why a ticker was delisted
  (acquisition, bankruptcy, exchange non-compliance all look alike).
- A delisted ticker whose last session is before the provider's first session never traded in
  the history served: it is left out. One that stopped trading after the latest session (a
  provider pinned to a past ``end``) was still listed then: ``Delisted`` is NaT.
- A symbol that is listed again (a new company reusing it) is the active listing: the
  delisted one is left out (the store keys listings by symbol) and counted in
  :attr:`PolygonProvider.delisted_shadowed`.
- The delisted list is cached like the active one (``tickers_ttl``) and refreshed
  incrementally: pages sorted by ``delisted_utc``, newest first, are followed only until they
  reach the newest delisting already cached less ``delisted_overlap`` (7 days, for delistings
  the vendor records late), or, on the first fetch, the first session. A daily refresh is
  one request. A delisted ticker's details are asked once (``?date=`` its last session, so a
  reused symbol answers for the old company) and never refreshed: they no longer change.

What the provider does with what the vendor sends:

- Bars are returned as sent, bad values included (NaN, ``null`` -> NaN, negative or zero prices,
  high < low, duplicate tickers): :func:`technic_v4.data.bars.validate` drops and counts them.
  Only rows that cannot be read at all (a required field absent, a value that is not a number,
  a ``t`` on another day than the one asked for) are dropped here and counted in
  :attr:`PolygonProvider.malformed_rows` by reason.
- A grouped day without ``results`` (or with ``resultsCount`` 0: a holiday, or no data yet) is an
  empty batch for that day, recorded in :attr:`PolygonProvider.empty_sessions`.
- Bar dates come from ``t`` (ms since the epoch, UTC) converted to the New York date.
- ``rate_limit`` requests per ``rate_period_s`` (``TECHNIC_POLYGON_RPM``: the free tier allows 5
  a minute) are spread by a sliding-window limiter (pyrate-limiter) shared by every thread of the
  provider: a request waits for a slot before it is sent, so the vendor never has to answer 429.
  The window is ``rate_slack_s`` (1 s) longer than the vendor's, because the vendor counts a
  request when it arrives, a little after the limiter let it go. Waiting for a slot is neither
  an error nor a retry (no attempt is used up, nothing is logged).
- :meth:`PolygonProvider.cancel` abandons the calls in flight (Ctrl-C during a fill): their
  waits for a slot or a backoff end at once with :class:`ScanCancelled`; a request already on
  the wire ends within ``timeout_s``. Calls made afterwards are unaffected.
- Transient faults (HTTP 429 — honouring ``Retry-After`` —, 5xx, timeouts, connection errors)
  are retried by tenacity with exponential backoff and jitter, at most ``max_retries`` times;
  then :class:`RetryableProviderError`. Other 4xx and malformed JSON raise
  :class:`ProviderError` naming the endpoint and the status. The API key is sent only as
  ``Authorization: Bearer``, only to ``base_url`` (``next_url`` links are followed on the
  configured host), and is scrubbed from every message: it never appears in an exception, a log
  line or a repr.
- Reference data (the tickers list and per-ticker details) is cached in a JSON file under
  ``cache_dir`` so that it costs requests once, not per scan. The list is refreshed after
  ``tickers_ttl`` (default 1 day, so that new listings appear the day they trade). Details are
  requested only for listings of a type technic scans (not warrants, rights, units ...): at once
  for a ticker without cached details, and otherwise a slice at a time, oldest first, so that
  every cached entry is refreshed once per ``details_ttl`` (default 7 days) without a weekly
  cliff: a call refreshes ``floor(n * elapsed / details_ttl)`` of the ``n`` cached entries, the
  fraction left over carried to the next call (about n/7 a day when called daily).
- Reference failures raise, so that the caller keeps its previous reference data and says so:
  the ticker list failing (5xx or timeouts after retries, 403, bad JSON) raises
  :class:`ProviderError`. A ticker whose details fail transiently keeps its previously cached
  details (or, if new, no sector or shares for now) and is asked again next time; more than
  ``max_details_failures`` such tickers raise :class:`RetryableProviderError`, and any other
  details fault (403 ...) raises at once. Details fetched before a failure stay cached. Every
  message is one line, without the key.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import tenacity
from pyrate_limiter import InMemoryBucket, Rate, RateItem

from technic_v4 import fsio
from technic_v4.data.bars import BarBatch
from technic_v4.data.calendar import latest_completed_session, sessions_between
from technic_v4.data.providers import sic_gics
from technic_v4.data.providers.base import (
    ACTION_COLUMNS,
    LISTING_STATUS_COLUMNS,
    REFERENCE_COLUMNS,
)
from technic_v4.errors import ConfigError, ProviderError, RetryableProviderError, ScanCancelled
from technic_v4.retrying import RetryAfterBackoff, parse_retry_after
from technic_v4.universe import gics

if TYPE_CHECKING:
    from technic_v4.config.settings import Settings

log = logging.getLogger(__name__)

ENDPOINTS = ("grouped_daily", "aggs_ticker", "tickers", "delisted_tickers", "ticker_details",
             "splits", "dividends")
DEFAULT_BASE_URL = "https://api.polygon.io"
KEY_ENV_VARS = ("POLYGON_API_KEY", "MASSIVE_API_KEY")
NY = "America/New_York"
_CACHE_VERSION = 1
_ABANDONED = "polygon: request abandoned because the caller was interrupted"
# Cash distributions (dividend_type): regular, special cash, long- and short-term capital gains.
CASH_DIVIDEND_TYPES = ("CD", "SC", "LT", "ST")
DELIST_REASON = "other"  # Polygon does not say why a ticker was delisted

# Polygon ticker type codes (GET /v3/reference/tickers/types) -> technic listing types.
# Codes not listed (WARRANT, RIGHT, UNIT, BOND, SP, BASKET, LT, OTHER, ADRW, ADRR, AGEN, EQLK, IX
# ...) have no technic type: they stay in the reference data with Type None, which every scan's
# smart filter drops as "type unknown", and get no details request.
TYPE_CODES: dict[str, str] = {
    "CS": gics.COMMON_STOCK, "OS": gics.COMMON_STOCK,
    "ADRC": gics.ADR, "ADRS": gics.ADR, "NYRS": gics.ADR, "GDR": gics.ADR,
    "ADRP": gics.PREFERRED,  # an ADR of a preferred share trades like a preferred
    "PFD": gics.PREFERRED,
    "ETF": gics.ETF, "ETN": gics.ETF, "ETV": gics.ETF, "ETS": gics.ETF, "FUND": gics.ETF,
}
_FUND_TYPES = (gics.ETF, gics.LEVERAGED_ETF, gics.INVERSE_ETF)
# Exchange MIC codes -> the names technic shows.
EXCHANGES: dict[str, str] = {
    "XNAS": "NASDAQ", "XNYS": "NYSE", "XASE": "NYSE American", "ARCX": "NYSE Arca",
    "BATS": "Cboe BZX", "XCBO": "Cboe", "IEXG": "IEX", "XNMS": "NASDAQ", "XNCM": "NASDAQ",
    "XNGS": "NASDAQ",
}

# Fund names: duration words first ("Short-Term Treasury", "Ultra-Short Income" are not inverse
# or leveraged funds), then inverse, then leveraged.
_DURATION = re.compile(r"\b(ultra[- ]?)?short[- ]?(term|duration|maturity|dated|treasury|"
                       r"income|bond|municipal|high yield)\b", re.IGNORECASE)
_INVERSE = re.compile(r"\binverse\b|\bbear\b|\bshort\b|ultrashort|-\s?\d+(\.\d+)?x\b",
                      re.IGNORECASE)
_LEVERAGED = re.compile(r"\b([2-9]|1\.\d+)x\b|\bultra(pro)?\b|\bleveraged\b", re.IGNORECASE)
_SPAC = re.compile(r"\bacquisition\s+(corp|corporation|co|company|inc|ltd|limited|holdings)\b|"
                   r"\bblank check\b|\bspac\b", re.IGNORECASE)
SPAC_SIC = 6770  # SIC "blank checks"


def technic_type(code: str | None, name: str | None, sic: object = None) -> str | None:
    """The technic listing type of a Polygon ticker (``type`` code, name, SIC code).

    ETF-like codes (ETF, ETN, ETV, ETS, FUND) become Inverse ETF when the name says inverse,
    bear or short (but not "short-term"), Leveraged ETF when it says 2x/3x, Ultra or leveraged,
    else ETF. Common stock whose SIC code is 6770 (blank checks) or whose name reads like a blank
    check company ("... Acquisition Corp") is a SPAC. None for codes technic does not scan.
    """
    t = TYPE_CODES.get((code or "").upper())
    nm = name or ""
    if t == gics.ETF:
        plain = _DURATION.sub(" ", nm)
        if _INVERSE.search(plain):
            return gics.INVERSE_ETF
        if _LEVERAGED.search(plain):
            return gics.LEVERAGED_ETF
        return gics.ETF
    if t == gics.COMMON_STOCK and (sic_gics._code(sic) == SPAC_SIC or _SPAC.search(nm)):
        return gics.SPAC
    return t


class _Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class _Transient(Exception):  # internal signal for tenacity, never escapes
    """A retryable failure of one attempt (carries Retry-After when the vendor sent one)."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class _RateLimit:
    """At most ``limit`` requests in any ``window_s`` (a sliding-window log from pyrate-limiter),
    shared by every thread of a provider. Taking a slot never blocks: :meth:`take` says how long
    to wait, so that the caller's wait can be interrupted."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._bucket = InMemoryBucket([Rate(limit, max(1, round(window_s * 1000)))])
        self._lock = threading.Lock()  # put and waiting must see the same state

    def take(self) -> float:
        """0.0 when a slot was taken, else the seconds until one frees up."""
        with self._lock:
            now = int(time.monotonic() * 1000)
            item = RateItem("polygon", now)
            if self._bucket.put(item):
                self._bucket.leak(now)  # forget requests older than the window
                return 0.0
            wait_ms = self._bucket.waiting(item)
        assert isinstance(wait_ms, int)  # an in-memory bucket is synchronous
        return max(wait_ms, 1) / 1000


def ny_dates(ms: np.ndarray) -> np.ndarray:
    """ms since the epoch (UTC; NaN allowed) -> New York calendar dates (``datetime64[D]``)."""
    ms = np.asarray(ms, dtype=np.float64)
    ok = np.isfinite(ms) & (ms > -2.2e12) & (ms < 7.3e12)  # 1900..2200
    out = np.full(len(ms), np.datetime64("NaT"), dtype="datetime64[D]")
    if ok.any():
        ts = pd.to_datetime(ms[ok].astype(np.int64), unit="ms", utc=True).tz_convert(NY)
        out[ok] = ts.tz_localize(None).to_numpy().astype("datetime64[D]")
    return out


def _is_number(x: object) -> bool:
    return x is None or (type(x) in (int, float))


class PolygonProvider:
    """Unadjusted daily bars, reference data (delisted listings included) and corporate actions
    from the Polygon/Massive REST API.

    ``request_counts`` counts real HTTP requests by endpoint name (see the module docstring);
    every attempt counts, so a request retried twice after a 429 counts three times.
    """

    name = "polygon"
    fetch_batch_sessions = 1  # one grouped request per session: a failure loses one session

    def __init__(self, api_key: str, *, base_url: str = DEFAULT_BASE_URL,
                 timeout_s: float = 30.0, max_retries: int = 5,
                 cache_dir: Path | str | None = None,
                 history_start: dt.date | None = None, history_days: int = 730,
                 end: dt.date | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 max_retry_after_s: float = 120.0,
                 tickers_ttl: dt.timedelta = dt.timedelta(days=1),
                 details_ttl: dt.timedelta = dt.timedelta(days=7),
                 delisted_overlap: dt.timedelta = dt.timedelta(days=7),
                 details_workers: int = 8, max_details_failures: int = 10,
                 rate_limit: int | None = None, rate_period_s: float = 60.0,
                 rate_slack_s: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError(KEY_ENV_VARS[0], "the Polygon API key is empty")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError("polygon_base_url", f"must be an http(s) URL, got {base_url!r}")
        if max_retries < 0:
            raise ConfigError("polygon_max_retries", f"must be >= 0, got {max_retries}")
        if rate_limit is not None and (rate_limit < 1 or rate_period_s <= 0):
            raise ConfigError("polygon_rpm", f"must be >= 1 request per {rate_period_s:g} s, got "
                              f"{rate_limit}")
        self._key = _Secret(api_key.strip())
        self.base_url = str(url).rstrip("/")
        self._base_path = url.path.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.history_start = history_start
        self.history_days = history_days
        self.end = end
        self.tickers_ttl = tickers_ttl
        self.details_ttl = details_ttl
        self.delisted_overlap = delisted_overlap
        self.details_workers = max(1, details_workers)
        self.max_details_failures = max_details_failures
        self._clock = clock
        self._wait = RetryAfterBackoff(backoff_s, max_backoff_s, max_retry_after_s)
        self._sleep = sleep  # None: a pause that cancel() interrupts
        self._rate = (None if rate_limit is None
                      else _RateLimit(rate_limit, rate_period_s + max(0.0, rate_slack_s)))
        # cancel() bumps the generation; calls that started before it stop waiting.
        self._cancel = threading.Condition()
        self._generation = 0
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        # What was dropped or missing, for the caller's report.
        self.malformed_rows: dict[str, int] = {}
        self.empty_sessions: list[dt.date] = []
        self.details_missing: list[str] = []  # tickers whose details the vendor did not have
        self.details_failed: list[str] = []  # tickers whose details failed (retried next time)
        # Actions not kept because they are not cash in dollars, by reason (see module doc).
        self.skipped_actions: dict[str, int] = {}
        self.delisted_shadowed: list[str] = []  # delisted symbols reused by an active listing
        self._reference_cache: dict[str, Any] | None = None
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._key.get()}",
                     "User-Agent": _user_agent(),
                     "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=self.details_workers + 2,
                                max_keepalive_connections=self.details_workers + 2),
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PolygonProvider:
        """From :class:`technic_v4.config.settings.Settings` and ``POLYGON_API_KEY`` (or
        ``MASSIVE_API_KEY``) in the environment; reference data is cached under ``data_dir``."""
        key = next((os.environ[v].strip() for v in KEY_ENV_VARS
                    if os.environ.get(v, "").strip()), None)
        if key is None:
            raise ConfigError(KEY_ENV_VARS[0], "not set: TECHNIC_DATA_PROVIDER=polygon needs a "
                              "Polygon/Massive API key; export POLYGON_API_KEY=<your key> (or "
                              "MASSIVE_API_KEY)")
        return cls(key, base_url=settings.polygon_base_url, timeout_s=settings.polygon_timeout_s,
                   max_retries=settings.polygon_max_retries, cache_dir=Path(settings.data_dir),
                   history_start=settings.polygon_history_start,
                   rate_limit=settings.polygon_rpm)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> PolygonProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PolygonProvider(base_url={self.base_url!r}, api_key='***')"

    def cancel(self) -> None:
        """Abandon the calls in flight (see the module docstring); later calls run normally."""
        with self._cancel:
            self._generation += 1
            self._cancel.notify_all()

    @property
    def min_request_interval_s(self) -> float | None:
        """Seconds per request the rate limit allows on average (None: unlimited); progress
        bars use it for an ETA the limiter can keep."""
        return None if self._rate is None else self._rate.window_s / self._rate.limit

    # -- provider interface ------------------------------------------------------------------------
    @property
    def store_key(self) -> str:
        """``polygon-<host>[-<port>][-<path>]``: two base URLs never share a store."""
        u = httpx.URL(self.base_url)
        parts = [u.host] + ([str(u.port)] if u.port else []) + ([self._base_path] if
                                                                self._base_path else [])
        return "polygon-" + re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(parts)).strip("-")

    @property
    def request_counts(self) -> dict[str, int]:
        """Real HTTP requests by endpoint; every attempt (retries included) counts."""
        with self._lock:
            return dict(self._counts)

    def latest_session(self) -> dt.date:
        """The latest completed NYSE session (or ``end`` when pinned)."""
        return self.end if self.end is not None else latest_completed_session()

    def first_session(self) -> dt.date:
        """``history_start`` when given, else the first session on or after ``history_days``
        (730: two years, ~502 sessions) calendar days before the latest session."""
        start = self.history_start
        if start is None:
            start = self.latest_session() - dt.timedelta(days=self.history_days)
        sess = sessions_between(start, self.latest_session())
        return sess[0].astype(dt.date) if len(sess) else start

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        """Every ticker's unadjusted bars for each session: one grouped-daily request per
        session."""
        out: list[BarBatch] = []
        for day in sorted(set(sessions)):
            payload = self._get_json("grouped_daily",
                                     f"/v2/aggs/grouped/locale/us/market/stocks/{day:%Y-%m-%d}",
                                     {"adjusted": "false"})
            assert payload is not None
            rows = payload.get("results")
            if not rows:
                with self._lock:
                    self.empty_sessions.append(day)
                log.info("polygon grouped_daily %s: no results (holiday or no data yet)", day)
                continue
            out.append(self._parse_bars(rows, "grouped_daily", session=day))
        return BarBatch.concat(out)

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        """The symbols' unadjusted daily bars in [start, end]: per-ticker aggregates, all
        pages."""
        out: list[BarBatch] = []
        for sym in symbols:
            path = (f"/v2/aggs/ticker/{quote(sym, safe='')}/range/1/day/"
                    f"{start:%Y-%m-%d}/{end:%Y-%m-%d}")
            params = {"adjusted": "false", "sort": "asc", "limit": "50000"}
            for payload in self._pages("aggs_ticker", path, params):
                rows = payload.get("results")
                if rows:
                    out.append(self._parse_bars(rows, "aggs_ticker", symbol=sym))
        return BarBatch.concat(out)

    def actions(self, since: dt.date) -> pd.DataFrame:
        """Splits and cash dividends with ex-date in [``since``, latest session] as
        :data:`ACTION_COLUMNS` (see the module docstring): every page of both endpoints."""
        lo, hi = f"{since:%Y-%m-%d}", f"{self.latest_session():%Y-%m-%d}"
        recs: list[tuple[str, object, str, float, float]] = []
        kinds: list[str] = []  # dividend_type of each dividend row (they follow the splits)
        params = {"execution_date.gte": lo, "execution_date.lte": hi, "limit": "1000",
                  "sort": "execution_date", "order": "asc"}
        for payload in self._pages("splits", "/v3/reference/splits", params):
            for r in self._results_list(payload, "splits"):
                sym, frm, to = self._action_fields(r, "splits", ("split_from", "split_to"))
                if sym is None:
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = float(np.float64(to) / np.float64(frm))
                recs.append((sym, r.get("execution_date"), "split", ratio, np.nan))
        params = {"ex_dividend_date.gte": lo, "ex_dividend_date.lte": hi, "limit": "1000",
                  "sort": "ex_dividend_date", "order": "asc"}
        for payload in self._pages("dividends", "/v3/reference/dividends", params):
            for r in self._results_list(payload, "dividends"):
                sym, amount = self._action_fields(r, "dividends", ("cash_amount",))
                if sym is None:
                    continue
                kind, cur = r.get("dividend_type"), r.get("currency")
                if kind is not None and str(kind).upper() not in CASH_DIVIDEND_TYPES:
                    self._skipped("dividend_type")
                    continue
                if cur is not None and str(cur).upper() != "USD":
                    self._skipped("dividend_currency")
                    continue
                recs.append((sym, r.get("ex_dividend_date"), "dividend", np.nan, float(amount)))
                kinds.append(str(kind).upper() if kind is not None else "")
        df = pd.DataFrame(recs, columns=list(ACTION_COLUMNS))
        # An unreadable or missing date is NaT: the store drops and counts it (missing_ex_date).
        df["ExDate"] = pd.to_datetime(df["ExDate"].where(df["ExDate"].map(_is_iso_date)),
                                      errors="coerce", format="%Y-%m-%d")
        df["Ratio"] = df["Ratio"].astype(np.float64)
        df["Amount"] = df["Amount"].astype(np.float64)
        df = _sum_cash(df, np.asarray([""] * (len(df) - len(kinds)) + kinds, dtype=object))
        return df.sort_values(["ExDate", "Symbol", "Type"], kind="stable").reset_index(drop=True)

    def _action_fields(self, r: object, endpoint: str, fields: tuple[str, ...]
                       ) -> tuple[Any, ...]:
        """(ticker, *numbers) of an action row, ``null`` -> NaN; (None, ...) when the row cannot
        be read at all (counted in ``malformed_rows``)."""
        nothing = (None,) * (len(fields) + 1)
        if not isinstance(r, dict) or not isinstance(r.get("ticker"), str) or not r["ticker"]:
            self._malformed(f"{endpoint}_row")
            return nothing
        vals = [r.get(f) for f in fields]
        if not all(_is_number(v) for v in vals):
            self._malformed(f"{endpoint}_row")
            return nothing
        return (r["ticker"], *(np.nan if v is None else float(v) for v in vals))

    def _skipped(self, reason: str) -> None:
        with self._lock:
            self.skipped_actions[reason] = self.skipped_actions.get(reason, 0) + 1

    def reference(self) -> pd.DataFrame:
        """Every US stock listing known through the latest session, delisted ones included:
        :data:`REFERENCE_COLUMNS` and :data:`LISTING_STATUS_COLUMNS` (cached, see the module
        docstring)."""
        cache = self._load_cache()
        now = self._clock()
        ttl = self.tickers_ttl.total_seconds()
        tick = cache.get("tickers")
        if tick is None or now - float(tick["at"]) >= ttl:
            tick = {"at": now, "rows": self._fetch_tickers()}  # a failure raises: see module doc
            cache["tickers"] = tick
            self._save_cache(cache)
        gone = cache.get("delisted")
        if gone is None or now - float(gone["at"]) >= ttl:
            gone = self._fetch_delisted(gone, now)
            cache["delisted"] = gone
            listed = {r["ticker"] for r in tick["rows"]} | {r["ticker"] for r in gone["rows"]}
            cache["details"] = {t: d for t, d in cache["details"].items() if t in listed}
            self._save_cache(cache)
        rows: list[dict[str, Any]] = tick["rows"]
        details: dict[str, dict[str, Any]] = cache["details"]
        delisted = self._delisted_listings(gone["rows"], {r["ticker"] for r in rows})
        wanted = [r["ticker"] for r in rows
                  if technic_type(r.get("type"), r.get("name")) is not None]
        due, mark = self._details_slice(cache, wanted, now)
        todo = [t for t in wanted if t not in details] + due
        # A delisted ticker's details are asked once, as of its last session.
        dates = {r["ticker"]: f"{day or self.latest_session():%Y-%m-%d}" for r, day in delisted
                 if r["ticker"] not in details
                 and technic_type(r.get("type"), r.get("name")) is not None}
        if todo or dates:
            self._fetch_details(todo + list(dates), cache, dates)
        if mark != cache.get("details_slice_at"):  # only once the slice was refreshed
            cache["details_slice_at"] = mark
            self._save_cache(cache)
        return self._reference_frame(rows, delisted, cache["details"])

    def _fetch_delisted(self, prev: dict[str, Any] | None, now: float) -> dict[str, Any]:
        """The cached delisted tickers brought up to date: pages newest first, followed only
        back to the newest cached delisting less ``delisted_overlap`` (the first session on a
        first fetch). Rows delisted before the first session are forgotten."""
        floor = _ny_midnight_utc(self.first_session())
        rows: dict[str, dict[str, Any]] = {r["ticker"]: r for r in (prev or {}).get("rows", [])
                                           if r["delisted_utc"] >= floor}
        stop = floor
        if prev is not None and prev.get("mark"):
            back = pd.Timestamp(prev["mark"]) - pd.Timedelta(self.delisted_overlap)
            stop = max(floor, back.strftime(_UTC_FMT))
        params = {"market": "stocks", "active": "false", "sort": "delisted_utc",
                  "order": "desc", "limit": "1000"}
        for payload in self._pages("delisted_tickers", "/v3/reference/tickers", params):
            oldest: str | None = None
            for r in self._results_list(payload, "delisted_tickers"):
                t = r.get("ticker") if isinstance(r, dict) else None
                if not isinstance(t, str) or not t:
                    self._malformed("delisted_tickers_row")
                    continue
                when = _utc_iso(r.get("delisted_utc"))
                if when is None:  # inactive, but the vendor does not say since when
                    self._malformed("delisted_without_date")
                    continue
                oldest = when if oldest is None else min(oldest, when)
                if when < stop:
                    continue
                old = rows.get(t)
                if old is None or when >= old["delisted_utc"]:  # the latest delisting wins
                    rows[t] = {"ticker": t, "name": _str_or_none(r.get("name")),
                               "type": _str_or_none(r.get("type")),
                               "primary_exchange": _str_or_none(r.get("primary_exchange")),
                               "delisted_utc": when}
            if oldest is not None and oldest < stop:
                break  # sorted newest first: the rest is older still
        mark = max((r["delisted_utc"] for r in rows.values()), default=None)
        if prev is not None and prev.get("mark") and (mark is None or prev["mark"] > mark):
            mark = prev["mark"]
        return {"at": now, "mark": mark, "rows": sorted(rows.values(), key=lambda r: r["ticker"])}

    def _delisted_listings(self, rows: list[dict[str, Any]], active: set[str]
                           ) -> list[tuple[dict[str, Any], dt.date | None]]:
        """Cached delisted rows that traded in the history served, with their last session
        (None: still trading at the latest session); a symbol listed again is left out."""
        first, last = self.first_session(), self.latest_session()
        out: list[tuple[dict[str, Any], dt.date | None]] = []
        shadowed: list[str] = []
        for r in rows:
            if r["ticker"] in active:
                shadowed.append(r["ticker"])
                continue
            when = dt.datetime.strptime(r["delisted_utc"], _UTC_FMT).replace(tzinfo=dt.UTC)
            try:
                day = latest_completed_session(when)
            except ValueError:  # before the calendar: never traded in the history served
                continue
            if day >= first:
                out.append((r, None if day > last else day))
        self.delisted_shadowed = shadowed
        return out

    def _details_slice(self, cache: dict[str, Any], wanted: list[str], now: float
                       ) -> tuple[list[str], float]:
        """The cached details due for a refresh now, the oldest ``floor(n * elapsed / ttl)``
        (see the module docstring), and the new ``details_slice_at`` mark: advanced by the time
        those entries account for, so that the remainder carries over to the next call."""
        details: dict[str, dict[str, Any]] = cache["details"]
        cached = sorted((float(details[t]["at"]), t) for t in wanted if t in details)
        ttl = self.details_ttl.total_seconds()
        mark = cache.get("details_slice_at")
        if not cached or ttl <= 0 or not isinstance(mark, int | float) or mark > now:
            return [], now
        n = len(cached)
        due = min(n, int(n * (now - mark) / ttl))
        return [t for _, t in cached[:due]], (now if due == n else mark + due * ttl / n)

    # -- reference internals -------------------------------------------------------------------
    def _fetch_tickers(self) -> list[dict[str, Any]]:
        params = {"market": "stocks", "active": "true", "limit": "1000"}
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for payload in self._pages("tickers", "/v3/reference/tickers", params):
            for r in self._results_list(payload, "tickers"):
                t = r.get("ticker") if isinstance(r, dict) else None
                if not isinstance(t, str) or not t:
                    self._malformed("tickers_row")
                    continue
                if t in seen:
                    self._malformed("tickers_duplicate")
                    continue
                seen.add(t)
                rows.append({"ticker": t, "name": _str_or_none(r.get("name")),
                             "type": _str_or_none(r.get("type")),
                             "primary_exchange": _str_or_none(r.get("primary_exchange"))})
        return rows

    def _fetch_details(self, tickers: list[str], cache: dict[str, Any],
                       dates: dict[str, str] | None = None) -> None:
        """Details for ``tickers`` on a few threads (as of ``dates[t]`` when given); saves the
        cache as it goes."""
        details: dict[str, dict[str, Any]] = cache["details"]
        failed: list[str] = []
        unsaved = 0

        def one(t: str) -> tuple[str, dict[str, Any] | None]:
            try:
                payload = self._get_json("ticker_details",
                                         f"/v3/reference/tickers/{quote(t, safe='')}",
                                         {"date": dates[t]} if dates and t in dates else None,
                                         allow_404=True)
            except RetryableProviderError as e:
                log.warning("polygon ticker_details %s: %s", t, e)
                return t, None
            if payload is None:
                return t, {"at": self._clock(), "found": False}
            r = payload.get("results")
            if not isinstance(r, dict):
                return t, {"at": self._clock(), "found": False}
            shares = r.get("share_class_shares_outstanding")
            if type(shares) not in (int, float) or not shares:
                shares = r.get("weighted_shares_outstanding")
            return t, {"at": self._clock(), "found": True,
                       "sic": _str_or_none(r.get("sic_code")),
                       "shares": float(shares) if isinstance(shares, int | float) else None,
                       "list_date": _str_or_none(r.get("list_date"))}

        pool = ThreadPoolExecutor(self.details_workers, thread_name_prefix="polygon-details")
        try:
            futures = [pool.submit(one, t) for t in tickers]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=5.0, return_when=FIRST_EXCEPTION)
                for f in finished:
                    t, d = f.result()  # a non-transient ProviderError propagates from here
                    if d is None:
                        failed.append(t)
                        if len(failed) > self.max_details_failures:
                            raise RetryableProviderError(
                                f"polygon ticker_details: {len(failed)} tickers failed after "
                                f"retries (first: {failed[0]}); giving up for now")
                        continue
                    with self._lock:
                        details[t] = d
                        if not d["found"]:
                            self.details_missing.append(t)
                    unsaved += 1
                if unsaved >= 500:  # an interrupted first fetch keeps what it got
                    self._save_cache(cache)
                    unsaved = 0
        except BaseException:  # Ctrl-C above all: do not wait for queued or waiting requests
            pool.shutdown(wait=False, cancel_futures=True)
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.details_failed = failed
            self._save_cache(cache)

    def _reference_frame(self, rows: list[dict[str, Any]],
                         delisted: list[tuple[dict[str, Any], dt.date | None]],
                         details: dict[str, dict[str, Any]]) -> pd.DataFrame:
        recs = []
        for r, gone in [(r, None) for r in rows] + delisted:
            d = details.get(r["ticker"]) or {}
            sic = d.get("sic")
            typ = technic_type(r.get("type"), r.get("name"), sic)
            sector: str | None = None
            industry: str | None = None
            if typ is not None and typ not in _FUND_TYPES:
                sector, industry = sic_gics.classify(sic, r.get("name"))
                if typ == gics.SPAC and sector is None:
                    sector, industry = sic_gics.classify(SPAC_SIC)
            mic = r.get("primary_exchange")
            recs.append((r["ticker"], r.get("name"), typ, EXCHANGES.get(mic, mic) if mic else None,
                         sector, industry,
                         d.get("shares") if d.get("shares") is not None else np.nan,
                         d.get("list_date"), gone, None if gone is None else DELIST_REASON))
        df = pd.DataFrame(recs, columns=[*REFERENCE_COLUMNS, *LISTING_STATUS_COLUMNS])
        df["SharesOutstanding"] = df["SharesOutstanding"].astype(np.float64)
        df["ListDate"] = pd.to_datetime(df["ListDate"], errors="coerce", format="ISO8601")
        df["Delisted"] = pd.to_datetime(df["Delisted"]).astype("datetime64[ns]")
        df["DelistReason"] = df["DelistReason"].astype(object)
        return df

    def _cache_path(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{self.store_key}.reference.json"

    def _load_cache(self) -> dict[str, Any]:
        if self._reference_cache is not None:
            return self._reference_cache
        cache: dict[str, Any] = {"version": _CACHE_VERSION, "details": {}}
        path = self._cache_path()
        if path is not None and path.exists():
            try:
                got = json.loads(path.read_text(encoding="utf-8"))
                if _valid_cache(got):
                    cache = got
                else:
                    log.warning("ignoring Polygon reference cache %s: not version %d of its "
                                "format", path, _CACHE_VERSION)
            except (OSError, ValueError, AttributeError) as e:
                log.warning("ignoring unreadable Polygon reference cache %s: %s", path, e)
        self._reference_cache = cache
        return cache

    def _save_cache(self, cache: dict[str, Any]) -> None:
        path = self._cache_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                text = json.dumps(cache, separators=(",", ":"))
            fsio.write_text(path, text)
        except OSError as e:  # the cache is an optimisation: a read-only dir still works
            log.warning("Polygon reference cache not written to %s: %s", path, e)

    # -- parsing -------------------------------------------------------------------------------
    def _malformed(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.malformed_rows[reason] = self.malformed_rows.get(reason, 0) + n

    def _results_list(self, payload: dict[str, Any], endpoint: str) -> list[Any]:
        rows = payload.get("results")
        if rows is None:
            return []
        if not isinstance(rows, list):
            raise ProviderError(f"polygon {endpoint}: 'results' is not a list")
        return rows

    def _parse_bars(self, rows: object, endpoint: str, *, session: dt.date | None = None,
                    symbol: str | None = None) -> BarBatch:
        """Rows of o/h/l/c/v (+T, t) -> a BarBatch; unreadable rows dropped and counted."""
        if not isinstance(rows, list):
            raise ProviderError(f"polygon {endpoint}: 'results' is not a list")
        syms: list[str] = []
        vals: list[tuple[Any, ...]] = []
        ts: list[float] = []
        for r in rows:
            if not isinstance(r, dict):
                self._malformed("not_an_object")
                continue
            sym = symbol if symbol is not None else r.get("T")
            try:
                v = (r["o"], r["h"], r["l"], r["c"], r["v"])
            except KeyError:
                self._malformed("missing_field")
                continue
            t = r.get("t")
            if not isinstance(sym, str) or not sym or (t is None and session is None):
                self._malformed("missing_field")
                continue
            if not all(_is_number(x) for x in v) or not (t is None or type(t) in (int, float)):
                self._malformed("not_a_number")
                continue
            syms.append(sym)
            vals.append(v)
            ts.append(np.nan if t is None else float(t))
        days = ny_dates(np.asarray(ts, dtype=np.float64))
        if session is not None:
            want = np.datetime64(session, "D")
            wrong = ~np.isnat(days) & (days != want)
            days[:] = want
        else:
            wrong = np.isnat(days)
        arr = np.array(vals, dtype=np.float64).reshape(len(vals), 5)  # None -> NaN
        keep = np.flatnonzero(~wrong)
        if len(keep) < len(syms):
            self._malformed("wrong_date" if session is not None else "bad_timestamp",
                            len(syms) - len(keep))
        return BarBatch(np.asarray(syms, dtype=object)[keep], days[keep],
                        *(np.ascontiguousarray(arr[keep, j]) for j in range(5)))

    # -- HTTP ------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """``text`` without the API key, on one line."""
        return " ".join(text.replace(self._key.get(), "***").split())

    def _count(self, endpoint: str) -> None:
        with self._lock:
            self._counts[endpoint] = self._counts.get(endpoint, 0) + 1

    def _pause(self, seconds: float, generation: int) -> None:
        """Sleep ``seconds``, or raise :class:`ScanCancelled` as soon as :meth:`cancel` is
        called by another thread."""
        deadline = time.monotonic() + seconds
        with self._cancel:
            while self._generation == generation:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cancel.wait(left)
        raise ScanCancelled(_ABANDONED)

    def _attempt(self, endpoint: str, url: str, params: dict[str, str] | None,
                 generation: int) -> httpx.Response:
        """One real request (after a rate-limit slot); transient failures raise
        :class:`_Transient` for tenacity."""
        if self._rate is not None:
            while (wait_s := self._rate.take()) > 0:
                self._pause(wait_s, generation)
        if self._generation != generation:
            raise ScanCancelled(_ABANDONED)
        self._count(endpoint)
        try:
            r = self._client.get(url, params=params)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            raise _Transient(f"{type(e).__name__}: {self._scrub(str(e)) or 'no detail'}") from e
        if r.status_code == 429 or r.status_code >= 500:
            raise _Transient(f"HTTP {r.status_code}", parse_retry_after(r.headers.get("Retry-After")))
        return r

    def _before_sleep(self, endpoint: str, path: str) -> Callable[[tenacity.RetryCallState], None]:
        def note(rs: tenacity.RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            wait_s = rs.next_action.sleep if rs.next_action is not None else 0.0
            log.warning("polygon %s %s: %s; retry %d/%d in %.2f s", endpoint, path,
                        getattr(exc, "detail", exc), rs.attempt_number, self.max_retries, wait_s)
        return note

    def _get_json(self, endpoint: str, url: str, params: dict[str, str] | None, *,
                  allow_404: bool = False) -> dict[str, Any] | None:
        """GET with bounded retries; the decoded JSON object (None for an allowed 404)."""
        path = url.split("?", 1)[0]
        generation = self._generation
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait, reraise=True,
            sleep=self._sleep or (lambda s: self._pause(s, generation)),
            before_sleep=self._before_sleep(endpoint, path))
        try:
            r = retrying(self._attempt, endpoint, url, params, generation)
        except _Transient as e:
            raise RetryableProviderError(
                f"polygon {endpoint} {path}: {e.detail}, still failing after "
                f"{self.max_retries + 1} attempts") from e
        except httpx.HTTPError as e:  # e.g. an unsupported URL: not worth retrying
            raise ProviderError(f"polygon {endpoint} {path}: {type(e).__name__}: "
                                f"{self._scrub(str(e))}") from e
        if r.status_code == 404 and allow_404:
            return None
        if r.status_code != 200:
            raise ProviderError(self._status_message(endpoint, path, r))
        try:
            payload = r.json()
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise ProviderError(f"polygon {endpoint} {path}: malformed JSON in the response "
                                f"(HTTP {r.status_code}, {len(r.content)} bytes): "
                                f"{self._scrub(str(e))}") from e
        if not isinstance(payload, dict):
            raise ProviderError(f"polygon {endpoint} {path}: expected a JSON object, got "
                                f"{type(payload).__name__}")
        if str(payload.get("status", "")).upper() == "ERROR":
            raise ProviderError(f"polygon {endpoint} {path}: vendor error: "
                                f"{self._vendor_detail(payload)}")
        return payload

    def _vendor_detail(self, payload: object) -> str:
        if isinstance(payload, dict):
            msg = payload.get("message") or payload.get("error") or payload.get("status") or ""
            return self._scrub(str(msg))[:300]
        return ""

    def _status_message(self, endpoint: str, path: str, r: httpx.Response) -> str:
        try:
            detail = self._vendor_detail(r.json())
        except ValueError:
            detail = ""
        hint = ""
        if r.status_code in (401, 403):
            hint = (" — check the API key in POLYGON_API_KEY / MASSIVE_API_KEY and that your "
                    "plan includes this endpoint")
        reason = r.reason_phrase or ""
        return (f"polygon {endpoint} {path}: HTTP {r.status_code} {reason}".rstrip()
                + (f": {detail}" if detail else "") + hint)

    def _pages(self, endpoint: str, path: str, params: dict[str, str]
               ) -> Iterator[dict[str, Any]]:
        """Every page of a paged endpoint, following ``next_url`` on the configured host."""
        url: str = path
        p: dict[str, str] | None = params
        seen: set[str] = set()
        while True:
            payload = self._get_json(endpoint, url, p)
            assert payload is not None
            yield payload
            nxt = payload.get("next_url")
            if not nxt:
                return
            if not isinstance(nxt, str):
                raise ProviderError(f"polygon {endpoint} {path}: next_url is not a string")
            url, p = self._relative(nxt), None
            if url in seen:
                raise ProviderError(f"polygon {endpoint} {path}: next_url repeats a page")
            seen.add(url)

    def _relative(self, next_url: str) -> str:
        """The path and query of a vendor link, to be requested on ``base_url`` (so the key is
        only ever sent to the configured host)."""
        u = httpx.URL(next_url)
        raw = u.raw_path.decode("ascii")
        if self._base_path and raw.startswith(self._base_path + "/"):
            raw = raw[len(self._base_path):]
        return raw


def _user_agent() -> str:
    from technic_v4 import __version__

    return f"technic/{__version__}"


def _valid_cache(got: object) -> bool:
    """Whether a decoded reference cache has the shape this version writes."""
    if not isinstance(got, dict) or got.get("version") != _CACHE_VERSION:
        return False
    details, tick = got.get("details"), got.get("tickers")
    if not isinstance(details, dict) or not all(
            isinstance(d, dict) and isinstance(d.get("at"), int | float) for d in details.values()):
        return False
    if not (tick is None or _valid_rows(tick)):
        return False
    gone = got.get("delisted")
    return gone is None or (_valid_rows(gone) and (gone.get("mark") is None
                                                   or isinstance(gone["mark"], str))
                            and all(isinstance(r.get("delisted_utc"), str)
                                    for r in gone["rows"]))


def _valid_rows(part: object) -> bool:
    """A cached ticker list: ``{"at": time, "rows": [{"ticker": str, ...}, ...]}``."""
    return (isinstance(part, dict) and isinstance(part.get("at"), int | float)
            and isinstance(part.get("rows"), list)
            and all(isinstance(r, dict) and isinstance(r.get("ticker"), str)
                    for r in part["rows"]))


_UTC_FMT = "%Y-%m-%dT%H:%M:%SZ"


def _utc_iso(x: object) -> str | None:
    """A vendor timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC; a bare date is 00:00 New York),
    None when absent or unreadable."""
    if not isinstance(x, str) or not x:
        return None
    try:
        ts = pd.Timestamp(x)
    except (ValueError, TypeError):
        return None
    if pd.isna(ts):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize(NY if len(x) <= 10 else "UTC")
    return str(ts.tz_convert("UTC").strftime(_UTC_FMT))


def _ny_midnight_utc(day: dt.date) -> str:
    """00:00 New York on ``day``, as :data:`_UTC_FMT`."""
    return str(pd.Timestamp(day).tz_localize(NY).tz_convert("UTC").strftime(_UTC_FMT))


def _sum_cash(df: pd.DataFrame, kind: np.ndarray) -> pd.DataFrame:
    """One dividend row per (ticker, ex-date): the store keeps one, and every cash distribution
    of the day (a regular and a special dividend, a fund's long- and short-term gains) comes
    off the price, so their amounts add up; a row sent twice (same kind, same amount) counts
    once. Rows with a bad date or amount pass as they are (the store drops and counts them)."""
    div = ((df["Type"] == "dividend") & df["ExDate"].notna() & np.isfinite(df["Amount"])
           & (df["Amount"] > 0)).to_numpy()
    if not div.any():
        return df
    d = df[div].assign(_kind=kind[div]).drop_duplicates(["Symbol", "ExDate", "_kind", "Amount"])
    d = d.groupby(["Symbol", "ExDate"], as_index=False, sort=False).agg(
        Type=("Type", "first"), Ratio=("Ratio", "first"), Amount=("Amount", "sum"))
    return pd.concat([df[~div], d[list(ACTION_COLUMNS)]], ignore_index=True)


def _is_iso_date(x: object) -> bool:
    return isinstance(x, str)


def _str_or_none(x: object) -> str | None:
    return x if isinstance(x, str) and x else None

