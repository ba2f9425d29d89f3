"""A loopback HTTP server that speaks Polygon's wire format: a test double that ships with technic.

It serves any provider's data (usually a :class:`~technic_v4.data.providers.synthetic.
SyntheticProvider`) the way Polygon/Massive would, on ``127.0.0.1`` and a free port, so that
:class:`~technic_v4.data.providers.polygon.PolygonProvider` can be tested end to end, through a
real socket, without a network or an API key::

    from technic_v4.vendor_server import Fault, VendorServer

    with VendorServer(SyntheticProvider(n_listings=60), api_key="k",
                      faults=[Fault("grouped_daily", "rate_limit", key="2026-11-20")]) as srv:
        provider = PolygonProvider("k", base_url=srv.url)
        ...
        srv.counts  # requests received, by endpoint

Endpoints (names as in ``polygon.ENDPOINTS``)::

    grouped_daily     GET /v2/aggs/grouped/locale/us/market/stocks/{date}
    aggs_ticker       GET /v2/aggs/ticker/{T}/range/1/day/{from}/{to}    (paged: next_url)
    tickers           GET /v3/reference/tickers[?active=true]           (paged: next_url)
    delisted_tickers  GET /v3/reference/tickers?active=false            (paged: next_url)
    ticker_details    GET /v3/reference/tickers/{T}
    splits            GET /v3/reference/splits?execution_date.gte=...   (paged: next_url)
    dividends         GET /v3/reference/dividends?ex_dividend_date.gte=... (paged: next_url)

Bars and corporate actions: the served provider's bars are as traded (unadjusted). A bars
request with ``adjusted=false`` gets them as they are; with ``adjusted=true`` (Polygon's
default) every bar dated before a split's ex-date (up to the provider's latest session) is
split-adjusted, computed here from the splits served (the provider's ``actions()`` plus
``splits``) independently of technic's own adjustment code — a cross-check: price / F and
volume x F, where F is the product of the ratios of the listing's splits with
bar date < ex-date <= latest session (a bar no split applies to is sent bit for bit as
traded). ``splits`` and ``dividends`` serve the provider's actions (``split_from`` /
``split_to`` from the ratio, dividends as type ``CD`` in ``USD``) plus the raw vendor records
given to the server (``splits``, ``dividends``: any fields, bad ones included, for tests).
Filters ``execution_date`` / ``ex_dividend_date`` ``.gte .gt .lte .lt``, ``ticker``, ``order``.

Listings the provider reports as delisted (reference column ``Delisted``, the last session
traded) are ``active: false`` with ``delisted_utc`` = 00:00 New York of the next session, as
Polygon stamps it; ``active=false`` lists them, ``active=true`` (the default) the others.
``sort`` (``ticker``, ``delisted_utc``, ``last_updated_utc``) and ``order`` are honoured.

Reference data: the provider's listings as Polygon tickers — type codes (CS, ADRC, ETF, PFD;
SPACs are CS with SIC 6770), exchange MIC codes, and a SIC code that
:func:`technic_v4.data.providers.sic_gics.classify` maps back to the listing's GICS sector (and
industry, wherever a SIC code reaches it: see :func:`sic_gics.representative_sic`). Bars: grouped
rows ``{T, o, h, l, c, v, vw, t, n}`` with ``t`` in ms (16:00 New York for grouped days, 00:00
New York for per-ticker bars, as Polygon does); NaN values are sent as ``null``.

Behaviour for tests:

- paging with small page sizes (``page_size`` for tickers, splits and dividends,
  ``aggs_page_size``);
- holidays: any day that is not one of the provider's sessions, plus ``holidays``, has no
  ``results`` (``resultsCount`` 0), as Polygon answers for a market holiday;
- a Bearer key check (``Authorization: Bearer`` or ``apiKey=``): a wrong key gets HTTP 401 whose
  message *echoes the key it was given* — a careless vendor, so that clients prove they scrub;
- :class:`Fault` injection per endpoint and key (date or ticker), for a number of requests;
- ``extra_listings``: more Polygon ticker records (any type code, SIC code, name); one with
  ``"_details_404": True`` is listed but its details answer 404, as for a ticker delisted
  between the two calls (keys starting with ``_`` are never sent);
- ``delay_s`` before every response; a request log (:attr:`VendorServer.requests`, with each
  request's query, a paging cursor decoded) and counts by endpoint
  (:attr:`VendorServer.counts`);
- ``rate_limit=(n, period_s)``: at most ``n`` requests in any ``period_s`` seconds (a sliding
  window counting the requests it answered; the free tier is ``(5, 60.0)``), as the vendor
  enforces it: a request beyond answers HTTP 429 with ``Retry-After`` (whole seconds until a
  slot frees up), logged with fault ``"rate_limited"``. Assign :attr:`VendorServer.rate_limit`
  to change it while running (None lifts it).
"""

