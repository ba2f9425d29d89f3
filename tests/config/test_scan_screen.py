"""ScanConfig's screen fields: validated and compiled where the request enters."""

from __future__ import annotations

import json

import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.config.screen import clause_text
from technic_v4.errors import ConfigError
from technic_v4.terms.language import ScreenError


@pytest.mark.parametrize(("kwargs", "field", "line", "column", "caret"), [
    ({"where": "close > smaa(50)"}, "where", 1, 9, "close > smaa(50)\n        ^^^^"),
    ({"where": "close + 1"}, "where", 1, 1, "close + 1\n^^^^^^^^^"),  # a number, not a condition
    ({"where": "close > 1 and\n  sector > 3"}, "where", 2, 10, "  sector > 3\n         ^"),
    ({"columns": {"Gap": "open / close[1] -"}}, "columns.Gap", 1, 18,
     "open / close[1] -\n                 ^"),
    ({"sort_by": "sector"}, "sort_by", 1, 1, "sector\n^^^^^^"),
    ({"sort_by": "close > 1"}, "sort_by", 1, 1, "close > 1\n^^^^^^^^^"),
])
def test_a_bad_expression_names_field_line_column_and_caret(
        kwargs: dict[str, object], field: str, line: int, column: int, caret: str) -> None:
    with pytest.raises(ScreenError) as e:
        ScanConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(e.value, ConfigError)
    assert (e.value.field, e.value.line, e.value.column, e.value.caret) == \
        (field, line, column, caret)
    assert str(e.value).startswith(f"{field}: ") and "\n" not in str(e.value)


@pytest.mark.parametrize(("columns", "field", "fragment"), [
    ({"rsi14": "close"}, "columns.rsi14", "clashes with the built-in column 'RSI14'"),
    ({"matched": "close"}, "columns.matched", "clashes with the built-in column 'Matched'"),
    ({"Failed": "close"}, "columns.Failed", "clashes with the built-in column 'Failed'"),
    ({"2x": "close"}, "columns.2x", "must be an identifier"),
    ({"a b": "close"}, "columns.a b", "must be an identifier"),
    ({"Gap": "close", "GAP": "open"}, "columns.GAP", "the same name as column 'Gap'"),
    ({"Gap": "  "}, "columns.Gap", "needs an expression"),
    ({f"c{i}": "close" for i in range(65)}, "columns", "at most 64 columns"),
])
def test_column_names(columns: dict[str, str], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as e:
        ScanConfig(columns=columns)
    assert e.value.field == field


def test_preset_unknown_suggests_and_known_is_canonical() -> None:
    with pytest.raises(ConfigError, match="did you mean rsi2_pullback") as e:
        ScanConfig(preset="rsi_pullback")
    assert e.value.field == "preset"
    assert ScanConfig(preset=" VCP ").preset == "vcp"


def test_near_miss_bounds() -> None:
    with pytest.raises(ConfigError) as e:
        ScanConfig(where="close > 1", near_miss=-1)
    assert e.value.field == "near_miss"
    with pytest.raises(ConfigError, match="needs a where or a preset"):
        ScanConfig(near_miss=1)
    assert ScanConfig(preset="vcp", near_miss=1).near_miss == 1


def test_preset_and_where_combine_by_and_keeping_each_clause() -> None:
    c = ScanConfig(preset="golden_cross_today",
                   where="RSI14 < 30 or RSI14 > 70  # either extreme")
    w = c.screen().where
    assert w is not None
    assert [clause_text(x.text) for x in w.clauses] == [
        "crossed_above(sma(close, 50), sma(close, 200))",
        "(RSI14 < 30 or RSI14 > 70 )"]
    assert clause_text('sector == "#1" # a comment\n and x') == 'sector == "#1" and x'
    c = ScanConfig(preset="pocket_pivot", where="RSI14 < 70 and close > 5")
    assert c.screen().where is not None
    assert [x.text for x in c.screen().where.clauses] == [
        "pocket_pivot(10)", "close > sma(close, 50)", "RSI14 < 70", "close > 5"]


def test_sessions_needed_and_sort_by_a_user_column() -> None:
    c = ScanConfig(columns={"Far": "close[400]"}, sort_by="far")
    spec = c.screen()
    assert spec.sort_column == "Far" and spec.sort is None
    assert c.bars_needed == 401
    assert spec.longest() is not None and spec.longest()[0] == "columns.Far"  # type: ignore[index]
    assert ScanConfig().bars_needed == 300
    with pytest.raises(ConfigError, match="column 'Up' is not a number"):
        ScanConfig(columns={"Up": "close > open"}, sort_by="Up")


def test_the_json_dump_round_trips_and_is_canonical() -> None:
    c = ScanConfig(where="  close > 1 ", columns={"B": " open ", "A": "close"}, sort_by="A",
                   preset="VCP", near_miss=1)
    d = c.model_dump(mode="json")
    assert (d["where"], d["columns"], d["preset"]) == ("close > 1", {"B": "open", "A": "close"},
                                                      "vcp")
    assert list(d["columns"]) == ["B", "A"]  # the order of the output columns
    assert ScanConfig(**json.loads(json.dumps(d))) == c
    assert ScanConfig(where="", sort_by=" ").model_dump()["where"] is None
    # The service's canonical dump lists columns as pairs (its keys are sorted).
    assert ScanConfig(columns=[["B", "open"], ["A", "close"]]).columns == {"B": "open",
                                                                          "A": "close"}
