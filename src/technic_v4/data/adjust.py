"""Corporate-action adjustment: the prices a chart showed as of a basis date.

Bars are stored as traded; views (panels, price histories, scans) are adjusted as of the session
they are about, the basis ``B``. Array kernels only (numpy/numba, no pandas): ``data/panel.py``
and ``data/market.py`` are the layer above.

The math (the contract shared with every other derivation of it, e.g. the loopback vendor):

- split factor of a bar dated ``t``: ``F_B(t)`` = product of the ratios (new shares per old
  share) of the listing's splits with ``t < ExDate <= B``;
  adjusted price = ``raw / F``, adjusted volume = ``raw * F``;
- ``"total"`` (total return) further multiplies prices by ``G_B(t)`` = product over dividends with
  ``t < ExDate <= B`` of ``(1 - Amount / C)``, ``C`` = the raw close of the listing's last bar
  before the ex-date expressed in the ex-date's share basis (divided by the ratios of splits with
  that bar's date < ExDate_split <= ExDate_dividend); adjusted price = ``raw / F * G`` (CRSP's
  and Yahoo's convention). A dividend of at least ``C`` (impossible data) is ignored.

Determinism: every product is taken in descending ex-date order (the order a walk back from
the newest bar meets the actions; ties by type, splits after dividends as stored), so the same
bar adjusted by any path - a panel as of ``B`` from the store, ``Panel.at(B)`` cut from a later
panel, a few symbols' panel - has the same bits. A bar no action applies to keeps its raw value
bit for bit (no arithmetic touches rows without an action in their window, and ``x / 1.0 *
1.0`` is ``x``).

Modes: ``"split"`` (the default: what a chart showed), ``"total"`` (split- and
dividend-adjusted prices, for return calculations; volume split-adjusted), ``"none"`` (as
traded).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from technic_v4.errors import ConfigError

MODES = ("split", "total", "none")
DEFAULT_MODE = "split"
SPLIT, DIVIDEND = 0, 1  # ``Actions.kind``
FIELDS = ("open", "high", "low", "close", "volume")


def check_mode(mode: object, field: str = "adjust") -> str:
    """``mode`` if it is one of :data:`MODES`, else ConfigError naming ``field``."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ConfigError(field, f"unknown adjustment {mode!r}; valid: {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class Actions:
    """Corporate actions as arrays sorted by (sid, ex day, kind): splits carry their ratio,
    dividends their cash amount per share in ``value``. Days are int days since 1970."""

    sid: np.ndarray  # (A,) int32
    day: np.ndarray  # (A,) int32: ex-date
    kind: np.ndarray  # (A,) int8: SPLIT or DIVIDEND
    value: np.ndarray  # (A,) float64: ratio (split) or amount (dividend)

    @classmethod
    def build(cls, sid: Any, day: Any, kind: Any, value: Any) -> Actions:
        sid = np.asarray(sid, dtype=np.int32)
        day = np.asarray(day, dtype=np.int32)
        kind = np.asarray(kind, dtype=np.int8)
        value = np.asarray(value, dtype=np.float64)
        # Dividends before splits on the same day (the store's order: by type name).
        order = np.lexsort((kind == SPLIT, day, sid))
        return cls(sid[order], day[order], kind[order], value[order])

    @classmethod
    def empty(cls) -> Actions:
        return cls.build([], [], [], [])

    def __len__(self) -> int:
        return len(self.sid)

    def of_mode(self, mode: str) -> Actions:
        """The actions a view of ``mode`` applies (splits only for ``"split"``)."""
        if mode == "total":
            return self
        keep = self.kind == SPLIT if mode == "split" else np.zeros(len(self), dtype=bool)
        if keep.all():
            return self
        return Actions(self.sid[keep], self.day[keep], self.kind[keep], self.value[keep])

    def digest(self, basis: int | None = None) -> str:
        """Names the actions with ex day <= ``basis`` (all without): equal sets, equal digest."""
        keep = slice(None) if basis is None else self.day <= basis
        h = hashlib.sha256()
        for a in (self.sid, self.day, self.kind, self.value):
            h.update(np.ascontiguousarray(a[keep]).tobytes())
        return h.hexdigest()[:16]

    def of_sids(self, sids: np.ndarray) -> Actions:
        """The actions of the listings ``sids`` only (still sorted): what a panel of a few
        rows adjusts with, without scanning every listing's actions at each view."""
        lo, hi = self.ranges(np.unique(np.asarray(sids, dtype=np.int32)))
        take = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True) if b > a]
                              or [np.empty(0, dtype=np.int64)])
        return Actions(self.sid[take], self.day[take], self.kind[take], self.value[take])

    def ranges(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``sids``, the [start, end) of its actions."""
        s = np.asarray(sids, dtype=np.int32)
        return (np.searchsorted(self.sid, s, side="left").astype(np.int64),
                np.searchsorted(self.sid, s, side="right").astype(np.int64))


@dataclass(frozen=True)
class RawRows:
    """The raw (as traded) bars of the rows of an adjusted panel that differ from raw: what
    re-adjusting to another basis needs (``Panel.at``). ``rows`` are panel row positions."""

    rows: np.ndarray  # (k,) int64, ascending
    open: np.ndarray  # (k, L) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in FIELDS) + self.rows.nbytes

    def take(self, idx: np.ndarray, n_rows: int) -> RawRows | None:
        """The raw rows of ``panel.rows(idx)`` (``n_rows``: rows of this panel)."""
        at = np.full(n_rows, -1, dtype=np.int64)
        at[self.rows] = np.arange(len(self.rows))
        m = at[np.asarray(idx, dtype=np.int64)]
        sel = np.flatnonzero(m >= 0)
        if len(sel) == 0:
            return None
        return RawRows(sel.astype(np.int64), *(getattr(self, f)[m[sel]] for f in FIELDS))

    def tail(self, n: int) -> RawRows:
        return RawRows(self.rows, *(np.ascontiguousarray(getattr(self, f)[:, -n:])
                                    for f in FIELDS))


def affected(sids: np.ndarray, day: np.ndarray, actions: Actions, basis: int) -> np.ndarray:
    """Rows (ascending positions) with an action in ``(first bar, basis]``: the only rows an
    adjustment as of ``basis`` changes. ``day`` is the (N, L) bar-day grid, -1 where padded."""
    if len(actions) == 0 or len(sids) == 0:
        return np.empty(0, dtype=np.int64)
    act = actions.day <= basis
    if not act.any():
        return np.empty(0, dtype=np.int64)
    a_sid = actions.sid[act].astype(np.int64)
    a_day = actions.day[act]
    s = np.asarray(sids, dtype=np.int64)
    lo = int(min(s.min(), a_sid.min()))
    table = np.full(int(max(s.max(), a_sid.max())) - lo + 1, -1, dtype=np.int64)
    table[s - lo] = np.arange(len(s))
    row = table[a_sid - lo]
    ok = row >= 0
    row, a_day = row[ok], a_day[ok]
    if len(row) == 0:
        return np.empty(0, dtype=np.int64)
    width = day.shape[1]
    n_real = (day >= 0).sum(axis=1)  # rows are right-aligned: the first bar is at width - n
    first = day[np.arange(len(s)), np.minimum(width - n_real, width - 1)]
    hit = (n_real[row] > 0) & (a_day > first[row])
    return np.unique(row[hit]).astype(np.int64)


@njit(cache=True, nogil=True)
def _adjust(day: Any, o: Any, h: Any, lo: Any, c: Any, v: Any, starts: Any, ends: Any,
            a_day: Any, a_kind: Any, a_val: Any, basis: int, out_o: Any, out_h: Any,
            out_l: Any, out_c: Any, out_v: Any) -> None:
    """Adjust each row's raw bars as of ``basis`` (see the module docstring for the math)."""
    k, width = day.shape
    for r in range(k):
        s0 = starts[r]
        hi = ends[r]
        while hi > s0 and a_day[hi - 1] > basis:
            hi -= 1
        a = hi - 1  # the next action (walking back) still to apply
        f = 1.0
        g = 1.0
        for j in range(width - 1, -1, -1):
            t = day[r, j]
            if t < 0:
                out_o[r, j] = o[r, j]
                out_h[r, j] = h[r, j]
                out_l[r, j] = lo[r, j]
                out_c[r, j] = c[r, j]
                out_v[r, j] = v[r, j]
                continue
            while a >= s0 and a_day[a] > t:
                if a_kind[a] == 0:
                    f *= a_val[a]
                else:
                    # Bar j is the last bar before this ex-date: its close in the ex-date's basis.
                    s = 1.0
                    for b in range(hi - 1, s0 - 1, -1):
                        if a_kind[b] == 0 and a_day[b] > t and a_day[b] <= a_day[a]:
                            s *= a_val[b]
                    m = 1.0 - a_val[a] / (c[r, j] / s)
                    if m > 0.0:
                        g *= m
                a -= 1
            out_o[r, j] = o[r, j] / f * g
            out_h[r, j] = h[r, j] / f * g
            out_l[r, j] = lo[r, j] / f * g
            out_c[r, j] = c[r, j] / f * g
            out_v[r, j] = v[r, j] * f


def adjust_rows(raw: dict[str, np.ndarray], day: np.ndarray, sids: np.ndarray,
                actions: Actions, basis: int) -> dict[str, np.ndarray]:
    """The adjusted (k, L) arrays of raw rows ``raw`` (bars ``day``, listings ``sids``)."""
    starts, ends = actions.ranges(sids)
    out = {f: np.empty(day.shape, dtype=np.float64) for f in FIELDS}
    _adjust(np.ascontiguousarray(day, dtype=np.int32),  # type: ignore[call-arg]
            *(np.ascontiguousarray(raw[f], dtype=np.float64) for f in FIELDS),  # type: ignore[arg-type]
            starts, ends, actions.day, actions.kind, actions.value, int(basis),
            *(out[f] for f in FIELDS))
    return out


def apply(arrays: dict[str, np.ndarray], sids: np.ndarray, day: np.ndarray, actions: Actions,
          basis: int, mode: str) -> RawRows | None:
    """Adjust a panel's raw ``arrays`` (``FIELDS`` -> (N, L)) as of ``basis`` in place, only in
    the rows an action of ``mode`` changes; returns those rows' raw bars (None: nothing to do,
    and nothing was copied or written)."""
    acts = actions.of_mode(mode)
    rows = affected(sids, day, acts, basis)
    if len(rows) == 0:
        return None
    raw = {f: arrays[f][rows] for f in FIELDS}  # fancy indexing: copies
    adj = adjust_rows(raw, day[rows], np.asarray(sids)[rows], acts, basis)
    for f in FIELDS:
        arrays[f][rows] = adj[f]
    return RawRows(rows, *(raw[f] for f in FIELDS))


def split_product(sids: np.ndarray, actions: Actions, after: int, through: int) -> np.ndarray:
    """Per listing of ``sids``, the product of its split ratios with ``after < ExDate <=
    through`` (descending ex-date order; 1.0 without any): e.g. how many of today's shares one
    share of ``after`` became."""
    acts = actions.of_mode("split")
    out = np.ones(len(sids), dtype=np.float64)
    sel = (acts.day > after) & (acts.day <= through)
    if not sel.any():
        return out
    pos = {int(s): i for i, s in enumerate(np.asarray(sids).tolist())}
    for k in np.flatnonzero(sel)[::-1]:  # descending (sid, day): per sid descending ex-date
        i = pos.get(int(acts.sid[k]))
        if i is not None:
            out[i] *= acts.value[k]
    return out
