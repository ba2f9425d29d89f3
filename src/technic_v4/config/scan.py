"""ScanConfig: one scan request, validated where it enters.

Invalid values raise :class:`technic_v4.errors.ConfigError` (a ``ValueError``) naming the field and
the valid values. Unknown fields are errors (a typo must not silently scan with defaults).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from technic_v4.errors import ConfigError
from technic_v4.universe import gics

if TYPE_CHECKING:
    from technic_v4.config.screen import ScreenSpec

Number = pydantic.StrictFloat | pydantic.StrictInt
# ``lookback_days=None`` asks for every stored bar: more than any store holds (loads are capped
# at the stored sessions, ``MarketData.max_bars``).
ALL_BARS = 1_000_000


class ScanConfig(BaseModel):
    """A scan request. Every field has a default; ``ScanConfig()`` scans the whole market."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # Universe and smart filter
    max_symbols: pydantic.StrictInt | None = Field(
        default=None, ge=0, description="Scan the first N listings by market cap after the smart "
        "filter; None = all; 0 = nothing (an empty result that says so).")
    sectors: tuple[str, ...] | None = Field(default=None, description="GICS sector names.")
    industries: tuple[str, ...] | None = Field(default=None, description="GICS industry names.")
    types: tuple[str, ...] = Field(default=gics.DEFAULT_TYPES, description="Listing types "
                                   "(default: every type when symbols are named).")
    symbols: tuple[str, ...] | None = Field(default=None, description="Only these tickers, "
                                            "whatever their type unless types is given.")
    # Pre-screen (cheap data, before indicators)
    min_price: Number = Field(default=1.0, ge=0)
    min_dollar_volume: Number = Field(default=1_000_000.0, ge=0,
                                      description="Minimum 20-session average dollar volume.")
    min_market_cap: Number = Field(default=50_000_000.0, ge=0)
    min_history: pydantic.StrictInt = Field(default=200, ge=1,
                                            description="Minimum bars (sessions) of history.")
    max_stale_sessions: pydantic.StrictInt = Field(
        default=2, ge=0, description="Drop names whose last bar is more sessions before as-of.")
    # Indicators
    lookback_days: pydantic.StrictInt | None = Field(
        default=300, ge=30, le=5000, description="Bars (sessions) loaded per symbol; None = "
        "every stored bar (each indicator then starts at the listing's first stored session: "
        "what a backtest replays).")
    as_of_date: dt.date | None = Field(default=None, description="Point-in-time session.")
    # Ranking and output
    min_tech_rating: Number = Field(default=0.0, ge=0, le=100)
    top_n: pydantic.StrictInt | None = Field(default=None, ge=1)
    only_tradeable: StrictBool = False
    allow_shorts: StrictBool = False
    # Trade plan
    account_size: Number = Field(default=100_000.0, gt=0)
    risk_pct: Number = Field(default=1.0, gt=0, le=100)
    target_rr: Number = Field(default=2.0, gt=0, le=20)
    min_stop_atr: Number = Field(default=1.0, ge=0, le=10)
    max_stop_atr: Number = Field(default=3.0, gt=0, le=20)
    max_adv_pct: Number = Field(default=1.0, gt=0, le=100,
                                description="Position cap, % of 20-session dollar volume.")
    # Screen (the screen language; README "Screen language")
    where: str | None = Field(default=None, description="Keep rows where this condition holds, "
                              'e.g. "close > sma(close, 50) and RSI14 < 30".')
    columns: dict[str, str] | None = Field(
        default=None, description="Extra output columns: name -> expression, appended in "
        "this order after the built-in columns.")
    sort_by: str | None = Field(default=None, description="Sort by this expression or user "
                                "column instead of TechRating (descending; ties by Symbol).")
    preset: str | None = Field(default=None, description="A preset screen's id (technic "
                               "screens list); combined with where by and.")
    near_miss: pydantic.StrictInt = Field(
        default=0, ge=0, description="Also keep rows failing at most this many top-level "
        "where clauses (the Failed column names them).")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as e:
            err = e.errors(include_url=False)[0]
            inner = (err.get("ctx") or {}).get("error")
            if isinstance(inner, ConfigError):  # raised by a model validator: it names its field
                raise inner from None
            field = ".".join(str(p) for p in err["loc"]) or "ScanConfig"
            if err["type"] == "extra_forbidden":
                valid = ", ".join(type(self).model_fields)
                raise ConfigError(field, f"unknown ScanConfig field; valid fields: {valid}") from None
            raise ConfigError(field, f"{err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})") from None

    @model_validator(mode="before")
    @classmethod
    def _named_symbols_any_type(cls, data: Any) -> Any:
        """Tickers named in ``symbols`` are scanned whatever their type (SPY is an ETF), unless
        ``types`` is given too. Resolved here, not in the pipeline, so the config says what it
        scans: it survives ``model_dump`` round trips and keys caches correctly."""
        if isinstance(data, dict) and data.get("symbols") is not None and "types" not in data:
            return {**data, "types": gics.TYPES}
        return data

    @field_validator("sectors", "industries", "types", "symbols", mode="before")
    @classmethod
    def _tuple(cls, v: Any) -> Any:
        if isinstance(v, str):
            return (v,)
        return tuple(v) if isinstance(v, list | set | frozenset) else v

    @field_validator("sectors")
    @classmethod
    def _sectors(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _check_names(v, gics.SECTORS, "GICS sector")

    @field_validator("industries")
    @classmethod
    def _industries(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _check_names(v, gics.INDUSTRIES, "GICS industry")

    @field_validator("types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        checked = _check_names(v, gics.TYPES, "listing type")
        assert checked is not None
        return checked

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if v is None else tuple(s.strip().upper() for s in v)

    @field_validator("where", "sort_by", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        # Canonical: surrounding blanks dropped, an empty expression means none.
        return (v.strip() or None) if isinstance(v, str) else v

    @field_validator("preset", mode="before")
    @classmethod
    def _preset(cls, v: Any) -> Any:
        if not isinstance(v, str) or not v.strip():
            return None if isinstance(v, str) else v
        from technic_v4.terms.presets import preset

        return preset(v).id  # unknown: ConfigError with the closest ids

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):  # [[name, expr], ...] as the canonical dump lists them
            bad = [p for p in v if not (isinstance(p, list | tuple) and len(p) == 2)]
            if bad:
                raise ConfigError("columns", "give a mapping {name: expression} or a list of "
                                  f"[name, expression] pairs; got {str(bad[0])[:60]!r}")
            v = {p[0]: p[1] for p in v}
        if not isinstance(v, dict):
            return v
        from technic_v4.config.screen import MAX_COLUMNS, check_column_name
        from technic_v4.pipeline import COLUMNS

        if len(v) > MAX_COLUMNS:
            raise ConfigError("columns", f"at most {MAX_COLUMNS} columns, got {len(v)}")
        seen: dict[str, str] = {}
        out: dict[str, str] = {}
        for name, expr in v.items():
            check_column_name(name, COLUMNS)
            if name.casefold() in seen:
                raise ConfigError(f"columns.{name}", f"the same name as column "
                                  f"{seen[name.casefold()]!r} (names are case-insensitive)")
            seen[name.casefold()] = name
            if not isinstance(expr, str) or not expr.strip():
                raise ConfigError(f"columns.{name}", "needs an expression (a non-empty string)")
            out[name] = expr.strip()
        return out or None

    @model_validator(mode="after")
    def _screen(self) -> ScanConfig:
        """Compile the screen now, so a bad expression fails where the request enters."""
        if self.near_miss and self.where is None and self.preset is None:
            raise ConfigError("near_miss", "needs a where or a preset (it counts their clauses)")
        self.screen()
        return self

    def screen(self) -> ScreenSpec:
        """The compiled screen (cached by its text)."""
        from technic_v4.config.screen import spec

        return spec(self.where, self.preset, tuple((self.columns or {}).items()), self.sort_by)

    @property
    def bars_needed(self) -> int:
        """Sessions the scan loads per symbol: lookback_days or what the screen needs
        (:data:`ALL_BARS` for ``lookback_days=None``: loads are capped at the stored sessions)."""
        return max(self.lookback, self.screen().bars)

    @property
    def lookback(self) -> int:
        """``lookback_days`` as a number of bars (:data:`ALL_BARS` for None)."""
        return ALL_BARS if self.lookback_days is None else self.lookback_days

    @model_validator(mode="after")
    def _consistent(self) -> ScanConfig:
        if self.lookback_days is not None and self.min_history > self.lookback_days:
            raise ConfigError("min_history", f"{self.min_history} must be <= lookback_days "
                              f"({self.lookback_days})")
        if self.min_stop_atr > self.max_stop_atr:
            raise ConfigError("min_stop_atr", f"{self.min_stop_atr} must be <= max_stop_atr "
                              f"({self.max_stop_atr})")
        return self


def _check_names(v: tuple[str, ...] | None, valid: tuple[str, ...], what: str
                 ) -> tuple[str, ...] | None:
    """Case-insensitive match to the canonical names; unknown names list every valid one."""
    if v is None:
        return None
    canon = {x.casefold(): x for x in valid}
    bad = [x for x in v if x.casefold() not in canon]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(map(repr, bad))}; valid: "
                         f"{', '.join(valid)}")
    return tuple(dict.fromkeys(canon[x.casefold()] for x in v))
