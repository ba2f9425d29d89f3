"""The embedded synthetic US market: deterministic, offline, realistic enough to scan.

Same (listings, seed, epoch) -> same data. Each session's random draws are keyed by the session's
date, and the state (prices, volatilities, drifts) only moves forward, so a new session appears as
time passes without changing any earlier one.

What it models, so that every stage of a scan has something to do:
- a market factor (SPY) and 11 GICS sector factors with GARCH-like volatility clustering;
- Student-t (df=4) idiosyncratic shocks with per-name GARCH(1,1) variance (fat tails, clustering);
- slowly wandering drifts (trending names) and a mean-reverting cohort;
- a heavy-tailed market-cap distribution from micro-caps to mega-caps, penny stocks, illiquid names;
- listing types: common stock, ADR, ETF (incl. leveraged and inverse), SPAC, preferred;
- IPOs after the epoch (some with only weeks of history) and halted names whose bars stop;
- a few broken rows: zero volume, missing sessions, and invalid prices that validation must drop;
- price levels and one-year returns inside what US listings show (bounds in README).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cached_property
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
        self._cursor: dict[str, Any] | None = None

    @cached_property
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
        self._requests["reference"] += 1
        p = self._params
        end = int(np.datetime64(self.end, "D").astype(np.int64))
        listed = p["list_day"] <= end  # names that IPO after the end do not exist yet
        return pd.DataFrame({
            "Symbol": p["symbol"], "Name": p["name"], "Type": p["type"],
            "Exchange": p["exchange"], "Sector": p["sector"], "Industry": p["industry"],
            "SharesOutstanding": p["shares"],
            "ListDate": p["list_day"].astype("datetime64[D]"),
        })[listed].reset_index(drop=True)

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        """Bars of every listing for each requested session (one 'grouped' request each)."""
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
        """The given symbols' bars in [start, end] (one 'ticker' request per symbol)."""
        self._requests["ticker"] = self._requests.get("ticker", 0) + len(symbols)
        sess = sessions_between(start, min(end, self.end))
        if len(sess) == 0 or len(symbols) == 0:
            return BarBatch.empty()
        idx = np.searchsorted(self.sessions, sess)
        b = self._simulate(set(idx.tolist()))
        return b.take(np.flatnonzero(np.isin(b.symbol, list(symbols))))

    def actions(self, since: dt.date) -> pd.DataFrame:
        """No corporate actions yet (placeholder until this provider reports them)."""
        from technic_v4.data.providers.base import ACTION_COLUMNS

        return pd.DataFrame({c: pd.Series(dtype=object) for c in ACTION_COLUMNS})

    def splits(self, since: dt.date) -> pd.DataFrame:
        """The embedded market's prices are split-adjusted already: no splits."""
        return pd.DataFrame({c: pd.Series(dtype=object) for c in
                             ("Symbol", "ExecutionDate", "SplitFrom", "SplitTo")})

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
        base_vol[types == gics.SPAC] = 0.003
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
        halt_day = np.full(n, 1 << 40, dtype=np.int64)  # never halted
        halted = (rng.random(n) < 0.02) & (np.arange(n) > 0)
        halt_day[halted] = np.maximum(e0 + rng.integers(90, 365 * 5, halted.sum()),
                                      list_day[halted] + 30)
        exchange = rng.choice(np.array(["NASDAQ", "NYSE", "NYSE American"], dtype=object), size=n,
                              p=[0.55, 0.38, 0.07])
        exchange[is_fund] = "NYSE Arca"
        return {
            "symbol": symbols, "name": _names(rng, symbols, types, sector), "type": types,
            "exchange": exchange, "sector": sector, "industry": industry, "sector_idx": sector_idx,
            "shares": shares, "log_p0": log_p0, "log_high": log_high, "base_vol": base_vol,
            "beta": beta, "sector_load": sector_load, "turnover": turnover, "mean_revert": mean_revert,
            "list_day": list_day, "halt_day": halt_day,
        }

    def _simulate(self, wanted: set[int]) -> BarBatch:
        """Walk the market from the epoch to the last wanted session; keep the wanted ones."""
        p, n = self._params, self.n_listings
        last = max(wanted)
        # Resume from the state after the last walk when it ended before the first wanted
        # session (a fill asks for consecutive chunks), else start over from the epoch.
        cur = self._cursor
        if cur is not None and cur["t"] <= min(wanted):
            t0 = cur["t"]
            logp, var, mu = (cur[k].copy() for k in ("logp", "var", "mu"))
            mkt, mvar = cur["mkt"], cur["mvar"]
            svar, prev_close = cur["svar"].copy(), cur["prev_close"].copy()
        else:
            t0 = 0
            logp = p["log_p0"].copy()
            mkt = 0.0  # the market factor's cumulative log move since the epoch
            var = p["base_vol"] ** 2
            mu = np.zeros(n)
            mvar = 0.009**2
            svar = np.full(len(gics.SECTORS), 0.006**2)
            prev_close = np.exp(logp)
        a, b = 0.08, 0.90
        # Pull towards the market-implied level (see _KAPPA): strong for the mean-reverting cohort.
        kappa = np.where(p["mean_revert"], 0.04, _KAPPA)
        kappa[p["type"] == gics.SPAC] = 0.05  # a SPAC trades near its trust value
        out: list[BarBatch] = []
        sym = p["symbol"]
        for t in range(t0, last + 1):
            day = self.sessions[t]
            rng = np.random.default_rng([self.seed, 1, int(day.astype(np.int64)) + 100_000])
            m_eps = rng.standard_t(4) / np.sqrt(2.0)
            s_eps = rng.standard_t(4, len(gics.SECTORS)) / np.sqrt(2.0)
            eps = rng.standard_t(4, n) / np.sqrt(2.0)
            m = np.sqrt(mvar) * m_eps
            sec = np.sqrt(svar) * s_eps
            idio = np.sqrt(var) * eps
            home = p["log_p0"] + p["beta"] * mkt
            out_of_range = np.maximum(logp - p["log_high"], 0.0) - np.maximum(_LOG_LOW - logp, 0.0)
            damp = 1.0 / (1.0 + 4.0 * np.abs(out_of_range))  # its own moves shrink out of range
            r = (p["beta"] * (0.0003 + m) + damp * (p["sector_load"] * sec[p["sector_idx"]]
                                                    + idio + mu)
                 - kappa * (logp - home) - _KAPPA_OUT * out_of_range)
            r[0] = 0.0004 + m
            # Squash rather than clip: daily log moves stay within +-0.6 without a pile-up there.
            r = 0.6 * np.tanh(r / 0.6)
            mkt += 0.0003 + m
            mvar = 0.009**2 * (1 - a - b) + a * m**2 + b * mvar
            svar = 0.006**2 * (1 - a - b) + a * sec**2 + b * svar
            # Clustering up to 3x a name's usual volatility: with Student-t shocks an uncapped
            # GARCH now and then explodes to 30x, which no listing shows for months on end.
            var = np.minimum(p["base_vol"] ** 2 * (1 - a - b) + a * idio**2 + b * var,
                             9.0 * p["base_vol"] ** 2)
            mu = 0.985 * mu + rng.normal(0.0, 0.00018, n)
            logp = logp + r
            close = np.exp(logp)
            if t not in wanted:
                prev_close = close
                continue
            sig = np.sqrt(var) + 0.004
            open_ = prev_close * np.exp(0.3 * r + 0.2 * sig * rng.standard_normal(n))
            high = np.maximum(open_, close) * np.exp(0.6 * sig * np.abs(rng.standard_normal(n)))
            low = np.minimum(open_, close) * np.exp(-0.6 * sig * np.abs(rng.standard_normal(n)))
            surge = 1.0 + 1.5 * np.abs(r) / sig
            volume = np.round(p["shares"] * p["turnover"] * surge
                              * np.exp(0.35 * rng.standard_normal(n)))
            prev_close = close
            o, h, lo, c = (_tick_round(x) for x in (open_, high, low, close))
            today = int(day.astype(np.int64))
            live = (today >= p["list_day"]) & (today <= p["halt_day"])
            # Broken rows: validation and filters must have something to do.
            u = rng.random((3, n))
            live &= ~((u[0] < 2e-4) & (np.arange(n) > 0))  # a missing session
            volume[u[1] < 4e-4] = 0.0  # a no-trade day
            bad = np.flatnonzero(u[2] < 4e-5)
            kind = rng.integers(0, 3, len(bad))
            c[bad[kind == 0]] = np.nan
            c[bad[kind == 1]] = -c[bad[kind == 1]]
            swap = bad[kind == 2]
            h[swap], lo[swap] = lo[swap] * 0.9, h[swap]
            keep = np.flatnonzero(live)
            out.append(BarBatch(sym[keep], np.full(len(keep), day), o[keep], h[keep], lo[keep],
                                c[keep], volume[keep]))
        self._cursor = {"t": last + 1, "logp": logp, "mkt": mkt, "var": var, "mu": mu,
                        "mvar": mvar, "svar": svar, "prev_close": prev_close}
        return BarBatch.concat(out)


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
