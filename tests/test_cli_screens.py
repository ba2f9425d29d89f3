"""The screen language on the command line, in real processes: scan --where/--column/--sort/
--preset/--near-miss, screens list/show, and expression errors with their caret block."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from technic_v4.pipeline import COLUMNS
from technic_v4.terms.presets import presets

EXE = [sys.executable, "-m", "technic_v4.cli"]


def _technic(args: list[str], env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_bad_expression_is_one_line_and_its_caret_block(tmp_path: Path) -> None:
    r = _technic(["scan", "--where", "close > smaa(50)"], {"TECHNIC_DATA_DIR": str(tmp_path)})
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "Error: where: unknown function `smaa` at line 1, column 9; did you mean `sma`?",
        "  close > smaa(50)",
        "          ^^^^",
    ]
    assert not list(tmp_path.glob("*.duckdb"))  # refused before the store was opened


def test_other_screen_errors_name_their_field(tmp_path: Path) -> None:
    env = {"TECHNIC_DATA_DIR": str(tmp_path)}
    r = _technic(["scan", "--column", "RSI14=close"], env)
    assert r.returncode == 1
    assert r.stderr.strip() == ("Error: columns.RSI14: clashes with the built-in column "
                                "'RSI14'; choose another name")
    r = _technic(["scan", "--column", "nothing"], env)
    assert r.returncode == 1 and "--column 'nothing': expected NAME=EXPR" in r.stderr
    r = _technic(["scan", "--sort", "sector"], env)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == ("Error: sort_by: the expression must be a number; this "
                                        "one is a string at line 1, column 1")
    r = _technic(["scan", "--preset", "minervini"], env)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "did you mean minervini_trend_template?" in r.stderr
    r = _technic(["scan", "--near-miss", "1"], env)
    assert r.stderr.strip() == ("Error: near_miss: needs a where or a preset (it counts "
                                "their clauses)")


def test_screens_list_and_show() -> None:
    r = _technic(["screens", "list"])
    assert r.returncode == 0, r.stderr
    for p in presets().values():
        assert f"{p.id}  ({p.name})" in r.stdout
        assert p.description in r.stdout
        assert p.expression.splitlines()[0] in r.stdout
    r = _technic(["screens", "show", "golden_cross_today"])
    assert r.returncode == 0, r.stderr
    assert "# name: Golden cross today" in r.stdout
    assert presets()["golden_cross_today"].expression in r.stdout
    assert "# sessions needed: 2" in r.stdout
    r = _technic(["screens", "show", "golden"])
    assert r.returncode == 1
    assert "unknown preset 'golden'; did you mean" in r.stderr


def test_real_process_scan_with_a_screen(tmp_path: Path) -> None:
    env = {"TECHNIC_DATA_DIR": str(tmp_path), "TECHNIC_SYNTHETIC_LISTINGS": "150",
           "TECHNIC_SYNTHETIC_EPOCH": "2025-06-02", "TECHNIC_SYNTHETIC_END": "2026-11-20"}
    r = _technic(["scan", "--where", "close > SMA50 and RSI14 < 70", "--near-miss", "1",
                  "--column", "Hi20=highest(high, 20)", "--column", "Up=close > open",
                  "--sort", "Hi20", "--format", "csv"], env)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(io.StringIO(r.stdout), keep_default_na=False, na_values=[""])
    assert list(df.columns) == [*COLUMNS, "Failed", "Hi20", "Up"]
    assert len(df) > 0
    assert (df["Hi20"].diff().dropna() <= 0).all()
    fails = (~(df["Close"] > df["SMA50"])).astype(int) + (~(df["RSI14"] < 70)).astype(int)
    assert (fails <= 1).all() and (fails == 1).any()
    assert ((df["Failed"].fillna("") != "") == (fails == 1)).all()
    assert "screen kept" in r.stderr
    # The table shows the user's columns and Matched / Failed.
    r = _technic(["scan", "--where", "close > SMA50", "--column", "Hi20=highest(high, 20)",
                  "--top", "3"], env)
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "Symbol" in line)
    assert "Hi20" in header and "Matched" in header and "Failed" not in header
