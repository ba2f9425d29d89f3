from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from technic_v4.cli import main
from technic_v4.data.market import MarketData
from technic_v4.pipeline import COLUMNS


def test_help_lists_commands() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("scan", "data", "cache", "bench"):
        assert cmd in r.output


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_scan_formats(seed_api: MarketData, fmt: str) -> None:
    r = CliRunner().invoke(main, ["scan", "-n", "80", "--top", "10", "--format", fmt])
    assert r.exit_code == 0, r.output
    text = r.stdout
    df = pd.read_csv(io.StringIO(text)) if fmt == "csv" else pd.DataFrame(json.loads(text))
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 10
    assert "Scanned" in r.stderr


def test_scan_parquet_needs_output(seed_api: MarketData, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["scan", "--format", "parquet"])
    assert r.exit_code == 2 and "--output" in r.output
    out = tmp_path / "scan.parquet"
    r = CliRunner().invoke(main, ["scan", "--format", "parquet", "-o", str(out), "--top", "5"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(out)) == 5


def test_scan_table_and_filters(seed_api: MarketData) -> None:
    r = CliRunner().invoke(main, ["scan", "--sector", "Health Care", "--min-rating", "50",
                                  "--as-of", "2026-10-01", "--rows", "5"])
    assert r.exit_code == 0, r.output
    assert "Rank" in r.stdout and "Symbol" in r.stdout
    assert "as of 2026-10-01" in r.stderr


def test_bad_input_is_a_clear_error(seed_api: MarketData) -> None:
    r = CliRunner().invoke(main, ["scan", "--sector", "Tech"])
    assert r.exit_code == 1
    assert "unknown GICS sector 'Tech'" in r.output and "Information Technology" in r.output
    r = CliRunner().invoke(main, ["scan", "-n", "-4"])
    assert r.exit_code == 1 and "max_symbols" in r.output


def test_data_status(seed_api: MarketData) -> None:
    r = CliRunner().invoke(main, ["data", "status"])
    assert r.exit_code == 0
    st = json.loads(r.stdout)
    assert st["symbols"] > 0 and st["last_session"] == "2026-11-20"


def test_real_process_first_run_fills_then_scans(tmp_path: Path) -> None:
    env = {**os.environ, "TECHNIC_DATA_DIR": str(tmp_path), "TECHNIC_SYNTHETIC_LISTINGS": "150",
           "TECHNIC_SYNTHETIC_EPOCH": "2025-06-02", "TECHNIC_SYNTHETIC_END": "2026-11-20"}
    exe = [sys.executable, "-m", "technic_v4.cli"]
    r = subprocess.run([*exe, "scan", "--top", "5"], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "Scanned" in r.stderr and "API calls" in r.stderr
    assert r.stdout.count("\n") >= 5
    r2 = subprocess.run([*exe, "scan", "--top", "5", "--format", "csv"], env=env,
                        capture_output=True, text=True, timeout=300, check=False)
    assert r2.returncode == 0, r2.stderr
    assert "hit rate 100.0%, 0 API calls" in r2.stderr
    assert list((tmp_path).glob("*.duckdb"))


def test_cache_stats_and_clear(seed_api: MarketData) -> None:
    r = CliRunner().invoke(main, ["cache", "stats"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert st["hit_rate"] == 100.0 and st["cache_size"] > 0
    assert st["last_request"]["api_calls_total"] == 0
    r = CliRunner().invoke(main, ["cache", "clear"])
    assert r.exit_code == 0
    assert seed_api.stats()["cache_size"] == 0


def test_cache_clear_store_deletes_the_file(tmp_path: Path) -> None:
    from technic_v4 import data_engine
    from technic_v4.testing import make_market

    md = make_market(tmp_path, n=30)
    md.ensure_current()
    data_engine._market = md
    path = md.store.path
    assert path.exists()
    r = CliRunner().invoke(main, ["cache", "clear", "--store"])
    assert r.exit_code == 0, r.output
    assert not path.exists()
    assert data_engine._market is None