from __future__ import annotations

import base64
import datetime as dt
import fractions
import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

from technic_v4.data.bars import BarBatch
from technic_v4.data.calendar import all_sessions, sessions_between
from technic_v4.data.providers import sic_gics
from technic_v4.data.providers.base import ACTION_COLUMNS, Provider
from technic_v4.universe import gics

ENDPOINTS = ("grouped_daily", "aggs_ticker", "tickers", "delisted_tickers", "ticker_details",
             "splits", "dividends")
NY = "America/New_York"

# What a fault does to a request (request faults) or to the rows of its response (row faults).
REQUEST_FAULTS = ("rate_limit", "server_error", "forbidden", "unauthorized", "malformed_json",
                  "reset", "slow")
ROW_FAULTS = ("duplicate_rows", "bad_prices", "missing_field")
FAULT_KINDS = REQUEST_FAULTS + ROW_FAULTS

TYPE_CODE = {gics.COMMON_STOCK: "CS", gics.ADR: "ADRC", gics.ETF: "ETF",
             gics.LEVERAGED_ETF: "ETF", gics.INVERSE_ETF: "ETF", gics.SPAC: "CS",
             gics.PREFERRED: "PFD"}
MIC = {"NASDAQ": "XNAS", "NYSE": "XNYS", "NYSE American": "XASE", "NYSE Arca": "ARCX"}


@dataclass(frozen=True)
class Fault:
    """A vendor misbehaviour, for ``times`` matching requests (None: every one).

    ``endpoint`` is one of :data:`ENDPOINTS` or ``"*"``; ``key`` narrows it to one grouped date
    (``"YYYY-MM-DD"``) or one ticker (``aggs_ticker``, ``ticker_details``). Kinds:

    - ``rate_limit``: HTTP 429 with ``Retry-After: retry_after``;
    - ``server_error``: HTTP ``status`` (default 503);
    - ``forbidden``: HTTP 403 ``NOT_AUTHORIZED``, as for an endpoint the key's plan lacks;
    - ``unauthorized``: HTTP 401 whose message echoes the key the client sent (a careless
      vendor, on one endpoint only);
    - ``malformed_json``: HTTP 200 with a truncated JSON body;
    - ``reset``: the connection is closed without a response;
    - ``slow``: the response waits ``delay_s`` first (longer than a client timeout: a timeout);
    - ``duplicate_rows``: the ``symbols`` rows (default: the first 3) appear twice, the second
      copy with close x 1.01;
    - ``bad_prices``: the ``symbols`` rows (default: the first 4) get, in turn, a null close, a
      negative close, high below low, a zero open;
    - ``missing_field``: the ``symbols`` rows (default: the first 2) lose their ``c`` field.
    """

    endpoint: str
    kind: str
    key: str | None = None
    times: int | None = 1
    retry_after: int = 1
    status: int = 503
    delay_s: float = 0.0
    symbols: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.endpoint not in (*ENDPOINTS, "*"):
            raise ValueError(f"unknown endpoint {self.endpoint!r}; valid: {ENDPOINTS} or '*'")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; valid: {FAULT_KINDS}")


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    endpoint: str
    path: str
    status: int  # 0 when the connection was reset
    fault: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)  # a paging cursor's query decoded


