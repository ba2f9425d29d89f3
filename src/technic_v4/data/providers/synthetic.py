"""The embedded synthetic US market: deterministic, offline, realistic enough to scan.

Same (listings, seed, epoch) -> same data. Each session's random draws are keyed by the session's
date, per-listing event dates are absolute (never relative to the end), and the state (prices,
volatilities, drifts, split ratios) only moves forward, so a new session appears as time passes
without changing any earlier one, nor any earlier action or delisting.

Bars are as traded (unadjusted). The state keeps each name's economic log price; its raw price is
that divided by the product of its split ratios, and a dividend lowers both by the amount.

What it models, so that every stage of a scan has something to do:
- a market factor (SPY) and 11 GICS sector factors with GARCH-like volatility clustering;
- Student-t (df=4) idiosyncratic shocks with per-name GARCH(1,1) variance (fat tails, clustering);
- slowly wandering drifts (trending names) and a mean-reverting cohort;
- a heavy-tailed market-cap distribution from micro-caps to mega-caps, penny stocks, illiquid names;
- listing types: common stock, ADR, ETF (incl. leveraged and inverse), SPAC, preferred;
- IPOs after the epoch (some with only weeks of history);
- corporate actions: forward splits of names whose raw price climbs past a per-name threshold,
  reverse splits under the exchanges' $1 minimum bid, quarterly cash dividends;
- delistings: acquisitions (a premium, then pinned near the offer), bankruptcies (a drift towards
  zero), other (bars just stop); the reference keeps every listing with its last session;
- a few broken rows: zero volume, missing sessions, and invalid prices that validation must drop;
- price levels and one-year returns inside what US listings show (bounds in README).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.data.bars import BarBatch
from technic_v4.data.calendar import sessions_between
from technic_v4.universe import gics

BENCHMARK = "SPY"

_TYPE_P = {
    gics.COMMON_STOCK: 0.72, gics.ADR: 0.06, gics.ETF: 0.09, gics.LEVERAGED_ETF: 0.02,
    gics.INVERSE_ETF: 0.01, gics.SPAC: 0.04, gics.PREFERRED: 0.06,
}
# Rough share of US listings per GICS sector.
_SECTOR_P = np.array([0.05, 0.11, 0.05, 0.05, 0.13, 0.17, 0.14, 0.14, 0.05, 0.06, 0.05])
_SYL = ("ar", "ax", "bel", "cor", "dyn", "el", "fin", "gen", "hal", "ion", "jet", "kor", "lum",
        "mar", "nov", "or", "pra", "quan", "ros", "sol", "tek", "ul", "ver", "wex", "xen", "yor",
        "zen", "tri", "via", "lo")
# Price levels stay inside what US listings show (README, "Data providers", has the bounds and
# the test data/test_synthetic.py checks them). A name whose log price leaves [_LOG_LOW, its
# log_high] is pulled back (_KAPPA_OUT per session per unit of log distance) and its own moves are
# damped; inside, a weak pull (_KAPPA, half-life ~170 sessions) towards where its market exposure
# alone would have taken it keeps the levels from spreading without bound as the years pass.
# No price is ever clipped: a clip pins a name at the bound for weeks.
_LOG_LOW, _LOG_HIGH = np.log(0.05), np.log(800.0)
_KAPPA, _KAPPA_OUT = 0.004, 0.05
# Walk states are kept every _CHECKPOINT sessions, so that a request behind the last walk resumes
# near it instead of at the epoch (~0.6 MB each for 6,000 listings).
_CHECKPOINT = 64
_NEVER = 1 << 40  # a day number after every date
_ACQUIRED, _BANKRUPT, _OTHER = 0, 1, 2
_REASONS = np.array(["acquired", "bankrupt", "other"], dtype=object)
_DIV_PERIOD = 91  # days between a payer's scheduled ex-dates (quarterly)
# Forward split ratios (new shares per old) and how often each: 3-for-2, 2-for-1, 3-for-1, 4-for-1.
_FWD_RATIOS = np.array([1.5, 2.0, 3.0, 4.0])
_FWD_CUM = np.cumsum([0.07, 0.63, 0.2, 0.1])
# A session's closes before and after, move, volatility and shares (see SyntheticProvider._bars).
_Memo = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_SUFFIX = ("Inc.", "Corp.", "Holdings Inc.", "Group Inc.", "Technologies Inc.", "Co.", "plc",
           "Ltd.", "Systems Inc.", "Partners LP")


class SyntheticProvider:
    """Provider of the embedded market (see module docstring)."""

    name = "synthetic"
    fetch_batch_sessions = 1 << 30  # one simulation pass serves any number of sessions

    def __init__(self, n_listings: int = 6000, seed: int = 20251214,
                 epoch: dt.date = dt.date(2023, 1, 3), end: dt.date | None = None) -> None:
        from technic_v4.data.calendar import latest_completed_session

        if n_listings < 10:
            raise ValueError(f"n_listings must be >= 10, got {n_listings}")
        self.n_listings = n_listings
        self.seed = seed
        self.epoch = epoch
        self.end = end if end is not None else latest_completed_session()
        self.sessions = sessions_between(epoch, self.end)
        if len(self.sessions) < 2:
            raise ValueError(f"synthetic market needs at least 2 sessions in [{epoch}, {self.end}]")
        self._requests: dict[str, int] = {"reference": 0, "grouped_daily": 0}
        self._cursor: dict[str, Any] | None = None  # the state after the last walk
        self._checkpoints: dict[int, dict[str, Any]] = {}  # session index -> state before it
        # Per walked session: (split listings, ratios, dividend listings, amounts).
        self._acts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._end_shares: np.ndarray | None = None  # shares outstanding after the end
        # Per session walked but not served yet: what its bars are made of (see _simulate),
        # within a budget of bytes.
        self._memo: dict[int, _Memo] = {}
        self._memo_budget = 1 << 30
        self._lock = threading.Lock()  # one walk at a time (the vendor server has threads)

    @functools.cached_property
    def _params(self) -> dict[str, np.ndarray]:
        """Per-listing parameters; built on first use (a warm scan never needs them)."""
        return self._make_listings()

    # -- provider interface -------------------------------------------------------------------
    @property
    def store_key(self) -> str:
        return f"synthetic-n{self.n_listings}-s{self.seed}-e{self.epoch:%Y%m%d}"

    @property
    def request_counts(self) -> dict[str, int]:
        return dict(self._requests)

    def first_session(self) -> dt.date:
        return self.sessions[0].astype(dt.date)

    def latest_session(self) -> dt.date:
        return self.sessions[-1].astype(dt.date)

    def reference(self) -> pd.DataFrame:
        """Every listing listed by the end, delisted ones included (Delisted = the last session
        traded, DelistReason); SharesOutstanding as of the end (after its splits)."""
        self._requests["reference"] += 1
        p = self._params
        self._walk_to_end()
        assert self._end_shares is not None
        end = int(np.datetime64(self.end, "D").astype(np.int64))
        listed = p["list_day"] <= end  # names that IPO after the end do not exist yet
        gone = p["delist_day"] <= end
        last = self.sessions[np.maximum(np.searchsorted(
            self.sessions, p["delist_day"].astype("datetime64[D]"), side="right") - 1, 0)]
        return pd.DataFrame({
            "Symbol": p["symbol"], "Name": p["name"], "Type": p["type"],
            "Exchange": p["exchange"], "Sector": p["sector"], "Industry": p["industry"],
            "SharesOutstanding": np.round(self._end_shares),
            "ListDate": p["list_day"].astype("datetime64[D]"),
            "Delisted": np.where(gone, last, np.datetime64("NaT")).astype("datetime64[D]"),
            "DelistReason": np.where(gone, _REASONS[p["reason"]], None),
        })[listed].reset_index(drop=True)

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        """Unadjusted bars of every listing for each requested session (one 'grouped' request
        each). One call holds all its bars: the fetch planner asks for 64 sessions at a time
        (``fill.CHUNK_SESSIONS``), and consecutive calls resume the walk where it stopped."""
        want = np.unique(np.asarray(sessions, dtype="datetime64[D]"))
        idx = np.searchsorted(self.sessions, want)
        ok = (idx < len(self.sessions)) & (self.sessions[np.minimum(idx, len(self.sessions) - 1)]
                                           == want)
        self._requests["grouped_daily"] += len(want)
        if not ok.any():
            return BarBatch.empty()
        return self._simulate(set(idx[ok].tolist()))

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        """The given symbols' unadjusted bars in [start, end] (one 'ticker' request per symbol)."""
        self._requests["ticker"] = self._requests.get("ticker", 0) + len(symbols)
        sess = sessions_between(start, min(end, self.end))
        if len(sess) == 0 or len(symbols) == 0:
            return BarBatch.empty()
        idx = np.searchsorted(self.sessions, sess)
        return self._simulate(set(idx.tolist()), np.isin(self._params["symbol"], list(symbols)))

    def actions(self, since: dt.date) -> pd.DataFrame:
        """Splits and cash dividends with ex-date in [since, end] (:data:`ACTION_COLUMNS`)."""
        from technic_v4.data.providers.base import ACTION_COLUMNS

        self._requests["actions"] = self._requests.get("actions", 0) + 1
        self._walk_to_end()
        first = int(np.searchsorted(self.sessions, np.datetime64(since, "D")))
        rows = self._acts[first:len(self.sessions)]
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in ACTION_COLUMNS})
        days = self.sessions[first:first + len(rows)]
        si, ratio, di, amount = (np.concatenate([r[k] for r in rows]) for k in range(4))
        n_split = np.array([len(r[0]) for r in rows])
        n_div = np.array([len(r[2]) for r in rows])
        out = pd.DataFrame({
            "Symbol": self._params["symbol"][np.concatenate([si, di])],
            "ExDate": np.concatenate([np.repeat(days, n_split), np.repeat(days, n_div)]
                                     ).astype("datetime64[ns]"),
            "Type": np.repeat(np.array(["split", "dividend"], dtype=object), [len(si), len(di)]),
            "Ratio": np.concatenate([ratio, np.full(len(di), np.nan)]),
            "Amount": np.concatenate([np.full(len(si), np.nan), amount]),
        })
        return out.sort_values(["ExDate", "Symbol", "Type"], ignore_index=True)[
            list(ACTION_COLUMNS)]

    # -- internals ----------------------------------------------------------------------------
    def _make_listings(self) -> dict[str, np.ndarray]:
        n, rng = self.n_listings, np.random.default_rng([self.seed, 0])
        types = rng.choice(list(_TYPE_P), size=n, p=list(_TYPE_P.values())).astype(object)
        types[0] = gics.ETF
        symbols = _tickers(rng, n, types)
        sector_idx = rng.choice(len(gics.SECTORS), size=n, p=_SECTOR_P / _SECTOR_P.sum())
        is_fund = np.isin(types, [gics.ETF, gics.LEVERAGED_ETF, gics.INVERSE_ETF])
        sector_idx[types == gics.SPAC] = gics.SECTORS.index("Financials")
        pfd = types == gics.PREFERRED
        sector_idx[pfd] = rng.choice([gics.SECTORS.index(s) for s in
                                      ("Financials", "Utilities", "Real Estate")], size=pfd.sum())
        sector = np.array([gics.SECTORS[i] for i in sector_idx], dtype=object)
        industry = np.array([gics.SECTOR_INDUSTRIES[s][rng.integers(len(gics.SECTOR_INDUSTRIES[s]))]
                             for s in sector], dtype=object)
        industry[types == gics.SPAC] = "Financial Services"
        sector[is_fund] = None
        industry[is_fund] = None
        # Market cap (USD) heavy-tailed: log10 ~ N(9.0, 0.95) in [6.5, 12.5]; SPY large.
        log_mcap = np.clip(rng.normal(9.0, 0.95, n), 6.5, 12.5)
        log_mcap[0] = 11.7
        mcap = 10.0 ** log_mcap
        # Prices loosely follow size; ~6% penny stocks among the smallest names.
        log_p0 = np.clip(rng.normal(np.log(35.0) + 0.25 * (log_mcap - 9.0), 0.9), np.log(0.8),
                         np.log(900.0))
        penny = (log_mcap < 8.0) & (rng.random(n) < 0.35)
        log_p0[penny] = rng.uniform(np.log(0.05), np.log(0.95), penny.sum())
        log_p0[types == gics.SPAC] = np.log(10.0) + rng.normal(0, 0.02, (types == gics.SPAC).sum())
        log_p0[pfd] = np.log(25.0) + rng.normal(0, 0.1, pfd.sum())
        # Draws added later come from a stream of their own, so the draws of `rng` (and hence the
        # listings, dates and halts) stay what they were.
        extra = np.random.default_rng([self.seed, 2])
        # Funds trade at $8-$600; a handful of large caps at $1,000-$4,500 (as NVR, AZO, BKNG).
        log_p0[is_fund] = np.clip(log_p0[is_fund], np.log(8.0), np.log(600.0))
        pricey = (types == gics.COMMON_STOCK) & (log_mcap > 10.0) & (extra.random(n) < 0.02)
        log_p0[pricey] = extra.uniform(np.log(1000.0), np.log(4500.0), n)[pricey]
        log_p0[0] = np.log(380.0)
        log_high = np.maximum(_LOG_HIGH, log_p0 + 0.4)
        shares = np.round(mcap / np.exp(log_p0), -3)
        # Daily idiosyncratic vol: small caps and pennies are wilder.
        base_vol = np.clip(0.011 + 0.012 * (10.0 - log_mcap) + rng.lognormal(-4.6, 0.5, n), 0.006,
                           0.12)
        base_vol[types == gics.SPAC] = 0.004
        base_vol[pfd] = 0.004
        # Funds are diversified: only tracking error and theme on top of their market exposure.
        base_vol[is_fund] = np.clip(extra.lognormal(np.log(0.006), 0.4, n)[is_fund], 0.003, 0.02)
        base_vol[0] = 0.0
        beta = np.clip(rng.normal(1.0, 0.35, n), 0.1, 2.2)
        beta[types == gics.LEVERAGED_ETF] = 3.0
        beta[types == gics.INVERSE_ETF] = -1.0
        beta[types == gics.SPAC] = 0.02
        beta[pfd] = 0.15
        beta[0] = 1.0
        sector_load = np.where(is_fund | (types == gics.SPAC), 0.0, rng.uniform(0.4, 1.1, n))
        turnover = np.clip(rng.lognormal(np.log(0.006), 0.8, n), 2e-5, 0.08)
        turnover[log_mcap < 7.5] *= 0.2  # illiquid micro-caps
        turnover[0] = 0.02
        mean_revert = (rng.random(n) < 0.2) & ~is_fund
        # Listing and halting.
        # Listing and halting dates are absolute (days after the epoch), never relative to the
        # end date, so that a later end only appends sessions. IPOs are spread over 6 years,
        # halts over 5 years after a 3-month grace period.
        e0 = int(np.datetime64(self.epoch, "D").astype(np.int64))
        list_day = e0 - rng.integers(90, 365 * 30, n)  # listed before the epoch
        ipo = (rng.random(n) < 0.08) & (np.arange(n) > 0)
        list_day[ipo] = e0 + rng.integers(1, 365 * 6, ipo.sum())
        halt_day = np.full(n, _NEVER, dtype=np.int64)  # never halted
        halted = (rng.random(n) < 0.02) & (np.arange(n) > 0)
        halt_day[halted] = np.maximum(e0 + rng.integers(90, 365 * 5, halted.sum()),
                                      list_day[halted] + 30)
        exchange = rng.choice(np.array(["NASDAQ", "NYSE", "NYSE American"], dtype=object), size=n,
                              p=[0.55, 0.38, 0.07])
        exchange[is_fund] = "NYSE Arca"
        out = {
            "symbol": symbols, "name": _names(rng, symbols, types, sector), "type": types,
            "exchange": exchange, "sector": sector, "industry": industry, "sector_idx": sector_idx,
            "shares": shares, "log_p0": log_p0, "log_high": log_high, "base_vol": base_vol,
            "beta": beta, "sector_load": sector_load, "turnover": turnover, "mean_revert": mean_revert,
            "list_day": list_day,
        }
        out.update(self._corporate_actions(types, log_mcap, log_p0, list_day, halt_day))
        return out

    def _corporate_actions(self, types: np.ndarray, log_mcap: np.ndarray, log_p0: np.ndarray,
                           list_day: np.ndarray, halt_day: np.ndarray) -> dict[str, np.ndarray]:
        """Per-listing split, dividend and delisting parameters (a stream of their own, drawn in
        a fixed order whatever the masks, so each parameter depends on the seed alone)."""
        n, act = self.n_listings, np.random.default_rng([self.seed, 3])
        e0 = int(np.datetime64(self.epoch, "D").astype(np.int64))
        stock = np.isin(types, [gics.COMMON_STOCK, gics.ADR])
        is_fund = np.isin(types, [gics.ETF, gics.LEVERAGED_ETF, gics.INVERSE_ETF])
        spy = np.arange(n) == 0
        # Forward splits once the raw close passes a per-name threshold ($90-$600); a name that
        # starts near or above its threshold is high-priced by policy (as NVR, AZO) and never
        # splits; SPY never has.
        split_at = act.uniform(np.log(90.0), np.log(600.0), n)
        fund_splits = act.random(n) < 0.3
        split_at[~(stock | (is_fund & fund_splits)) | (log_p0 > split_at - np.log(1.25)) | spy] = (
            np.inf)
        # The exchanges' minimum bid: a listing that closes below $1 for this many sessions
        # running reverse-splits. Names that are sub-dollar from the start are left as they are
        # (as on OTC markets).
        bid_wait = act.integers(30, 150, n).astype(np.float64)
        bid_wait[~(stock | is_fund) | (log_p0 < 0.0) | spy] = np.inf
        # Quarterly cash dividends: who pays, the yield (0.5-6 %/yr), the first scheduled day.
        p_pay = np.select([types == gics.COMMON_STOCK, types == gics.ADR, is_fund,
                           types == gics.PREFERRED],
                          [np.clip(0.3 + 0.15 * (log_mcap - 9.0), 0.05, 0.75), 0.3, 0.55, 1.0], 0.0)
        payer = (act.random(n) < p_pay) | spy
        div_yield = np.where(payer, np.exp(act.uniform(np.log(0.005), np.log(0.06), n)), 0.0)
        div_yield[types == gics.PREFERRED] = act.uniform(0.045, 0.06, n)[types == gics.PREFERRED]
        div_yield[0] = 0.013
        div_anchor = e0 + act.integers(0, _DIV_PERIOD, n)
        # Delistings: waiting times from a per-year hazard of acquisition, bankruptcy and other
        # (SPAC liquidations, fund closures, exchange removals), after a grace period; the halts
        # drawn above are delistings for another reason.
        rates = np.stack([
            np.where(stock, 0.012, 0.0),
            np.where(stock, np.where(log_mcap < 8.5, 0.012, 0.003), 0.0),
            np.select([types == gics.SPAC, is_fund], [0.03, 0.004], 0.002)])
        waits = act.exponential(365.0, (3, n)) / np.maximum(rates, 1e-9)
        fate = np.argmin(waits, axis=0)
        fate_day = np.minimum(np.maximum(list_day, e0) + 150 + waits.min(axis=0), _NEVER
                              ).astype(np.int64)
        reason = np.where(halt_day < fate_day, _OTHER, fate)
        delist_day = np.minimum(halt_day, fate_day)
        delist_day[spy] = _NEVER
        # Acquisitions are announced 30-120 days before the last session, at a 20-45 % premium;
        # a bankruptcy drifts to 1-8 % of its price over the last 90-300 days.
        announce_day = delist_day - act.integers(30, 120, n)
        distress_day = np.maximum(delist_day - act.integers(90, 300, n), np.maximum(list_day, e0))
        premium = act.uniform(0.2, 0.45, n)
        bk_frac = act.uniform(0.01, 0.08, n)
        # Busts (a failed trial, a lost customer): a small cap's home level falls to 1.5-12 % over
        # about a year, at 5 % a year; many end below $1 and so reverse-split.
        bust_day = np.minimum(e0 + 30 + act.exponential(365.0 / 0.05, n), _NEVER).astype(np.int64)
        bust_day[~stock | (log_mcap >= 9.5) | ~np.isfinite(bid_wait)] = _NEVER
        # ... but never below $0.08, where the lower price bound would damp its moves.
        bust = np.maximum(act.uniform(np.log(0.015), np.log(0.12), n), np.log(0.08) - log_p0)
        never = delist_day >= _NEVER
        announce_day[(reason != _ACQUIRED) | never] = _NEVER
        distress_day[(reason != _BANKRUPT) | never] = _NEVER
        return {"split_at": split_at, "bid_wait": bid_wait, "div_yield": div_yield,
                "div_anchor": div_anchor, "delist_day": delist_day, "reason": reason,
                "announce_day": announce_day, "distress_day": distress_day, "premium": premium,
                "bk_frac": bk_frac, "bust_day": bust_day, "bust": bust}

    def _initial_state(self) -> dict[str, Any]:
        p, n = self._params, self.n_listings
        return {"t": 0, "logp": p["log_p0"].copy(), "mkt": 0.0, "var": p["base_vol"] ** 2,
                "mu": np.zeros(n), "mvar": 0.009**2, "svar": np.full(len(gics.SECTORS), 0.006**2),
                "prev_close": np.exp(p["log_p0"]), "lcr": np.zeros(n),
                "base": p["log_p0"].copy(), "shares": p["shares"].astype(np.float64),
                "below": np.zeros(n), "offer": np.full(n, np.nan), "goal": np.full(n, np.nan)}

    @functools.cached_property
    def _derived(self) -> dict[str, Any]:
        """What the walk reads every session, precomputed from the parameters."""
        p = self._params
        kappa = np.where(p["mean_revert"], 0.04, _KAPPA)
        kappa[p["type"] == gics.SPAC] = 0.05  # a SPAC trades near its trust value
        payers = np.flatnonzero(p["div_yield"] > 0.0)
        e0 = int(np.datetime64(self.epoch, "D").astype(np.int64))
        phase = (p["div_anchor"][payers] - e0) % _DIV_PERIOD
        return {"kappa": kappa, "split_price": np.exp(p["split_at"]),
                "special_day": np.minimum(p["announce_day"], p["distress_day"]),
                "act_until": np.minimum(np.minimum(p["announce_day"], p["distress_day"]),
                                        p["delist_day"] + 1),
                "by_phase": [payers[phase == k] for k in range(_DIV_PERIOD)], "e0": e0}

    def _walk_to_end(self) -> None:
        if len(self._acts) < len(self.sessions):
            self._simulate(set(), last=len(self.sessions) - 1)

    def _simulate(self, wanted: set[int], keep: np.ndarray | None = None,
                  last: int | None = None) -> BarBatch:
        """The wanted sessions' bars (of the listings in ``keep``, default all), walking the
        market as far as the last wanted session (or ``last``).

        A walk with nothing wanted (reference data or actions, asked for first by the fetch
        planner) keeps what each session's bars are made of (``_memo``), so that the bars asked
        for next are not simulated twice; a served session's entries, and every earlier one,
        are dropped (the planner asks in date order)."""
        with self._lock:
            ready = sorted(t for t in wanted if t in self._memo)
            out = {t: self._bars(t, *self._memo[t], keep) for t in ready}
            rest = wanted.difference(ready)
            if rest or last is not None:
                out.update(self._walk(rest, keep, max(rest, default=-1) if last is None
                                      else last))
            if wanted:
                for t in [t for t in self._memo if t <= max(wanted)]:
                    del self._memo[t]
            return BarBatch.concat([out[t] for t in sorted(out)])

    def _walk(self, wanted: set[int], keep: np.ndarray | None, last: int
              ) -> dict[int, BarBatch]:
        p, d, n = self._params, self._derived, self.n_listings
        first = min(wanted, default=last)
        # Resume from the state after the last walk when it ended at or before the first wanted
        # session (a fill asks for consecutive chunks), else from the nearest saved state.
        st = self._cursor
        if st is None or st["t"] > first:
            k = max((c for c in self._checkpoints if c <= first), default=None)
            st = self._checkpoints[k] if k is not None else self._initial_state()
        st = _copy_state(st)
        mkt, mvar, svar = st["mkt"], st["mvar"], st["svar"]
        logp, var, mu, prev_close = st["logp"], st["var"], st["mu"], st["prev_close"]
        lcr, base, shares, below = st["lcr"], st["base"], st["shares"], st["below"]
        offer, goal = st["offer"], st["goal"]
        a, b = 0.08, 0.90
        kappa = d["kappa"]
        out: dict[int, BarBatch] = {}
        for t in range(st["t"], last + 1):
            if t % _CHECKPOINT == 0 and t not in self._checkpoints:
                self._checkpoints[t] = _copy_state({
                    "t": t, "logp": logp, "mkt": mkt, "var": var, "mu": mu, "mvar": mvar,
                    "svar": svar, "prev_close": prev_close, "lcr": lcr, "base": base,
                    "shares": shares, "below": below, "offer": offer, "goal": goal})
            day = self.sessions[t]
            today = int(day.astype(np.int64))
            prev_day = int(self.sessions[t - 1].astype(np.int64)) if t else today - 1
            rng = np.random.default_rng([self.seed, 1, today + 100_000])
            m_eps = rng.standard_t(4) / np.sqrt(2.0)
            s_eps = rng.standard_t(4, len(gics.SECTORS)) / np.sqrt(2.0)
            eps = rng.standard_t(4, n) / np.sqrt(2.0)
            u = rng.random(n)  # corporate events
            m = np.sqrt(mvar) * m_eps
            sec = np.sqrt(svar) * s_eps
            idio = np.sqrt(var) * eps
            special = np.flatnonzero(d["special_day"] <= today)
            pin = special[p["announce_day"][special] <= today]  # acquisition announced
            bk = special[p["distress_day"][special] <= today]  # on its way to bankruptcy
            # Which listings may have an action today: listed, traded the session before (a
            # bar before the ex-date), neither acquired nor failing.
            free = functools.partial(_may_act, p["list_day"], d["act_until"], prev_day, today)
            # Splits with ex-date today, decided on the last raw close: forward a while after
            # the close passed the name's threshold, reverse once the minimum-bid wait is over.
            fwd = np.flatnonzero(u < 1 / 20) if t else np.empty(0, dtype=np.int64)
            fwd = free(fwd[prev_close[fwd] > d["split_price"][fwd]])
            rev = free(np.flatnonzero(below >= p["bid_wait"]))
            split = np.concatenate([fwd, rev])
            ratio = np.concatenate([
                _FWD_RATIOS[np.searchsorted(_FWD_CUM, u[fwd] * 20.0)],
                np.where(prev_close[rev] < 0.12, 0.05, np.where(prev_close[rev] < 0.4, 0.1, 0.2))])
            if len(split):
                order = np.argsort(split)
                split, ratio = split[order], ratio[order]
                lcr[split] += np.log(ratio)
                # Copies: yesterday's close and shares may be kept in _memo.
                prev_close, shares = prev_close.copy(), shares.copy()
                prev_close[split] /= ratio
                shares[split] *= ratio
                below[split] = 0.0
            # Quarterly dividends: ex-date = the first session on or after a scheduled day.
            due = [d["by_phase"][(x - d["e0"]) % _DIV_PERIOD] for x in range(prev_day + 1, today + 1)]
            paid = np.sort(np.concatenate(due)) if len(due) > 1 else due[0]
            paid = free(paid) if t else paid[:0]
            amount = np.round(p["div_yield"][paid] / 4.0 * prev_close[paid], 2)
            paid, amount = paid[amount >= 0.01], amount[amount >= 0.01]
            rdiv = np.log1p(-amount / prev_close[paid])
            home = base + p["beta"] * mkt
            busted = np.flatnonzero(p["bust_day"] <= today)
            home[busted] += p["bust"][busted] * np.minimum(
                (today - p["bust_day"][busted]) / 365.0, 1.0)
            out_of_range = np.maximum(logp - p["log_high"], 0.0) - np.maximum(_LOG_LOW - logp, 0.0)
            damp = 1.0 / (1.0 + 4.0 * np.abs(out_of_range))  # its own moves shrink out of range
            r = (p["beta"] * (0.0003 + m) + damp * (p["sector_load"] * sec[p["sector_idx"]]
                                                    + idio + mu)
                 - kappa * (logp - home) - _KAPPA_OUT * out_of_range)
            r[0] = 0.0004 + m
            # Squash rather than clip: daily log moves stay within +-0.6 without a pile-up there.
            r = 0.6 * np.tanh(r / 0.6)
            if len(pin):
                # Acquisitions: a jump to the offer on the announcement, then pinned near it,
                # the spread (3 %) narrowing towards the last session.
                lp = np.log(prev_close[pin])
                new = np.isnan(offer[pin])
                offer[pin[new]] = lp[new] + np.log1p(p["premium"][pin[new]])
                left = ((p["delist_day"][pin] - today)
                        / (p["delist_day"][pin] - p["announce_day"][pin]))
                target = offer[pin] + np.log1p(-0.03 * np.clip(left, 0.0, 1.0))
                # Noise of ~2 ticks (at least 0.4 %, at most 3 %), so that a pinned close moves.
                pc = prev_close[pin]
                tick = np.where(pc >= 1.0, 0.01, 0.0001)
                noise = np.clip(2.0 * tick / pc, 0.004, 0.03) * eps[pin]
                r[pin] = np.where(new, target - lp, 0.35 * (target - lp)) + noise
            if len(bk):
                # Bankruptcies: a drift to a small fraction of the price over the last months.
                lp = np.log(prev_close[bk])
                new = np.isnan(goal[bk])
                goal[bk[new]] = np.log(np.clip(prev_close[bk[new]] * p["bk_frac"][bk[new]],
                                               0.02, 0.6))
                left = np.maximum((p["delist_day"][bk] - today) * (252 / 365), 1.0)
                r[bk] = ((goal[bk] - lp) / left
                         + 0.5 * idio[bk] * np.sqrt(np.minimum(left, 20.0) / 20.0))
            mkt += 0.0003 + m
            mvar = 0.009**2 * (1 - a - b) + a * m**2 + b * mvar
            svar = 0.006**2 * (1 - a - b) + a * sec**2 + b * svar
            # Clustering up to 3x a name's usual volatility: with Student-t shocks an uncapped
            # GARCH now and then explodes to 30x, which no listing shows for months on end.
            var = np.minimum(p["base_vol"] ** 2 * (1 - a - b) + a * idio**2 + b * var,
                             9.0 * p["base_vol"] ** 2)
            mu = 0.985 * mu + rng.normal(0.0, 0.00018, n)
            logp = logp + r
            logp[paid] += rdiv
            base[paid] += rdiv
            close = np.exp(logp - lcr)  # as traded: in today's share basis
            run = np.flatnonzero(close < 1.0)
            run = run[(p["list_day"][run] <= today) & (today <= p["delist_day"][run])]
            below_now = np.zeros(n)
            below_now[run] = below[run] + 1.0
            below = below_now
            first_time = t == len(self._acts)
            if first_time:
                self._acts.append((split, ratio, paid, amount))
            if t in wanted or (first_time and not wanted and self._memo_budget > 0):
                # What the session's bars are made of (the volatility needs no more than float32:
                # it scales noise).
                made: _Memo = (prev_close, close, r, (np.sqrt(var) + 0.004).astype(np.float32),
                               shares)
                if t in wanted:
                    out[t] = self._bars(t, *made, keep)
                else:
                    self._memo[t] = made
                    self._memo_budget -= 20 * n  # close, move, volatility (float32)
            prev_close = close
        self._cursor = {"t": last + 1, "logp": logp, "mkt": mkt, "var": var, "mu": mu,
                        "mvar": mvar, "svar": svar, "prev_close": prev_close, "lcr": lcr,
                        "base": base, "shares": shares, "below": below, "offer": offer,
                        "goal": goal}
        if last == len(self.sessions) - 1:
            self._end_shares = shares.copy()
        return out

    def _bars(self, t: int, prev_close: np.ndarray, close: np.ndarray, r: np.ndarray,
              sig: np.ndarray, shares: np.ndarray, keep: np.ndarray | None) -> BarBatch:
        """Session ``t``'s bars from its closes, move, volatility and shares (draws of their own,
        so that bars made now or from ``_memo`` later are the same)."""
        p, n = self._params, self.n_listings
        day = self.sessions[t]
        today = int(day.astype(np.int64))
        rng = np.random.default_rng([self.seed, 4, today + 100_000])
        paid, amount = self._acts[t][2:]
        open_ = prev_close * np.exp(0.3 * r + 0.2 * sig * rng.standard_normal(n))
        open_[paid] *= 1.0 - amount / prev_close[paid]  # the open is ex-dividend too
        high = np.maximum(open_, close) * np.exp(0.6 * sig * np.abs(rng.standard_normal(n)))
        low = np.minimum(open_, close) * np.exp(-0.6 * sig * np.abs(rng.standard_normal(n)))
        surge = 1.0 + 1.5 * np.abs(r) / sig
        # Shares in today's basis: volume moves inversely to the price at a split.
        volume = np.round(shares * p["turnover"] * surge * np.exp(0.35 * rng.standard_normal(n)))
        o, h, lo, c = (_tick_round(x) for x in (open_, high, low, close))
        # Broken rows: validation and filters must have something to do (never in a listing's
        # last week, so that its last session has a clean bar).
        v = rng.random((3, n))
        dirty = p["delist_day"] - today >= 7
        live = ((today >= p["list_day"]) & (today <= p["delist_day"])
                & ~((v[0] < 2e-4) & (np.arange(n) > 0) & dirty))  # a missing session
        volume[v[1] < 4e-4] = 0.0  # a no-trade day
        bad = np.flatnonzero((v[2] < 4e-5) & dirty)
        kind = rng.integers(0, 3, len(bad))
        c[bad[kind == 0]] = np.nan
        c[bad[kind == 1]] = -c[bad[kind == 1]]
        swap = bad[kind == 2]
        h[swap], lo[swap] = lo[swap] * 0.9, h[swap]
        if keep is not None:
            live &= keep
        rows = np.flatnonzero(live)
        return BarBatch(p["symbol"][rows], np.full(len(rows), day), o[rows], h[rows], lo[rows],
                        c[rows], volume[rows])


