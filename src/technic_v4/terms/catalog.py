"""The function catalogue of the screen language: names, parameters, result types, history needs.

Every function is data: its parameters (kind, default), what it returns (a number or a condition)
and its *lookback* — how many sessions before the latest one it reads, on top of what its series
arguments need (TA-Lib's lookback semantics; the bars a term needs are ``lookback + 1``).

History choice for the recursive averages (EMA, MACD, RSI, ATR, ADX, DI, MFI, NATR): the lookback
is TA-Lib's (``ema(x,n)`` needs ``n`` bars), not a longer "convergence" window. A scan is
TA-Lib-exact *on the bars the store returns*, and the loader always loads one fixed window for a
scan (at least the longest need), so a value is reproducible; how close it is to an infinitely
seeded EMA is a property of that window, which the engine documents, not of the term.

TA-Lib's default periods are the defaults here (``sma()`` is ``sma(close,30)``, ``bb_upper()`` is
``bb_upper(close,20,2)``); ``x`` defaults to ``close`` where TA-Lib takes one series.

``ta.<name>(…)`` reaches every other TA-Lib function through TA-Lib's abstract API, resolved on
use; that needs the optional ``ta-lib`` package (:func:`ta_function`). The 61 candlestick patterns
are written here as data (so the language does not need TA-Lib to check a screen); a test compares
them with TA-Lib's own list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from technic_v4.errors import ConfigError

Kind = Literal["number", "bool", "string"]
Value = float | str | bool | None
# Parameter kinds: a number series, a condition (boolean series), a window (positive whole
# number literal), a whole number literal >= 0, a number literal, or one of ``choices``.
ParamKind = Literal["series", "condition", "window", "int", "number", "choice"]
REQUIRED = "<required>"


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    default: Value = REQUIRED  # a series' default is a field name ("close")
    minimum: float = 1  # for windows and whole numbers: the smallest TA-Lib accepts
    choices: tuple[str, ...] = ()
    keyword_only: bool = False

    @property
    def required(self) -> bool:
        return self.default == REQUIRED


@dataclass(frozen=True)
class Function:
    """One function of the language.

    ``lookback(p)`` gets the literal parameters by name and returns the sessions read before the
    latest one, added to the longest lookback of the series arguments. ``windowed`` says the
    function reads its series arguments' history (so they cannot be latest-only scan columns).
    ``talib``/``output`` name the TA-Lib function (and output) it equals, for the tests.
    """

    name: str
    params: tuple[Param, ...]
    returns: Kind
    lookback: Callable[[Mapping[str, Any]], int]
    group: str
    doc: str
    windowed: bool = True
    talib: str | None = None
    output: str | None = None
    implicit: tuple[str, ...] = ()  # fields read without being arguments (atr reads high low close)


def _x(default: str = "close") -> Param:
    return Param("x", "series", default)


def _n(default: Value = REQUIRED, minimum: float = 2, name: str = "n") -> Param:
    return Param(name, "window", default, minimum)


def _lb(f: Callable[[Mapping[str, Any]], float]) -> Callable[[Mapping[str, Any]], int]:
    return lambda p: int(f(p))


def _const(n: int) -> Callable[[Mapping[str, Any]], int]:
    return lambda p: n


_HLC = ("high", "low", "close")
_FUNCTIONS: list[Function] = []


def _add(*fs: Function) -> None:
    _FUNCTIONS.extend(fs)


# --- TA-Lib-exact indicators -------------------------------------------------------------------
_MA = "moving averages"
_add(
    Function("sma", (_x(), _n(30, 1)), "number", _lb(lambda p: p["n"] - 1), _MA,
             "simple moving average", talib="SMA"),
    Function("ema", (_x(), _n(30, 1)), "number", _lb(lambda p: p["n"] - 1), _MA,
             "exponential moving average, seeded with the SMA of the first n bars", talib="EMA"),
    Function("wma", (_x(), _n(30, 1)), "number", _lb(lambda p: p["n"] - 1), _MA,
             "linearly weighted moving average", talib="WMA"),
)
_MOM = "momentum"
_add(
    Function("rsi", (_x(), _n(14)), "number", _lb(lambda p: p["n"]), _MOM,
             "Wilder's relative strength index", talib="RSI"),
    Function("roc", (_x(), _n(10, 1)), "number", _lb(lambda p: p["n"]), _MOM,
             "rate of change in percent", talib="ROC"),
    Function("mom", (_x(), _n(10, 1)), "number", _lb(lambda p: p["n"]), _MOM,
             "momentum: x minus x n sessions ago", talib="MOM"),
    Function("atr", (_n(14, 1),), "number", _lb(lambda p: p["n"]), "volatility",
             "Wilder's average true range", talib="ATR", implicit=_HLC),
    Function("natr", (_n(14, 1),), "number", _lb(lambda p: p["n"]), "volatility",
             "ATR as a percent of close", talib="NATR", implicit=_HLC),
    Function("adx", (_n(14),), "number", _lb(lambda p: 2 * p["n"] - 1), _MOM,
             "average directional index", talib="ADX", implicit=_HLC),
    Function("plus_di", (_n(14, 1),), "number", _lb(lambda p: p["n"]), _MOM,
             "plus directional indicator", talib="PLUS_DI", implicit=_HLC),
    Function("minus_di", (_n(14, 1),), "number", _lb(lambda p: p["n"]), _MOM,
             "minus directional indicator", talib="MINUS_DI", implicit=_HLC),
    Function("cci", (_n(14),), "number", _lb(lambda p: p["n"] - 1), _MOM,
             "commodity channel index", talib="CCI", implicit=_HLC),
    Function("mfi", (_n(14),), "number", _lb(lambda p: p["n"]), _MOM,
             "money flow index", talib="MFI", implicit=(*_HLC, "volume")),
    Function("willr", (_n(14),), "number", _lb(lambda p: p["n"] - 1), _MOM,
             "Williams' %R", talib="WILLR", implicit=_HLC),
    Function("obv", (_x(),), "number", lambda p: 0, "volume", "on-balance volume of x",
             talib="OBV", implicit=("volume",)),
)
_MACD = (_x(), _n(12, name="fast"), _n(26, name="slow"), _n(9, 1, name="signal"))


def _macd_lookback(p: Mapping[str, Any]) -> int:
    return int(max(p["fast"], p["slow"]) - 1 + p["signal"] - 1)


for _name, _out in (("macd", "macd"), ("macd_signal", "macdsignal"), ("macd_hist", "macdhist")):
    _add(Function(_name, _MACD, "number", _macd_lookback, _MOM,
                  f"MACD ({_out}): EMA(fast) - EMA(slow), signal EMA of it, histogram",
                  talib="MACD", output=_out))
_BB = (_x(), _n(20), Param("k", "number", 2.0))
for _name, _out in (("bb_upper", "upperband"), ("bb_middle", "middleband"),
                    ("bb_lower", "lowerband")):
    _add(Function(_name, _BB, "number", _lb(lambda p: p["n"] - 1), "volatility",
                  f"Bollinger band ({_out}): SMA(n) ± k population standard deviations",
                  talib="BBANDS", output=_out))
_STOCH = (_n(5, 1, "fastk"), _n(3, 1, "slowk"), _n(3, 1, "slowd"))
for _name, _out in (("stoch_k", "slowk"), ("stoch_d", "slowd")):
    _add(Function(_name, _STOCH, "number",
                  _lb(lambda p: p["fastk"] - 1 + p["slowk"] - 1 + p["slowd"] - 1), _MOM,
                  f"slow stochastic ({_out}, SMA smoothing)", talib="STOCH", output=_out,
                  implicit=_HLC))

# --- windows -------------------------------------------------------------------------------------
_W = "windows"
_add(
    Function("highest", (_x(), _n(30)), "number", _lb(lambda p: p["n"] - 1), _W,
             "highest x over the last n sessions (today included)", talib="MAX"),
    Function("lowest", (_x(), _n(30)), "number", _lb(lambda p: p["n"] - 1), _W,
             "lowest x over the last n sessions (today included)", talib="MIN"),
    Function("sum", (_x(), _n(30)), "number", _lb(lambda p: p["n"] - 1), _W,
             "sum of x over the last n sessions", talib="SUM"),
    Function("stddev", (_x(), _n(5)), "number", _lb(lambda p: p["n"] - 1), _W,
             "population standard deviation over n sessions", talib="STDDEV"),
    Function("change", (_x(), _n(minimum=1)), "number", _lb(lambda p: p["n"]), _W,
             "percent change of x over n sessions: 100 × (x / x[n] − 1)"),
    Function("crossed_above", (Param("a", "series"), Param("b", "series")), "bool",
             lambda p: 1, _W, "a > b today and a <= b the session before"),
    Function("crossed_below", (Param("a", "series"), Param("b", "series")), "bool",
             lambda p: 1, _W, "a < b today and a >= b the session before"),
    Function("bars_since", (Param("cond", "condition"),), "number", lambda p: 0, _W,
             "sessions since cond last held (0 when it holds today; NaN if never in the bars)"),
    Function("count", (Param("cond", "condition"), _n(minimum=1)), "number",
             _lb(lambda p: p["n"] - 1), _W, "sessions among the last n where cond held"),
    Function("between", (Param("x", "series"), Param("lo", "series"), Param("hi", "series")),
             "bool", lambda p: 0, "comparison", "lo <= x <= hi", windowed=False),
)

# --- across the market ---------------------------------------------------------------------------
_BY = Param("by", "choice", None, choices=("sector", "industry"), keyword_only=True)
_add(
    Function("rank", (Param("x", "series"), _BY), "number", lambda p: 0, "cross-section",
             "percentile rank 1-99 among the listings at this stage (like RSRating), "
             "optionally within each sector or industry", windowed=False),
    Function("zscore", (Param("x", "series"), _BY), "number", lambda p: 0, "cross-section",
             "(x - mean) / standard deviation among the listings at this stage", windowed=False),
)

# --- timeframes (checked specially: the argument is evaluated on weekly / monthly bars) ----------
TIMEFRAME_SESSIONS = {"weekly": 5, "monthly": 22}
_add(
    Function("weekly", (Param("expr", "series"),), "number", lambda p: 0, "timeframes",
             "expr on weekly bars (Monday-Friday; the unfinished week is the latest bar)",
             windowed=False),
    Function("monthly", (Param("expr", "series"),), "number", lambda p: 0, "timeframes",
             "expr on monthly bars (the unfinished month is the latest bar)", windowed=False),
)

# --- candlesticks: TA-Lib's 61 patterns, name -> (lookback at TA-Lib's default candle settings,
# default penetration or None). test_catalog compares this table with TA-Lib. ---------------------
CANDLESTICKS: dict[str, tuple[int, float | None]] = {
    "2crows": (12, None), "3blackcrows": (13, None), "3inside": (12, None),
    "3linestrike": (8, None), "3outside": (3, None), "3starsinsouth": (12, None),
    "3whitesoldiers": (12, None), "abandonedbaby": (12, 0.3), "advanceblock": (12, None),
    "belthold": (10, None), "breakaway": (14, None), "closingmarubozu": (10, None),
    "concealbabyswall": (13, None), "counterattack": (11, None), "darkcloudcover": (11, 0.5),
    "doji": (10, None), "dojistar": (11, None), "dragonflydoji": (10, None),
    "engulfing": (2, None), "eveningdojistar": (12, 0.3), "eveningstar": (12, 0.3),
    "gapsidesidewhite": (7, None), "gravestonedoji": (10, None), "hammer": (11, None),
    "hangingman": (11, None), "harami": (11, None), "haramicross": (11, None),
    "highwave": (10, None), "hikkake": (5, None), "hikkakemod": (10, None),
    "homingpigeon": (11, None), "identical3crows": (12, None), "inneck": (11, None),
    "invertedhammer": (11, None), "kicking": (11, None), "kickingbylength": (11, None),
    "ladderbottom": (14, None), "longleggeddoji": (10, None), "longline": (10, None),
    "marubozu": (10, None), "matchinglow": (6, None), "mathold": (14, 0.5),
    "morningdojistar": (12, 0.3), "morningstar": (12, 0.3), "onneck": (11, None),
    "piercing": (11, None), "rickshawman": (10, None), "risefall3methods": (14, None),
    "separatinglines": (11, None), "shootingstar": (11, None), "shortline": (10, None),
    "spinningtop": (10, None), "stalledpattern": (12, None), "sticksandwich": (7, None),
    "takuri": (10, None), "tasukigap": (7, None), "thrusting": (11, None),
    "tristar": (12, None), "unique3river": (12, None), "upsidegap2crows": (12, None),
    "xsidegap3methods": (2, None),
}
for _pat, (_look, _pen) in CANDLESTICKS.items():
    _params = () if _pen is None else (Param("penetration", "number", _pen),)
    _add(Function(f"cdl_{_pat}", _params, "number", _const(_look), "candlesticks",
                  f"TA-Lib CDL{_pat.upper()}: +100 bullish, -100 bearish, 0 none",
                  talib=f"CDL{_pat.upper()}", implicit=("open", "high", "low", "close")))

# --- chart patterns: definitions in terms/kernels/patterns.py and README "Chart patterns"; each
# lookback is the bars before the latest one its definition reads. -----------------------------
_CP = "chart patterns"
_OHLCV = ("open", "high", "low", "close", "volume")
_add(
    Function("nr7", (), "bool", lambda p: 6, _CP,
             "today's high-low range is strictly the narrowest of the last 7 sessions",
             implicit=_OHLCV),
    Function("inside_bar", (), "bool", lambda p: 1, _CP,
             "today's high and low lie inside yesterday's, with a smaller range",
             implicit=_OHLCV),
    Function("gap_up", (Param("pct", "number", 0.0),), "bool", lambda p: 1, _CP,
             "today's low is more than pct percent above yesterday's high", implicit=_OHLCV),
    Function("pocket_pivot", (_n(10, 1),), "bool", _lb(lambda p: p["n"] + 1), _CP,
             "an up close on volume above every down close's volume of the prior n sessions",
             implicit=_OHLCV),
    Function("new_high", (_n(252, 1),), "bool", _lb(lambda p: p["n"] - 1), _CP,
             "today's high is the highest of the last n sessions", implicit=_OHLCV),
    Function("consolidation", (_n(20), Param("max_range_pct", "number", 10.0)), "bool",
             _lb(lambda p: p["n"] - 1), _CP,
             "the last n sessions trade within max_range_pct percent (highest high to lowest "
             "low, of the highest high)", implicit=_OHLCV),
    Function("breakout", (_n(20), Param("volume_mult", "number", 1.5)), "bool",
             _lb(lambda p: max(p["n"], 50)), _CP,
             "close above the prior n sessions' highest high on volume >= volume_mult × the "
             "prior 50 sessions' average", implicit=_OHLCV),
    Function("darvas_breakout", (), "bool", lambda p: 252, _CP,
             "close above a Darvas box: top at the prior 52-week high (unbroken for 4+ "
             "sessions), bottom held for 3+ sessions", implicit=_OHLCV),
    Function("flat_base", (_n(5, 1, "weeks"), Param("max_depth_pct", "number", 15.0)), "bool",
             _lb(lambda p: 10 * p["weeks"] - 1), _CP,
             "the last `weeks` weeks no deeper than max_depth_pct percent, after a 20 % advance",
             implicit=_OHLCV),
    Function("vcp", (_n(3, 2, "contractions"), Param("max_depth_pct", "number", 35.0),
                     _n(10, 2)), "bool",
             _lb(lambda p: max(199, p["contractions"] * p["n"] - 1)), _CP,
             "volatility contraction pattern: `contractions` stretches of n sessions, each "
             "shallower than the one before, volume drying up, close above SMA200",
             implicit=_OHLCV),
    Function("cup_with_handle", (_n(65, 7, "max_weeks"), Param("max_depth_pct", "number", 33.0),
                                 Param("handle_depth_pct", "number", 12.0)), "bool",
             _lb(lambda p: 5 * p["max_weeks"] + 25), _CP,
             "O'Neil's cup (7 to max_weeks weeks, at most max_depth_pct deep) and a handle of "
             "1 to 5 weeks in its upper half, at most handle_depth_pct deep", implicit=_OHLCV),
    Function("high_tight_flag", (Param("gain_pct", "number", 100.0),
                                 Param("flag_depth_pct", "number", 25.0)), "bool",
             lambda p: 65, _CP,
             "a gain of gain_pct percent in at most 8 weeks, then a flag of 3-5 weeks no deeper "
             "than flag_depth_pct", implicit=_OHLCV),
)

FUNCTIONS: dict[str, Function] = {f.name: f for f in _FUNCTIONS}
CHART_PATTERNS = tuple(f.name for f in _FUNCTIONS if f.group == _CP)

TALIB_HINT = ("TA-Lib functions and candlesticks need the ta-lib package (a dependency of "
              "technic): reinstall technic, e.g. pip install -e .")


def _talib_abstract() -> Any:
    try:
        from talib import abstract
    except ImportError as e:
        raise ConfigError("where", TALIB_HINT) from e
    return abstract


@cache
def ta_names() -> tuple[str, ...]:
    """Every TA-Lib function name, lower-case (for ``ta.<name>`` and did-you-mean)."""
    import talib  # the caller checked availability through _talib_abstract

    return tuple(sorted(n.lower() for n in talib.get_functions()))


@dataclass(frozen=True)
class TaFunction:
    """A TA-Lib function reached as ``ta.<name>``: its series inputs (with their default fields),
    the fields it reads implicitly, its parameters and outputs."""

    name: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    implicit: tuple[str, ...]

    def lookback(self, params: Mapping[str, Any]) -> int:
        f = _talib_abstract().Function(self.name.upper())
        kinds = {p.name: p.kind for p in self.params}
        f.set_parameters({k: int(v) if kinds[k] in ("window", "int") else v
                          for k, v in params.items()})
        return int(f.lookback)


@cache
def ta_function(name: str) -> TaFunction | None:
    """``ta.<name>`` resolved against TA-Lib's abstract API; None if TA-Lib has no such function;
    a ConfigError with the install hint if TA-Lib is not installed."""
    abstract = _talib_abstract()
    if name.lower() not in ta_names():
        return None
    info = abstract.Function(name.upper()).info
    params: list[Param] = []
    implicit: list[str] = []
    for inp, fields in info["input_names"].items():
        if isinstance(fields, str):  # one series, e.g. price -> close: an argument
            params.append(Param(inp.lower(), "series", fields))
        else:  # several fixed fields, e.g. prices -> high, low, close: read implicitly
            implicit.extend(fields)
    for pname, default in info["parameters"].items():
        if isinstance(default, int):
            kind: ParamKind = "window" if "period" in pname else "int"
            params.append(Param(pname.lower(), kind, default, 0 if kind == "int" else 1))
        else:
            params.append(Param(pname.lower(), "number", float(default)))
    return TaFunction(name.lower(), tuple(params), tuple(info["output_names"]), tuple(implicit))