@dataclass
class _Active:
    fault: Fault
    left: int | None = field(default=None)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    vendor: VendorServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts in tests) are not errors worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _HTTPServer
    query: Mapping[str, str]  # the current request's query (a paging cursor decoded)
    timeout = 30  # an idle keep-alive connection is closed after this long

    def do_GET(self) -> None:
        self.server.vendor._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is :attr:`VendorServer.requests`."""


class VendorServer:
    """Polygon's REST API over ``provider``'s data on a loopback port (see module docstring)."""

    def __init__(self, provider: Provider, *, api_key: str | None = "test-key",
                 delay_s: float = 0.0, faults: Iterable[Fault] = (),
                 holidays: Iterable[dt.date] = (), page_size: int = 1000,
                 aggs_page_size: int = 50_000,
                 splits: Sequence[tuple[str, dt.date, float, float] | Mapping[str, Any]] = (),
                 dividends: Sequence[Mapping[str, Any]] = (),
                 extra_listings: Sequence[Mapping[str, Any]] = (),
                 next_url_base: str | None = None, host: str = "127.0.0.1",
                 rate_limit: tuple[int, float] | None = None) -> None:
        self.provider = provider
        self.rate_limit = rate_limit
        self._answered: deque[float] = deque()  # monotonic times of requests inside the window
        self.api_key = api_key
        self.delay_s = delay_s
        self.holidays = {np.datetime64(d, "D") for d in holidays}
        self.page_size = page_size
        self.aggs_page_size = aggs_page_size
        # Vendor records beyond the provider's own actions (tuples: ticker, date, from, to).
        self.extra_splits: list[dict[str, Any]] = [
            dict(x) if isinstance(x, Mapping) else
            {"ticker": x[0], "execution_date": f"{x[1]:%Y-%m-%d}", "split_from": x[2],
             "split_to": x[3], "id": f"X{i:06d}"} for i, x in enumerate(splits)]
        self.extra_dividends: list[dict[str, Any]] = [dict(x) for x in dividends]
        self._actions: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
        self._factors: np.ndarray | None = None
        self.extra_listings = [dict(x) for x in extra_listings]
        self.next_url_base = next_url_base
        self.host = host
        self.requests: list[Request] = []
        self._faults = [_Active(f, f.times) for f in faults]
        self._lock = threading.Lock()
        self._data_lock = threading.RLock()  # factors() reads the actions under it
        self._listings: list[dict[str, Any]] | None = None
        self._bars: BarBatch | None = None
        self._by_symbol: dict[str, np.ndarray] = {}
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> VendorServer:
        srv = _HTTPServer((self.host, 0), _Handler)
        srv.vendor = self
        self._server = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="vendor-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> VendorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the vendor server is not running: use start() or `with`")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to give a client, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    # -- inspection ------------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        """Requests received by endpoint (every one: faulted, unauthorised and retried ones)."""
        with self._lock:
            return dict(Counter(r.endpoint for r in self.requests))

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def add_listing(self, record: Mapping[str, Any]) -> None:
        """List one more ticker from now on (a new IPO, say): a Polygon ticker-details record."""
        with self._data_lock:
            self.extra_listings.append(dict(record))
            self._listings = None

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(_Active(fault, fault.times))

    def clear_faults(self) -> None:
        """The vendor recovers: no more faults."""
        with self._lock:
            self._faults.clear()

    @property
    def listings(self) -> list[dict[str, Any]]:
        """Every listing as a Polygon ticker-details record, sorted by ticker."""
        with self._data_lock:
            if self._listings is None:
                self._listings = self._make_listings()
            return self._listings

    def bars(self) -> BarBatch:
        """Every bar the server can send (the provider's, for all its sessions)."""
        with self._data_lock:
            if self._bars is None:
                sess = sessions_between(self.provider.first_session(),
                                        self.provider.latest_session())
                b = self.provider.bars_for_sessions([d.astype(dt.date) for d in sess])
                b = b.take(np.argsort(b.date, kind="stable"))
                if self.holidays:
                    b = b.take(np.flatnonzero(~np.isin(b.date, sorted(self.holidays))))
                self._bars = b
                codes, uniq = pd.factorize(b.symbol)
                order = np.argsort(codes, kind="stable")
                bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
                self._by_symbol = {str(s): order[bounds[i]:bounds[i + 1]]
                                   for i, s in enumerate(uniq)}
            return self._bars

    def split_records(self) -> list[dict[str, Any]]:
        """Every split the server serves: the provider's, then ``splits``."""
        return self._action_records()[0] + self.extra_splits

    def dividend_records(self) -> list[dict[str, Any]]:
        """Every dividend the server serves: the provider's, then ``dividends``."""
        return self._action_records()[1] + self.extra_dividends

    def factors(self) -> np.ndarray:
        """Per bar of :meth:`bars`, the split factor F that ``adjusted=true`` divides prices
        by (and multiplies volumes by): the product of the ratios of the listing's splits with
        bar date < ex-date <= the provider's latest session."""
        b = self.bars()
        with self._data_lock:
            if self._factors is None:
                f = np.ones(len(b), dtype=np.float64)
                last = np.datetime64(self.provider.latest_session(), "D")
                for r in self.split_records():
                    try:
                        day = np.datetime64(dt.date.fromisoformat(str(r["execution_date"])), "D")
                        ratio = float(r["split_to"]) / float(r["split_from"])
                    except (KeyError, TypeError, ValueError, ZeroDivisionError):
                        continue  # a bad vendor record adjusts nothing
                    if not (math.isfinite(ratio) and ratio > 0) or day > last:
                        continue
                    idx = self._by_symbol.get(str(r.get("ticker")))
                    if idx is not None:
                        hit = idx[b.date[idx] < day]
                        f[hit] *= ratio
                self._factors = f
            return self._factors

    # -- data ------------------------------------------------------------------------------------
    def _action_records(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The provider's actions (from its first session) as Polygon split and dividend
        records."""
        with self._data_lock:
            if self._actions is None:
                acts = self.provider.actions(self.provider.first_session())
                acts = acts[list(ACTION_COLUMNS)].sort_values(["ExDate", "Symbol"],
                                                              kind="stable")
                splits: list[dict[str, Any]] = []
                divs: list[dict[str, Any]] = []
                for i, (sym, ex, typ, ratio, amount) in enumerate(acts.itertuples(index=False)):
                    day = pd.Timestamp(ex)
                    if typ == "split":
                        q = fractions.Fraction(float(ratio)).limit_denominator(10_000)
                        splits.append({"ticker": str(sym), "execution_date": f"{day:%Y-%m-%d}",
                                       "split_from": q.denominator, "split_to": q.numerator,
                                       "id": f"E{i:06d}"})
                    else:
                        divs.append({
                            "ticker": str(sym), "cash_amount": float(amount), "currency": "USD",
                            "dividend_type": "CD", "frequency": 4,
                            "declaration_date": f"{day - pd.Timedelta(days=28):%Y-%m-%d}",
                            "ex_dividend_date": f"{day:%Y-%m-%d}",
                            "record_date": f"{day + pd.Timedelta(days=1):%Y-%m-%d}",
                            "pay_date": f"{day + pd.Timedelta(days=14):%Y-%m-%d}",
                            "id": f"D{i:06d}"})
                self._actions = (splits, divs)
            return self._actions

    def _make_listings(self) -> list[dict[str, Any]]:
        ref = self.provider.reference()
        out: list[dict[str, Any]] = []
        recs: list[dict[str, Any]] = [{str(k): v for k, v in x.items()}
                                      for x in ref.to_dict("records")]
        for r in recs:
            typ = r["Type"]
            sector = r["Sector"] if isinstance(r["Sector"], str) else None
            industry = r["Industry"] if isinstance(r["Industry"], str) else None
            if typ == gics.SPAC:
                sic: int | None = 6770
            elif sector is not None:
                sic = sic_gics.representative_sic(sector, industry)
            else:
                sic = None
            shares = float(r["SharesOutstanding"])
            listed = pd.Timestamp(r["ListDate"])
            gone = pd.Timestamp(r["Delisted"]) if "Delisted" in r else pd.NaT
            rec: dict[str, Any] = {
                "ticker": str(r["Symbol"]), "name": r["Name"], "market": "stocks",
                "locale": "us", "primary_exchange": MIC.get(r["Exchange"], r["Exchange"]),
                "type": TYPE_CODE.get(typ),
                "active": pd.isna(gone), "currency_name": "usd",
                "last_updated_utc": "2026-01-01T00:00:00Z",
                "share_class_shares_outstanding": shares if np.isfinite(shares) else None,
                "weighted_shares_outstanding": shares if np.isfinite(shares) else None,
                "list_date": None if pd.isna(listed) else f"{listed:%Y-%m-%d}",
            }
            if not pd.isna(gone):
                rec["delisted_utc"] = _delisted_utc(gone.date())
            if sic is not None:
                rec["sic_code"] = str(sic)
                rec["sic_description"] = f"SIC {sic}"
            out.append(rec)
        for extra in self.extra_listings:
            rec = {"market": "stocks", "locale": "us", "active": True, "currency_name": "usd"}
            rec.update(extra)
            out.append(rec)
        out.sort(key=lambda x: str(x["ticker"]))
        return out

    def _rows(self, idx: np.ndarray, hour: int, with_symbol: bool, adjusted: bool
              ) -> list[dict[str, Any]]:
        b = self.bars()
        days = b.date[idx]
        ms = (pd.DatetimeIndex(days.astype("datetime64[ns]")).tz_localize(NY)
              + pd.Timedelta(hours=hour)).asi8 // 1_000_000
        # Column-wise (a test double serving thousands of rows per request must be quick).
        o, h, lo, c, v = (getattr(b, f)[idx].astype(float) for f in
                          ("open", "high", "low", "close", "volume"))
        if adjusted:
            f = self.factors()[idx]
            o, h, lo, c, v = o / f, h / f, lo / f, c / f, v * f
        with np.errstate(invalid="ignore"):
            vw = np.round((h + lo + c) / 3.0, 4)
            n = np.where(np.isfinite(v) & (v >= 0), np.floor_divide(np.nan_to_num(v), 100) + 1, 0)
        cols = [[_j(x) for x in a.tolist()] for a in (o, h, lo, c, v, vw)]
        keys = ("o", "h", "l", "c", "v", "vw", "t", "n")
        vals = [*cols, ms.tolist(), n.astype(np.int64).tolist()]
        if with_symbol:
            return [dict(zip(("T", *keys), r, strict=True))
                    for r in zip(b.symbol[idx].astype(str).tolist(), *vals, strict=True)]
        return [dict(zip(keys, r, strict=True)) for r in zip(*vals, strict=True)]

    # -- HTTP ------------------------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            effective = dict(self._query_of(query))
        except _BadRequest:
            effective = dict(query)
        endpoint, key, route = self._route(path, effective)
        h.query = {k: v for k, v in effective.items() if k != "apiKey"}
        if self.api_key is not None:
            auth = h.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else query.get("apiKey", "")
            if given != self.api_key:
                self._send(h, endpoint, path, 401, {
                    "status": "ERROR", "request_id": self._rid(),
                    "error": f"Unknown API Key {given!r}" if given else "API Key was not provided"})
                return
        if route is None:
            self._send(h, endpoint, path, 404, {"status": "NOT_FOUND", "request_id": self._rid(),
                                                "message": "Not found"})
            return
        wait_s = self._over_rate_limit()
        if wait_s is not None:
            self._send(h, endpoint, path, 429, {
                "status": "ERROR", "request_id": self._rid(),
                "error": "You've exceeded the maximum requests per minute, please wait or "
                         "upgrade your subscription to continue."},
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))}, fault="rate_limited")
            return
        req_fault, row_faults = self._take_faults(endpoint, key)
        if req_fault is not None and self._apply_request_fault(h, endpoint, path, req_fault):
            return
        try:
            status, body = route(path, query)
        except _BadRequest as e:
            status, body = 400, {"status": "ERROR", "request_id": self._rid(), "error": str(e)}
        if status == 200 and row_faults and isinstance(body.get("results"), list):
            body["results"] = _apply_row_faults(body["results"], row_faults)
        self._send(h, endpoint, path, status, body,
                   fault=",".join(f.kind for f in row_faults) or None)

    def _route(self, path: str, query: Mapping[str, str]) -> tuple[str, str | None, Any]:
        p = path.strip("/").split("/")
        if p[:7] == ["v2", "aggs", "grouped", "locale", "us", "market", "stocks"] and len(p) == 8:
            return "grouped_daily", p[7], self._grouped
        if p[:3] == ["v2", "aggs", "ticker"] and len(p) == 9 and p[4:7] == ["range", "1", "day"]:
            return "aggs_ticker", p[3], self._aggs
        if p == ["v3", "reference", "tickers"]:
            active = str(query.get("active", "true")).lower() != "false"
            return "tickers" if active else "delisted_tickers", None, self._tickers
        if p[:3] == ["v3", "reference", "tickers"] and len(p) == 4:
            return "ticker_details", p[3], self._details
        if p == ["v3", "reference", "splits"]:
            return "splits", None, self._splits
        if p == ["v3", "reference", "dividends"]:
            return "dividends", None, self._dividends
        return "unknown", None, None

    def _over_rate_limit(self) -> float | None:
        """None when this request fits the rate limit (and counts it), else the seconds until
        a slot frees up."""
        with self._lock:
            limit = self.rate_limit
            if limit is None:
                return None
            n, period = limit
            now = time.monotonic()
            while self._answered and self._answered[0] <= now - period:
                self._answered.popleft()
            if len(self._answered) >= n:
                return self._answered[-n] + period - now
            self._answered.append(now)
            return None

    def _take_faults(self, endpoint: str, key: str | None) -> tuple[Fault | None, list[Fault]]:
        req: Fault | None = None
        rows: list[Fault] = []
        with self._lock:
            for a in self._faults:
                f = a.fault
                if f.endpoint not in (endpoint, "*") or (f.key is not None and f.key != key):
                    continue
                if a.left is not None and a.left <= 0:
                    continue
                if f.kind in REQUEST_FAULTS:
                    if req is not None:
                        continue
                    req = f
                else:
                    rows.append(f)
                if a.left is not None:
                    a.left -= 1
        return req, rows

    def _apply_request_fault(self, h: _Handler, endpoint: str, path: str, f: Fault) -> bool:
        """Apply a request fault; True when the response has been dealt with."""
        if f.kind == "slow":
            time.sleep(f.delay_s)
            return False
        if f.kind == "rate_limit":
            self._send(h, endpoint, path, 429, {
                "status": "ERROR", "request_id": self._rid(),
                "error": "You've exceeded the maximum requests per minute."},
                headers={"Retry-After": str(f.retry_after)}, fault=f.kind)
        elif f.kind == "forbidden":
            self._send(h, endpoint, path, 403, {
                "status": "NOT_AUTHORIZED", "request_id": self._rid(),
                "message": "You are not entitled to this data. Please upgrade your plan at "
                           "https://polygon.io/pricing"}, fault=f.kind)
        elif f.kind == "unauthorized":
            auth = h.headers.get("Authorization", "")
            self._send(h, endpoint, path, 401, {
                "status": "ERROR", "request_id": self._rid(),
                "error": f"Unknown API Key {auth.removeprefix('Bearer ')!r}"}, fault=f.kind)
        elif f.kind == "server_error":
            self._send(h, endpoint, path, f.status, {"status": "ERROR",
                                                     "request_id": self._rid(),
                                                     "error": "internal error"}, fault=f.kind)
        elif f.kind == "malformed_json":
            self._send_bytes(h, endpoint, path, 200, b'{"status":"OK","results":[{"T":"A","o":1',
                             fault=f.kind)
        elif f.kind == "reset":
            self._log(endpoint, path, 0, f.kind, getattr(h, "query", {}))
            h.close_connection = True
        return True

    def _send(self, h: _Handler, endpoint: str, path: str, status: int, body: dict[str, Any],
              headers: Mapping[str, str] | None = None, fault: str | None = None) -> None:
        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        self._send_bytes(h, endpoint, path, status, data, headers, fault)

    def _send_bytes(self, h: _Handler, endpoint: str, path: str, status: int, data: bytes,
                    headers: Mapping[str, str] | None = None, fault: str | None = None) -> None:
        self._log(endpoint, path, status, fault, getattr(h, "query", {}))
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the client gave up (a timeout in a test): nothing to answer
            h.close_connection = True

    def _log(self, endpoint: str, path: str, status: int, fault: str | None,
             query: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self.requests.append(Request(endpoint, path, status, fault, dict(query or {})))

    def _rid(self) -> str:
        with self._lock:
            self._seq += 1
            return f"req{self._seq:08d}"

    def _next_url(self, path: str, cursor: dict[str, Any]) -> str:
        token = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
        return f"{self.next_url_base or self.url}{path}?cursor={token}"

    @staticmethod
    def _cursor(query: Mapping[str, str]) -> dict[str, Any] | None:
        tok = query.get("cursor")
        if tok is None:
            return None
        try:
            got = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
        except ValueError as e:
            raise _BadRequest("invalid cursor") from e
        if not isinstance(got, dict):
            raise _BadRequest("invalid cursor")
        return got

    def _page(self, path: str, items: list[Any], query: Mapping[str, str], size: int,
              default_limit: int) -> tuple[list[Any], str | None]:
        cur = self._cursor(query)
        if cur is None:
            try:
                limit = int(query.get("limit", default_limit))
            except ValueError as e:
                raise _BadRequest("limit must be an integer") from e
            cur = {"offset": 0, "limit": max(1, limit), "q": dict(query)}
        n = max(1, min(int(cur["limit"]), size))
        off = int(cur["offset"])
        page = items[off:off + n]
        nxt = None
        if off + n < len(items):
            nxt = self._next_url(path, {**cur, "offset": off + n})
        return page, nxt

    def _query_of(self, query: Mapping[str, str]) -> Mapping[str, str]:
        cur = self._cursor(query)
        return cur["q"] if cur is not None else query

    # -- endpoints ---------------------------------------------------------------------------------
    def _grouped(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        day_s = path.rstrip("/").rsplit("/", 1)[-1]
        try:
            day = np.datetime64(dt.date.fromisoformat(day_s), "D")
        except ValueError as e:
            raise _BadRequest(f"invalid date {day_s!r}") from e
        b = self.bars()
        adjusted = _adjusted(query)
        lo, hi = np.searchsorted(b.date, day, side="left"), np.searchsorted(b.date, day,
                                                                           side="right")
        body: dict[str, Any] = {"adjusted": adjusted, "queryCount": int(hi - lo),
                                "resultsCount": int(hi - lo), "request_id": self._rid(),
                                "status": "OK"}
        if hi > lo:
            body["results"] = self._rows(np.arange(lo, hi), 16, with_symbol=True,
                                         adjusted=adjusted)
        return 200, body

    def _aggs(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        p = path.strip("/").split("/")
        ticker, frm, to = p[3], p[7], p[8]
        try:
            lo_d, hi_d = (_day(x) for x in (frm, to))
        except ValueError as e:
            raise _BadRequest(f"invalid range {frm}..{to}") from e
        b = self.bars()
        idx = self._by_symbol.get(ticker, np.empty(0, dtype=np.int64))
        idx = idx[(b.date[idx] >= lo_d) & (b.date[idx] <= hi_d)]
        q = self._query_of(query)
        if q.get("sort", "asc") == "desc":
            idx = idx[::-1]
        page, nxt = self._page(path, idx.tolist(), query, self.aggs_page_size, 5000)
        adjusted = _adjusted(q)
        body: dict[str, Any] = {"ticker": ticker, "adjusted": adjusted, "queryCount": len(page),
                                "resultsCount": len(page), "request_id": self._rid(),
                                "status": "OK"}
        if page:
            body["results"] = self._rows(np.asarray(page, dtype=np.int64), 0, with_symbol=False,
                                         adjusted=adjusted)
        if nxt:
            body["next_url"] = nxt
        return 200, body

    _LIST_FIELDS = ("ticker", "name", "market", "locale", "primary_exchange", "type", "active",
                    "currency_name", "last_updated_utc", "delisted_utc")

    def _tickers(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        q = self._query_of(query)
        items = [x for x in self.listings
                 if (q.get("market") in (None, "stocks"))
                 and (q.get("active", "true") == "true") == bool(x.get("active", True))]
        sort = q.get("sort", "ticker")
        if sort not in ("ticker", "delisted_utc", "last_updated_utc"):
            raise _BadRequest(f"sort must be ticker, delisted_utc or last_updated_utc, got {sort!r}")
        desc = q.get("order", "asc") == "desc"
        have = [x for x in items if x.get(sort) is not None]  # no value: last, as a database sorts
        items = sorted(have, key=lambda x: str(x[sort]), reverse=desc) + [
            x for x in items if x.get(sort) is None]
        page, nxt = self._page(path, items, query, self.page_size, 100)
        body: dict[str, Any] = {
            "results": [{k: x[k] for k in self._LIST_FIELDS if k in x} for x in page],
            "status": "OK", "request_id": self._rid(), "count": len(page)}
        if nxt:
            body["next_url"] = nxt
        return 200, body

    def _details(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        ticker = path.rstrip("/").rsplit("/", 1)[-1]
        for x in self.listings:
            if x["ticker"] == ticker and not x.get("_details_404"):
                return 200, {"request_id": self._rid(), "status": "OK",
                             "results": {k: v for k, v in x.items() if not k.startswith("_")}}
        return 404, {"request_id": self._rid(), "status": "NOT_FOUND",
                     "message": "Ticker not found."}

    def _splits(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        return self._actions_page(path, query, self.split_records(), "execution_date")

    def _dividends(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        return self._actions_page(path, query, self.dividend_records(), "ex_dividend_date")

    def _actions_page(self, path: str, query: Mapping[str, str], records: list[dict[str, Any]],
                      date_field: str) -> tuple[int, dict[str, Any]]:
        q = self._query_of(query)
        items = list(records)
        for op in ("gte", "gt", "lte", "lt"):
            v = q.get(f"{date_field}.{op}")
            if v is not None:  # a record without a date matches no range (as in a database)
                items = [s for s in items
                         if isinstance(s.get(date_field), str) and _cmp(s[date_field], op, v)]
        if "ticker" in q:
            items = [s for s in items if s.get("ticker") == q["ticker"]]
        items.sort(key=lambda s: str(s.get(date_field) or ""), reverse=q.get("order") == "desc")
        page, nxt = self._page(path, items, query, self.page_size, 10)
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": self._rid()}
        if nxt:
            body["next_url"] = nxt
        return 200, body


class _BadRequest(Exception):
    pass


def _j(x: float) -> float | None:
    """A JSON number, or null for NaN/inf (JSON has no NaN)."""
    return x if math.isfinite(x) else None


def _day(s: str) -> np.datetime64:
    """A range bound: ``YYYY-MM-DD`` or ms since the epoch (as Polygon accepts)."""
    if s.isdigit():
        return np.datetime64(pd.Timestamp(int(s), unit="ms", tz="UTC").tz_convert(NY).date(), "D")
    return np.datetime64(dt.date.fromisoformat(s), "D")


def _adjusted(query: Mapping[str, str]) -> bool:
    """Polygon's ``adjusted`` flag (true unless ``false``)."""
    return str(query.get("adjusted", "true")).lower() != "false"


def _delisted_utc(last: dt.date) -> str:
    """Polygon's ``delisted_utc`` for a listing whose last session was ``last``: 00:00 New
    York of the next session."""
    s = all_sessions()
    nxt = s[int(np.searchsorted(s, np.datetime64(last, "D"), side="right"))]
    ts = pd.Timestamp(nxt.astype(dt.date)).tz_localize(NY).tz_convert("UTC")
    return f"{ts:%Y-%m-%dT%H:%M:%SZ}"


def _cmp(a: str, op: str, b: str) -> bool:
    return {"gte": a >= b, "gt": a > b, "lte": a <= b, "lt": a < b}[op]


def _apply_row_faults(rows: list[dict[str, Any]], faults: list[Fault]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in rows]
    for f in faults:
        if f.symbols:
            hit = [i for i, r in enumerate(rows) if r.get("T") in f.symbols]
        else:
            hit = list(range(min(len(rows), {"duplicate_rows": 3, "bad_prices": 4,
                                               "missing_field": 2}[f.kind])))
        if f.kind == "duplicate_rows":
            for i in hit:
                dup = dict(rows[i])
                if dup.get("c") is not None:
                    dup["c"] = round(dup["c"] * 1.01, 4)
                    if dup.get("h") is not None:
                        dup["h"] = max(dup["h"], dup["c"])
                rows.append(dup)
        elif f.kind == "bad_prices":
            for k, i in enumerate(hit):
                r = rows[i]
                variant = k % 4
                if variant == 0:
                    r["c"] = None
                elif variant == 1 and r.get("c") is not None:
                    r["c"] = -abs(r["c"])
                elif variant == 2:
                    r["h"], r["l"] = r.get("l"), (r.get("h") or 0.0) * 1.1 + 0.01
                else:
                    r["o"] = 0.0
        elif f.kind == "missing_field":
            for i in hit:
                rows[i].pop("c", None)
    return rows
