"""Factor and screen statistics against pandas brute force (alphalens' definitions).

scipy is not a dependency: ``Series.rank().corr()`` (Pearson correlation of average ranks) is
``scipy.stats.spearmanr`` by definition, ties included.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_v4.backtest.metrics import (
    ic_decay,
    information_coefficient,
    mean_return_by_quantile,
    prepare_score,
    quantile_turnover,
    quantize,
    rank_autocorrelation,
    screen_stats,
    summarize_ic,
    t_stat,
)
from technic_v4.backtest.returns import forward_returns
from technic_v4.errors import ConfigError

NAN = float("nan")


def panels(seed: int, n: int, t: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """A score and a return panel with holes; ``ties`` draws scores from a few values."""
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 4, (n, t)).astype(float) if ties else rng.normal(size=(n, t))
    fwd = rng.normal(0, 0.05, (n, t))
    score[rng.random((n, t)) < 0.2] = NAN
    fwd[rng.random((n, t)) < 0.2] = NAN
    fwd[rng.random((n, t)) < 0.05] = np.inf       # a zero entry price upstream: not finite
    return score, fwd


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return NAN
    return float(pd.Series(x[ok]).rank().corr(pd.Series(y[ok]).rank()))


@settings(max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), t=st.integers(1, 12),
       ties=st.booleans())
def test_ic_equals_spearman_per_session(seed: int, n: int, t: int, ties: bool) -> None:
    score, fwd = panels(seed, n, t, ties)
    before = score.copy(), fwd.copy()
    got = information_coefficient(score, fwd)
    quantize(score, 3)
    # the inputs are never edited in place (a (N, 1) panel's transpose is not a copy)
    np.testing.assert_array_equal(score, before[0])
    np.testing.assert_array_equal(fwd, before[1])
    want = np.array([spearman(score[:, d], fwd[:, d]) for d in range(t)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_ic_is_nan_with_fewer_than_two_pairs_or_a_constant_side() -> None:
    score = np.array([[1.0, 1.0, 1.0], [2.0, NAN, 1.0], [3.0, 5.0, 1.0]])
    fwd = np.array([[0.1, 0.2, 0.1], [0.3, 0.1, 0.2], [NAN, NAN, 0.3]])
    np.testing.assert_array_equal(information_coefficient(score, fwd), [1.0, NAN, NAN])


def test_perfect_score_has_ic_one_and_a_monotone_quantile_profile() -> None:
    rng = np.random.default_rng(3)
    fwd = rng.normal(0, 0.02, (300, 60))
    score = 5 * fwd + 1                      # any increasing map of the future return
    ic = information_coefficient(score, fwd)
    np.testing.assert_allclose(ic, 1.0, atol=1e-12)
    qr = mean_return_by_quantile(quantize(score, 5), fwd, 5)
    assert (np.diff(qr.mean) > 0).all()
    assert (np.diff(qr.by_session, axis=1) > 0).all()
    assert qr.spread_mean > 0 and qr.spread_t_stat > 10
    assert summarize_ic(-ic).mean == pytest.approx(-1.0)


def test_random_score_has_ic_near_zero() -> None:
    rng = np.random.default_rng(11)
    s = summarize_ic(information_coefficient(rng.normal(size=(400, 250)),
                                             rng.normal(size=(400, 250))))
    # Per-session IC of pure noise has sd ~ 1/sqrt(400) = 0.05; its mean over 250 sessions
    # ~ 0.003: 0.02 is a generous bound, and the t-stat is a standard normal draw.
    assert abs(s.mean) < 0.02
    assert abs(s.t_stat) < 4
    assert s.n_sessions == 250


def test_ic_summary_and_decay() -> None:
    rng = np.random.default_rng(5)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (80, 120)), axis=1))
    # Yesterday's return as a score: a short-lived (and here meaningless) signal.
    score = np.full_like(close, NAN)
    score[:, 1:] = close[:, 1:] / close[:, :-1] - 1
    fwd = {h: forward_returns(None, close, h, entry="close") for h in (1, 5, 21)}
    decay = ic_decay(score, fwd)
    assert list(decay.index) == [1, 5, 21] and decay.index.name == "horizon"
    for h, f in fwd.items():
        ic = pd.Series([spearman(score[:, d], f[:, d]) for d in range(close.shape[1])]).dropna()
        row = decay.loc[h]
        assert row["mean"] == pytest.approx(ic.mean(), abs=1e-12)
        assert row["std"] == pytest.approx(ic.std(), abs=1e-12)
        assert row["ir"] == pytest.approx(ic.mean() / ic.std(), abs=1e-10)
        assert row["t_stat"] == pytest.approx(ic.mean() / (ic.std() / math.sqrt(len(ic))),
                                              abs=1e-9)
        assert row["n_sessions"] == len(ic) == close.shape[1] - 1 - h
    assert math.isnan(t_stat(np.array([1.0]))) and math.isnan(t_stat(np.array([2.0, 2.0])))


@settings(max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), t=st.integers(1, 6),
       q=st.integers(2, 12))
def test_quantize_equals_pandas_qcut_of_the_ranks(seed: int, n: int, t: int, q: int) -> None:
    score, _ = panels(seed, n, t, ties=False)
    got = quantize(score, q)
    assert got.dtype == np.int16
    for d in range(t):
        col = pd.Series(score[:, d])
        ok = col.notna()
        want = np.zeros(n, dtype=np.int64)
        if ok.sum() >= 2:
            want[ok.to_numpy()] = pd.qcut(col[ok].rank(), q, labels=False) + 1
        np.testing.assert_array_equal(got[:, d], want)


def test_tied_scores_share_a_bucket() -> None:
    score = np.array([[1.0], [2.0], [2.0], [2.0], [3.0], [4.0]])
    b = quantize(score, 3)[:, 0]
    # average rank 3 of the tie lies in the lowest third of ranks 1..6 (edges 2.67, 4.33)
    np.testing.assert_array_equal(b, [1, 2, 2, 2, 3, 3])
    assert quantize(np.array([[1.0, NAN], [NAN, NAN]]), 2).tolist() == [[0, 0], [0, 0]]


def alphalens_quantile_returns(buckets: np.ndarray, fwd: np.ndarray, demeaned: bool
                               ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """alphalens' mean_return_by_quantile pipeline on a long frame, in plain pandas."""
    n, t = fwd.shape
    long = pd.DataFrame({"date": np.tile(np.arange(t), n), "q": buckets.ravel(),
                         "r": fwd.ravel()})
    long = long[(long.q > 0) & np.isfinite(long.r)]
    if demeaned:
        long = long.assign(r=long.r - long.groupby("date").r.transform("mean"))
    by_date = long.groupby(["q", "date"]).r.mean().unstack("q")
    return by_date, by_date.mean(), by_date.std() / np.sqrt(by_date.count())


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40), t=st.integers(2, 15),
       q=st.integers(2, 6), demeaned=st.booleans())
