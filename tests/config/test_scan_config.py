from __future__ import annotations

import datetime as dt

import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.config.settings import Settings, get_settings, reset_settings, settings
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError, SettingError
from technic_v4.scanner_core import run_scan
from technic_v4.universe import gics


def test_defaults_scan_everything() -> None:
    c = ScanConfig()
    assert c.max_symbols is None
    assert c.lookback_days >= 300
    assert c.types == (gics.COMMON_STOCK, gics.ADR)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_symbols": -1}, "max_symbols"),
    ({"max_symbols": "100"}, "max_symbols"),
    ({"max_symbols": 1.5}, "max_symbols"),
    ({"max_symbols": True}, "max_symbols"),
    ({"top_n": 0}, "top_n"),
    ({"min_tech_rating": 101}, "min_tech_rating"),
    ({"lookback_days": 10}, "lookback_days"),
    ({"risk_pct": 0}, "risk_pct"),
    ({"as_of_date": "not a date"}, "as_of_date"),
])
def test_bad_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        ScanConfig(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field
    assert str(e.value).startswith(field)


def test_unknown_field_lists_valid_fields() -> None:
    with pytest.raises(ValueError, match="unknown ScanConfig field") as e:
        ScanConfig(max_symbol=10)  # type: ignore[call-arg]
    assert "max_symbols" in str(e.value)


def test_unknown_sector_lists_every_gics_name() -> None:
    # The predecessor's whitelist used "Technology" and silently lost a whole sector.
    with pytest.raises(ValueError) as e:
        ScanConfig(sectors=["Technology", "Health Care"])
    msg = str(e.value)
    assert "'Technology'" in msg
    for name in gics.SECTORS:
        assert name in msg


def test_sector_names_are_canonicalised() -> None:
    c = ScanConfig(sectors="information technology", industries=["software"])
    assert c.sectors == ("Information Technology",)
    assert c.industries == ("Software",)


def test_unknown_type_rejected() -> None:
    with pytest.raises(ConfigError, match="Leveraged ETF"):
        ScanConfig(types=["Warrant"])


def test_inconsistent_history_rejected() -> None:
    with pytest.raises(ConfigError, match="min_history"):
        ScanConfig(min_history=400, lookback_days=300)


def test_as_of_parses_iso_dates() -> None:
    assert ScanConfig(as_of_date="2026-11-20").as_of_date == dt.date(2026, 11, 20)


def test_config_is_frozen() -> None:
    c = ScanConfig()
    with pytest.raises(Exception, match="frozen"):
        c.max_symbols = 3  # type: ignore[misc]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_USE_RAY", "true")
    monkeypatch.setenv("TECHNIC_MAX_WORKERS", "3")
    monkeypatch.setenv("TECHNIC_SYNTHETIC_END", "2026-01-05")
    reset_settings()
    s = get_settings()
    assert s.use_ray is True
    assert s.max_workers == 3
    assert s.synthetic_end == dt.date(2026, 1, 5)
    assert settings.use_ray is True  # the seed's `settings.use_ray`


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_MAX_WORKERS", "0")
    with pytest.raises(ValueError, match="max_workers"):
        Settings()
    monkeypatch.setenv("TECHNIC_MAX_WORKERS", "2")
    monkeypatch.setenv("TECHNIC_DATA_PROVIDER", "yahoo")
    with pytest.raises(ValueError, match="synthetic"):
        Settings()


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_MAX_WORKERS", "abc")
    reset_settings()
    with pytest.raises(SettingError) as e:
        get_settings()
    assert isinstance(e.value, ConfigError)
    assert e.value.field == "TECHNIC_MAX_WORKERS"
    msg = str(e.value)
    assert msg.startswith("TECHNIC_MAX_WORKERS=abc: ") and "valid integer" in msg
    assert "\n" not in msg and "pydantic.dev" not in msg and "max_workers" not in msg


def test_every_bad_variable_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_MAX_WORKERS", "0")
    monkeypatch.setenv("TECHNIC_DATA_PROVIDER", "yahoo")
    reset_settings()
    with pytest.raises(SettingError) as e:
        get_settings()
    msg = str(e.value)
    assert "TECHNIC_MAX_WORKERS=0: Input should be greater than or equal to 1" in msg
    assert "TECHNIC_DATA_PROVIDER=yahoo: Input should be 'synthetic', 'polygon' or 'files'" in msg
    assert "\n" not in msg


def test_cross_field_errors_name_their_field() -> None:
    with pytest.raises(ConfigError) as e:
        ScanConfig(min_stop_atr=5)
    assert e.value.field == "min_stop_atr" and "max_stop_atr (3.0)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        ScanConfig(min_history=400)
    assert e.value.field == "min_history"


def test_named_symbols_allow_every_type() -> None:
    named = ScanConfig(symbols="spy")
    assert named.symbols == ("SPY",) and named.types == gics.TYPES
    assert ScanConfig(**named.model_dump()) == named  # survives the service's JSON round trip
    assert ScanConfig(symbols=["SPY"], types=["ETF"]).types == ("ETF",)
    assert ScanConfig(symbols=None).types == gics.DEFAULT_TYPES


def test_named_etf_is_scanned(seed_api: MarketData) -> None:
    df, msg = run_scan(ScanConfig(symbols=["SPY"]))
    assert list(df["Symbol"]) == ["SPY"] and df["Type"].iloc[0] == gics.ETF, msg
    df, _ = run_scan(ScanConfig(symbols=["SPY"], types=[gics.COMMON_STOCK]))
    assert df.empty
    stages = {s["stage"]: s for s in df.attrs["stats"]["stages"]}
    assert stages["smart_filter"]["out"] == 0 and "type ETF" in stages["smart_filter"]["dropped"]
    # run_scan's keyword overrides on top of a config keep "types not given"
    df, _ = run_scan(ScanConfig(top_n=5), symbols=["SPY"])
    assert list(df["Symbol"]) == ["SPY"]
