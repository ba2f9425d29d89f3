from __future__ import annotations

import numpy as np

from technic_v4.plans import plans

KW = {"account_size": 100_000.0, "risk_pct": 1.0, "target_rr": 2.0, "min_stop_atr": 1.0,
      "max_stop_atr": 3.0, "max_adv_pct": 1.0}


def _cols(**over: list[float]) -> dict[str, np.ndarray]:
    base = {"Close": [100.0], "ATR14": [2.0], "SwingLow": [97.0], "SwingHigh": [104.0],
            "DollarVolume20": [1e9]}
    base.update(over)
    return {k: np.array(v, dtype=float) for k, v in base.items()}


def test_long_plan_uses_swing_low_within_atr_band() -> None:
    p = plans(_cols(), np.array(["Long"]), **KW)
    assert p["Entry"][0] == 100.0
    assert p["Stop"][0] == 96.5  # swing low 97 - 0.25 ATR, inside [94, 98]
    assert p["Target"][0] == 107.0
    assert p["RewardRisk"][0] == 2.0
    assert p["PositionSize"][0] == 285  # floor(1000 / 3.5)


def test_stop_is_clamped_to_the_atr_band() -> None:
    far = plans(_cols(SwingLow=[80.0]), np.array(["Long"]), **KW)
    assert far["Stop"][0] == 94.0  # at most 3 ATR
    near = plans(_cols(SwingLow=[99.9]), np.array(["Long"]), **KW)
    assert near["Stop"][0] == 98.0  # at least 1 ATR


def test_size_capped_by_liquidity_and_cash() -> None:
    thin = plans(_cols(DollarVolume20=[50_000.0]), np.array(["Long"]), **KW)
    assert thin["PositionSize"][0] == 5  # 1 % of $50k ADV at $100
    cheap = plans(_cols(Close=[1.0], ATR14=[0.001], SwingLow=[0.999]), np.array(["Long"]), **KW)
    assert cheap["PositionSize"][0] == 100_000  # the whole account, no leverage


def test_short_plan_mirrors() -> None:
    p = plans(_cols(), np.array(["Short"]), **KW)
    assert p["Stop"][0] == 104.5
    assert p["Target"][0] == 91.0
    assert p["Stop"][0] > p["Entry"][0] > p["Target"][0]


def test_missing_atr_gives_no_plan() -> None:
    p = plans(_cols(ATR14=[np.nan]), np.array(["Watch"]), **KW)
    assert all(np.isnan(p[k][0]) for k in ("Entry", "Stop", "Target", "PositionSize"))


def test_stop_never_at_or_below_zero() -> None:
    p = plans(_cols(Close=[0.5], ATR14=[0.4], SwingLow=[0.01]), np.array(["Long"]), **KW)
    assert 0 < p["Stop"][0] < p["Entry"][0]


def test_signal_codes_give_the_plans_of_their_names() -> None:
    """A replay passes int8 codes into ``scores.SIGNALS`` instead of names: same plans."""
    from technic_v4.plans import SHORT_CODES, SHORT_SIGNALS
    from technic_v4.scoring.scores import SIGNALS

    assert [SIGNALS[c] for c in SHORT_CODES] == list(SHORT_SIGNALS)
    names = np.array(SIGNALS, dtype=object)
    n = len(names)
    cols = _cols(Close=[100.0] * n, ATR14=[2.0] * n, SwingLow=[97.0] * n, SwingHigh=[104.0] * n,
                 DollarVolume20=[1e9] * n)
    by_name = plans(cols, names, **KW)
    by_code = plans(cols, np.arange(n, dtype=np.int8), **KW)
    for k, v in by_name.items():
        np.testing.assert_array_equal(by_code[k], v, err_msg=k)
    assert (by_name["Stop"][4:] > 100).all() and (by_name["Stop"][:4] < 100).all()