def test_mean_return_by_quantile_equals_the_alphalens_pipeline(
        seed: int, n: int, t: int, q: int, demeaned: bool) -> None:
    score, fwd = panels(seed, n, t, ties=True)
    b = quantize(score, q)
    got = mean_return_by_quantile(b, fwd, q, demeaned=demeaned)
    by_date, mean, se = alphalens_quantile_returns(b, fwd, demeaned)
    full = by_date.reindex(index=range(t), columns=range(1, q + 1))
    np.testing.assert_allclose(got.by_session, full.to_numpy(), atol=1e-14)
    np.testing.assert_allclose(got.mean, mean.reindex(range(1, q + 1)).to_numpy(), atol=1e-14)
    np.testing.assert_allclose(got.std_error, se.reindex(range(1, q + 1)).to_numpy(),
                               atol=1e-14)
    spread = (full[q] - full[1]).dropna()
    assert got.spread_sessions == len(spread)
    if len(spread) > 1 and spread.std() > 0:
        assert got.spread_t_stat == pytest.approx(
            spread.mean() / (spread.std() / math.sqrt(len(spread))), rel=1e-9)
    table = got.table()
    assert list(table.index) == list(range(1, q + 1))
    assert int(table["sessions"].sum()) == int(np.isfinite(got.by_session).sum())


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), t=st.integers(1, 10),
       q=st.integers(2, 5), period=st.integers(1, 3))