def _may_act(list_day: np.ndarray, act_until: np.ndarray, prev_day: int, today: int,
             idx: np.ndarray) -> np.ndarray:
    return idx[(list_day[idx] <= prev_day) & (today < act_until[idx])]


def _copy_state(st: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in st.items()}


def _tick_round(x: np.ndarray) -> np.ndarray:
    """Cents at or above $1, 1/100 cent below (exchange tick sizes)."""
    return np.where(x >= 1.0, np.round(x, 2), np.round(x, 4))


def _tickers(rng: np.random.Generator, n: int, types: np.ndarray) -> np.ndarray:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    seen = {"SPY"}
    out = np.empty(n, dtype=object)
    out[0] = "SPY"
    for i in range(1, n):
        while True:
            k = int(rng.choice([1, 2, 3, 4], p=[0.01, 0.07, 0.42, 0.50]))
            s = "".join(rng.choice(letters, k))
            if types[i] == gics.PREFERRED:
                s = f"{s}.PR{letters[rng.integers(0, 6)]}"
            if s not in seen:
                break
        seen.add(s)
        out[i] = s
    return out


def _names(rng: np.random.Generator, symbols: np.ndarray, types: np.ndarray,
           sector: np.ndarray) -> np.ndarray:
    out = np.empty(len(symbols), dtype=object)
    for i, (s, t) in enumerate(zip(symbols, types, strict=True)):
        stem = "".join(_SYL[j] for j in rng.integers(0, len(_SYL), 2)).capitalize()
        if i == 0:
            out[i] = "SPDR S&P 500 ETF Trust"
        elif t == gics.ETF:
            out[i] = f"{stem} {rng.choice(['Broad Market', 'Dividend', 'Value', 'Growth'])} ETF"
        elif t == gics.LEVERAGED_ETF:
            out[i] = f"{stem} 3x Bull ETF"
        elif t == gics.INVERSE_ETF:
            out[i] = f"{stem} -1x Short ETF"
        elif t == gics.SPAC:
            out[i] = f"{stem} Acquisition Corp."
        elif t == gics.PREFERRED:
            out[i] = f"{stem} {sector[i] or ''} Preferred Series {s[-1]}".replace("  ", " ")
        elif t == gics.ADR:
            out[i] = f"{stem} {rng.choice(['S.A.', 'AG', 'plc', 'N.V.', 'Ltd.'])} ADR"
        else:
            out[i] = f"{stem} {_SUFFIX[int(rng.integers(0, len(_SUFFIX)))]}"
    return out
