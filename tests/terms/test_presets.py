"""The shipped presets: each has its header and compiles to a condition."""

from __future__ import annotations

import pytest

from technic_v4.errors import ConfigError
from technic_v4.terms.language import compile
from technic_v4.terms.presets import preset, presets

ISSUE_PRESETS = {
    "minervini_trend_template", "breakout_52w_high_volume", "golden_cross_today",
    "rsi2_pullback", "bollinger_squeeze", "nr7_inside_day", "pocket_pivot", "vcp",
    "cup_with_handle", "high_tight_flag", "oversold_bounce", "top_rs_by_sector",
}


def test_the_issues_twelve_presets_ship() -> None:
    assert set(presets()) >= ISSUE_PRESETS


@pytest.mark.parametrize("pid", sorted(presets()))
def test_each_preset_compiles(pid: str) -> None:
    p = presets()[pid]
    assert p.name and p.description and p.source
    s = compile(p.expression, field="preset", want="bool")
    assert s.clauses and s.bars >= 1
    assert not p.expression.startswith("# name")


def test_preset_lookup() -> None:
    assert preset("VCP").id == "vcp"
    assert compile(preset("minervini_trend_template").expression).bars == 252
    with pytest.raises(ConfigError, match=r"unknown preset 'golden_cros'; did you mean "
                                          r"golden_cross_today\?"):
        preset("golden_cros")