def test_turnover_and_rank_autocorrelation_equal_brute_force(
        seed: int, n: int, t: int, q: int, period: int) -> None:
    score, _ = panels(seed, n, t, ties=seed % 2 == 0)
    b = quantize(score, q)
    turn = quantile_turnover(b, q, period)
    auto = rank_autocorrelation(score, period)
    ranks = pd.DataFrame(score).rank()      # per session (column), average ranks
    for d in range(t):
        now = {i for i in range(n) if b[i, d] == q}
        if d < period:
            assert math.isnan(turn[d]) and math.isnan(auto[d])
            continue
        before = {i for i in range(n) if b[i, d - period] == q}
        want = len(now - before) / len(now) if now and before else NAN
        assert turn[d] == pytest.approx(want, nan_ok=True)
        pair = ranks[[d, d - period]].dropna()
        corr = pair[d].corr(pair[d - period]) if len(pair) >= 2 else NAN
        assert auto[d] == pytest.approx(corr, nan_ok=True, abs=1e-12)


def test_a_stable_score_has_autocorrelation_one_and_no_turnover() -> None:
    score = np.tile(np.arange(50.0)[:, None], (1, 8))
    np.testing.assert_allclose(rank_autocorrelation(score)[1:], 1.0)
    np.testing.assert_array_equal(quantile_turnover(quantize(score, 5), 5)[1:], 0.0)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), t=st.integers(1, 10))
def test_screen_stats_equal_brute_force(seed: int, n: int, t: int) -> None:
    rng = np.random.default_rng(seed)
    _, fwd = panels(seed, n, t, ties=False)
    matched = np.where(rng.random((n, t)) < 0.4, 1.0, np.where(rng.random((n, t)) < 0.5,
                                                                 0.0, NAN))
    got = screen_stats(matched, fwd)
    pairs = [(d, fwd[i, d]) for d in range(t) for i in range(n)
             if matched[i, d] == 1.0 and math.isfinite(fwd[i, d])]
    vals = np.array([v for _, v in pairs])
    assert got.n == len(pairs)
    for d in range(t):
        day = [v for s, v in pairs if s == d]
        assert got.count[d] == len(day)
        if day:
            assert got.hit_rate_by_session[d] == sum(v > 0 for v in day) / len(day)
            assert got.mean_by_session[d] == pytest.approx(sum(day) / len(day), abs=1e-15)
        else:
            assert math.isnan(got.hit_rate_by_session[d])
            assert math.isnan(got.mean_by_session[d])
    if pairs:
        assert got.hit_rate == pytest.approx(float((vals > 0).mean()))
        assert got.mean == pytest.approx(float(vals.mean()), abs=1e-15)
        assert got.median == float(np.median(vals))
    if len(pairs) > 1 and vals.std() > 0:
        sd = float(vals.std(ddof=1))
        assert got.std == pytest.approx(sd)
        assert got.t_stat == pytest.approx(vals.mean() / (sd / math.sqrt(len(vals))))
    # A boolean panel gives the same answer as its float form.
    same = screen_stats(matched == 1.0, fwd)
    np.testing.assert_array_equal(same.count, got.count)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(3, 25), cut=st.integers(0, 24),
       h=st.integers(1, 4))
