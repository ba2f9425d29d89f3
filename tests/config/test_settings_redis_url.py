"""TECHNIC_REDIS_URL may hold a password: a bad URL is refused where settings are read, naming
the variable and never echoing any part of the value (redis-py's own message quotes it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from technic_v4.config.settings import Settings, get_settings, reset_settings
from technic_v4.errors import SettingError

SECRET = "s3cr"
BAD = ["redis://user:s3cr?et@h:6379/0", "redis://:s3cr/et@h/0", "redis://h:s3cr/0",
       "http://user:s3cret@h/0", "redis://h:6379/0?db=s3cr"]
GOOD = ["redis://127.0.0.1:6379/0", "redis://u:s3cr%3Fet@h:6380/2", "rediss://h/1",
        "unix:///tmp/redis.sock?db=0"]


@pytest.mark.parametrize("url", BAD)
def test_bad_redis_url_names_the_variable_not_the_value(url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_REDIS_URL", url)
    reset_settings()
    with pytest.raises(SettingError) as e:
        get_settings()
    assert e.value.field == "TECHNIC_REDIS_URL" and e.value.value is None
    assert str(e.value).startswith("TECHNIC_REDIS_URL: not a Redis URL")
    shown = [str(e.value), repr(e.value), str(e.value.__cause__)]  # the chained pydantic error
    assert not any(SECRET in s for s in shown), shown


@pytest.mark.parametrize("url", GOOD)
def test_good_redis_urls_are_kept_and_never_in_repr(url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_REDIS_URL", url)
    s = Settings()
    assert s.redis_url == url and "redis_url" not in repr(s)


def test_without_redis_py_a_light_check_still_refuses(tmp_path: Path) -> None:
    """redis is an optional extra: with it absent the scheme and port are still checked."""
    code = textwrap.dedent("""
        import sys
        sys.modules["redis"] = None  # import redis -> ImportError, as when the extra is absent
        from technic_v4.config.settings import Settings
        from pydantic import ValidationError
        for url in sys.argv[1:]:
            try:
                Settings(redis_url=url)
                print("ok")
            except ValidationError:
                print("bad")
    """)
    r = subprocess.run([sys.executable, "-c", code, *BAD[:4], *GOOD], capture_output=True,
                       text=True, check=True, env={**os.environ, "TECHNIC_DATA_DIR": str(tmp_path)})
    assert r.stdout.split() == ["bad"] * 4 + ["ok"] * len(GOOD)


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_cli_never_prints_the_password(debug: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "TECHNIC_DATA_DIR": str(tmp_path),
           "TECHNIC_REDIS_URL": "redis://user:s3cr?et@h:6379/0"}
    r = subprocess.run([sys.executable, "-m", "technic_v4.cli", *debug, "scan", "-n", "3"],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1 and "TECHNIC_REDIS_URL" in r.stderr, r.stderr
    assert SECRET not in r.stderr + r.stdout, r.stderr
