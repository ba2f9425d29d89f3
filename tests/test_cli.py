from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from technic_v4 import formats
from technic_v4.cli import main
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import COLUMNS
from technic_v4.scanner_core import run_scan


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
    assert st["actions"]["checked_through"] == "2026-11-20"  # the corporate-actions check
    assert st["actions"]["splits"] >= 0 and st["delisted_listings"] >= 0


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


def test_a_damaged_store_is_deleted_by_cache_clear_store(tmp_path: Path) -> None:
    """The error names the fix, and the fix works without opening the damaged file."""
    env, fragment = _fault_env("broken store", tmp_path)
    _assert_one_line(_technic(["data", "status"], env), fragment)
    r = _technic(["cache", "clear", "--store"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["store_deleted"].endswith(STORE)
    r = _technic(["data", "status"], env)
    assert r.returncode == 0 and json.loads(r.stdout)["bars"] == 0, r.stderr


# -- one clear line for every mistake, in a real process ----------------------------------------

EXE = [sys.executable, "-m", "technic_v4.cli"]
COMMANDS = {"scan": ["scan"], "data status": ["data", "status"], "data update": ["data", "update"],
            "cache stats": ["cache", "stats"], "cache clear": ["cache", "clear"],
            "serve": ["serve", "--port", "0"], "bench": ["bench", "--quick"]}
STORE = "synthetic-n6000-s20251214-e20230103.duckdb"  # the default market's store file name


def _technic(args: list[str], env: dict[str, str], timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _fault_env(fault: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    """Environment with one mistake in it, and a fragment the error line must contain."""
    data = tmp_path / "data"
    data.mkdir()
    if fault == "bad setting":
        return {"TECHNIC_DATA_DIR": str(data), "TECHNIC_MAX_WORKERS": "abc"}, \
            "TECHNIC_MAX_WORKERS=abc: Input should be a valid integer"
    if fault == "broken store":
        (data / STORE).write_bytes(b"not a database\n" * 100)
        return {"TECHNIC_DATA_DIR": str(data)}, \
            "is damaged (not a DuckDB database): delete it with `technic cache clear --store`"
    if fault == "files without path":
        return {"TECHNIC_DATA_DIR": str(data), "TECHNIC_DATA_PROVIDER": "files"}, \
            "needs TECHNIC_FILES_PATH"
    assert fault == "polygon without key"
    return {"TECHNIC_DATA_DIR": str(data), "TECHNIC_DATA_PROVIDER": "polygon",
            "POLYGON_API_KEY": "", "MASSIVE_API_KEY": ""}, "POLYGON_API_KEY"


def _assert_one_line(r: subprocess.CompletedProcess[str], fragment: str) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, r.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert fragment in lines[0], r.stderr
    assert "pydantic.dev" not in r.stderr and "--debug" not in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(("command", "fault"), [
    *[(c, "bad setting") for c in COMMANDS],
    *[(c, "broken store") for c in COMMANDS if c != "bench"],  # bench builds its own stores
    *[(c, "files without path") for c in COMMANDS if c != "bench"],
    ("scan", "polygon without key"), ("data update", "polygon without key"),
])
def test_every_command_fails_in_one_line(command: str, fault: str, tmp_path: Path) -> None:
    env, fragment = _fault_env(fault, tmp_path)
    _assert_one_line(_technic(COMMANDS[command], env), fragment)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--type", "Warrant"], "types: unknown listing type 'Warrant'; valid: Common Stock, ADR, ETF"),
    (["--lookback", "5"], "lookback_days: Input should be greater than or equal to 30 (got 5)"),
    (["--lookback", "100"], "min_history: 200 must be <= lookback_days (100)"),
])
def test_bad_scan_request_is_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    _assert_one_line(_technic(["scan", *args], {"TECHNIC_DATA_DIR": str(tmp_path)}), fragment)


def test_serve_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = _technic(["serve", "--port", str(port)], {"TECHNIC_DATA_DIR": str(tmp_path)})
    _assert_one_line(r, f"cannot listen on 127.0.0.1:{port} (Address already in use)")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env, _ = _fault_env("bad setting", tmp_path)
    r = _technic(["--debug", "data", "status"], env)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "SettingError: TECHNIC_MAX_WORKERS=abc" in r.stderr


def test_unexpected_error_is_one_line_pointing_at_debug(tmp_path: Path) -> None:
    # The synthetic market refuses an epoch after its end with a plain ValueError: not an error
    # technic raises on purpose, so the line names the exception type and points at --debug.
    env = {"TECHNIC_DATA_DIR": str(tmp_path), "TECHNIC_SYNTHETIC_EPOCH": "2030-01-02",
           "TECHNIC_SYNTHETIC_END": "2030-01-03"}
    r = _technic(["data", "status"], env)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in r.stderr
    assert lines[0].endswith("(run with --debug for the traceback)")


@pytest.mark.parametrize("command", [["scan", "-o"], ["scan", "--format", "parquet", "-o"],
                                     ["bench", "--quick", "--output"]])
def test_output_folder_must_exist_before_any_work(command: list[str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    target = tmp_path / "missing" / "out.file"
    r = _technic([*command, str(target)], {"TECHNIC_DATA_DIR": str(data)}, timeout=60)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1 and lines == [
        f"Error: {'--output'} {target}: folder {target.parent} does not exist"], r.stderr
    assert not data.exists()  # refused before the store was built or a scan ran


def test_named_symbol_of_any_type_from_the_command_line(seed_api: MarketData) -> None:
    r = CliRunner().invoke(main, ["scan", "--symbols", "spy", "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert list(pd.read_csv(io.StringIO(r.stdout))["Symbol"]) == ["SPY"]
    r = CliRunner().invoke(main, ["scan", "--symbols", "SPY", "--type", "Common Stock",
                                  "--format", "csv"])
    assert r.exit_code == 0 and pd.read_csv(io.StringIO(r.stdout)).empty


# -- float noise ------------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?(?![\w.])")


def _digits(number: str) -> int:
    mantissa = number.lstrip("-").split("e")[0].replace(".", "").strip("0")
    return len(mantissa)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_text_output_has_no_float_noise(seed_api: MarketData, fmt: str) -> None:
    r = CliRunner().invoke(main, ["scan", "--format", fmt])
    assert r.exit_code == 0, r.output
    numbers = NUMBER.findall(r.stdout)
    assert len(numbers) > 1000
    noisy = [n for n in numbers if _digits(n) > formats.DIGITS]
    assert noisy == []
    # the rounding is the only difference from the exact values
    exact, _ = run_scan(ScanConfig())
    shown = (pd.read_csv(io.StringIO(r.stdout)) if fmt == "csv"
             else pd.DataFrame(json.loads(r.stdout)))
    for col in ("Close", "SMA20", "MarketCap", "DollarVolume20", "Entry", "ATRPct"):
        np.testing.assert_allclose(shown[col], exact[col], rtol=1e-9, equal_nan=True)


# -- scripts/scan.sh installs only when the project changed ------------------------------------

FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for .venv/bin/python: records pip runs and installs a `technic` that echoes.
echo "$*" >> "$(dirname "$0")/../pip.log"
printf '#!/usr/bin/env bash\\necho "technic $*"\\n' > "$(dirname "$0")/technic"
chmod +x "$(dirname "$0")/technic"
"""


def test_scan_script_reinstalls_only_when_pyproject_changes(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "scan.sh"
    script.write_text((root / "scripts" / "scan.sh").read_text())
    (tmp_path / "pyproject.toml").write_text((root / "pyproject.toml").read_text())
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(FAKE_PYTHON)
    (venv_bin / "python").chmod(0o755)
    log = tmp_path / ".venv" / "pip.log"

    def run() -> str:
        r = subprocess.run(["bash", str(script), "--top", "3"], capture_output=True, text=True,
                           timeout=60, check=True)
        return r.stdout

    assert run() == "technic scan --top 3\n"
    assert run() == "technic scan --top 3\n"
    assert log.read_text().splitlines() == ["-m pip install --quiet --disable-pip-version-check -e ."]
    with (tmp_path / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency\n")
    run()
    assert len(log.read_text().splitlines()) == 2