def test_statistics_at_a_session_use_nothing_after_its_horizon(
        seed: int, t: int, cut: int, h: int) -> None:
    """Cutting prices and scores after session ``cut`` changes no per-session statistic of a
    session whose horizon ends by ``cut``."""
    rng = np.random.default_rng(seed)
    n = 20
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.03, (n, t)), axis=1))
    open_ = close * np.exp(rng.normal(0, 0.01, (n, t)))
    score = rng.normal(size=(n, t))
    score[rng.random((n, t)) < 0.1] = NAN
    cut = min(cut, t - 1)
    done = max(0, cut - h + 1)

    def stats(upto: int) -> list[np.ndarray]:
        f = forward_returns(open_[:, :upto], close[:, :upto], h)
        s = prepare_score(score[:, :upto])
        b = quantize(s, 4)
        return [information_coefficient(s, f),
                mean_return_by_quantile(b, f, 4).by_session,
                quantile_turnover(b, 4), rank_autocorrelation(s),
                screen_stats(b == 4, f).mean_by_session, b.T]

    for full, part in zip(stats(t), stats(cut + 1), strict=True):
        np.testing.assert_array_equal(part[:done], full[:done])


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ConfigError, match="quantiles"):
        quantize(np.ones((3, 3)), 1)
    with pytest.raises(ConfigError, match="fwd"):
        information_coefficient(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(ConfigError, match="quantiles"):
        mean_return_by_quantile(np.full((3, 3), 5), np.ones((3, 3)), 4)
    with pytest.raises(ConfigError, match="matched"):
        screen_stats(np.ones((2, 3), dtype=bool), np.ones((3, 3)))
    with pytest.raises(ConfigError, match="period"):
        quantile_turnover(np.ones((3, 3)), 1, period=0)
    with pytest.raises(ConfigError, match="score"):
        prepare_score(np.ones(3))


def test_threads_give_the_same_numbers() -> None:
    """Session blocks on several threads write disjoint slices: bit-identical results."""
    score, fwd = panels(21, 40, 700, ties=True)     # 700 sessions: three blocks
    one = prepare_score(score)
    three = prepare_score(score, workers=3)
    np.testing.assert_array_equal(one.ranks, three.ranks)
    np.testing.assert_array_equal(information_coefficient(one, fwd),
                                  information_coefficient(score, fwd, workers=3))
    np.testing.assert_array_equal(quantize(one, 5), quantize(three, 5))
    pd.testing.assert_frame_equal(ic_decay(score, {1: fwd}), ic_decay(score, {1: fwd},
                                                                         workers=2))
    with pytest.raises(ConfigError, match="workers"):
        prepare_score(score, workers=0)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_panels_give_empty_or_nan_answers(shape: tuple[int, int]) -> None:
    x = np.ones(shape)
    b = quantize(x, 3)
    assert b.shape == shape
    assert information_coefficient(x, x).shape == (shape[1],)
    assert np.isnan(mean_return_by_quantile(b, x, 3).mean).all()
    stats = screen_stats(x > 0, x)
    assert stats.n == 0 and math.isnan(stats.mean)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), t=st.integers(1, 15),
       ties=st.booleans())
def test_statistics_at_cells_equal_the_panel_versions(seed: int, n: int, t: int,
                                                      ties: bool) -> None:
    """A score given as rows in any order (a replay's frame) gives the panel kernels' IC,
    buckets, quantile returns, turnover and screen stats bit for bit."""
    from technic_v4.backtest.metrics import (
        Cells,
        information_coefficient_at,
        mean_return_by_quantile_at,
        quantile_turnover_at,
        quantize_at,
        rank_cells,
        screen_stats_at,
    )

    rng = np.random.default_rng(seed)
    score, fwd = panels(seed, n, t, ties)
    rows = rng.random((n, t)) < 0.7
    score = np.where(rows, score, NAN)
    li, si = np.nonzero(rows)
    perm = rng.permutation(len(li))
    cells, order = Cells.of_rows(li[perm], si[perm], n, t)
    np.testing.assert_array_equal(cells.listing, Cells.of_mask(rows).listing)
    np.testing.assert_array_equal(cells.listing, li[perm][order])
    cs = rank_cells(cells, score[li, si][perm][order])
    y = cells.take(fwd)
    np.testing.assert_array_equal(information_coefficient_at(cs, y),
                                  information_coefficient(score, fwd))
    b = quantize(score, 4)
    bc = quantize_at(cs, 4)
    np.testing.assert_array_equal(bc, b[cells.listing, cells.session])
    want, got = mean_return_by_quantile(b, fwd, 4), mean_return_by_quantile_at(cells, bc, y, 4)
    for f in ("by_session", "count", "mean", "std_error", "spread"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
    np.testing.assert_array_equal(quantile_turnover_at(cells, bc, 4), quantile_turnover(b, 4))
    i, s = np.nonzero(rows)  # listing-major: the panel version's order
    a, w = screen_stats_at(s, fwd[i, s], t), screen_stats(rows, fwd)
    assert (a.n, a.mean, a.median) == (w.n, w.mean, w.median) or a.n == 0
    np.testing.assert_array_equal(a.mean_by_session, w.mean_by_session)
    with pytest.raises(ConfigError, match="listing"):
        Cells.of_rows(np.r_[li, li[:1]], np.r_[si, si[:1]], n, t) if len(li) else \
            Cells.of_rows(np.array([n]), np.array([0]), n, t)
