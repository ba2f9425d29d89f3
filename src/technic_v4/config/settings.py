"""Process settings from ``TECHNIC_*`` environment variables (pydantic-settings).

Scan requests are configured per call with :class:`technic_v4.scanner_core.ScanConfig`; this module
holds what belongs to the installation: where the store lives, which provider feeds it, how many
workers compute.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from technic_v4.errors import SettingError


def _default_data_dir() -> Path:
    return Path(user_cache_dir("technic", appauthor=False))


class Settings(BaseSettings):
    """Installation settings; every field is read from ``TECHNIC_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="TECHNIC_", extra="ignore", validate_default=True, validate_assignment=True,
        hide_input_in_errors=True,  # a raw ValidationError must not print a secret either
    )

    data_dir: Path = Field(default_factory=_default_data_dir, description="Local store directory.")
    data_provider: Literal["synthetic", "polygon", "files"] = Field(
        default="synthetic", description="Where bars come from: the embedded synthetic market, "
        "the Polygon/Massive REST API, or the user's own CSV/Parquet files."
    )
    polygon_base_url: str = Field(default="https://api.polygon.io",
                                  description="Polygon/Massive REST base URL.")
    polygon_history_start: dt.date | None = Field(
        default=None, description="First session fetched from Polygon (default: ~2 years "
        "before the latest session).")
    polygon_timeout_s: float = Field(default=30.0, gt=0)
    fetch_concurrency: int = Field(default=8, ge=1, le=64,
                                   description="Vendor requests in flight while filling.")
    polygon_max_retries: int = Field(default=5, ge=0, le=20)
    polygon_rpm: int | None = Field(default=None, ge=1, le=1_000_000,
                                    description="Vendor requests per minute at most (the free "
                                    "tier allows 5); unset = unlimited.")
    files_path: Path | None = Field(default=None, description="CSV/Parquet bars: a file (long "
                                    "table with a symbol column) or a directory (one file per "
                                    "symbol).")
    files_reference: Path | None = Field(default=None, description="Optional reference CSV.")
    files_actions: Path | None = Field(default=None, description="Optional corporate actions "
                                       "(CSV/Parquet: symbol, ex_date, type split|dividend, "
                                       "ratio or amount).")
    files_adjusted: bool = Field(default=True, description="Whether the bar files' prices are "
                                 "split-adjusted (true: technic un-adjusts them with the splits "
                                 "of the actions file) or as traded (false).")
    redis_url: str | None = Field(default=None, description="L3 cache shared by instances, "
                                  "e.g. redis://127.0.0.1:6379/0; unset = no Redis "
                                  "(may hold a password: never shown).", repr=False)
    api_key: str | None = Field(default=None, description="When set, the HTTP API requires "
                                "X-API-Key with this value (never logged).", repr=False)
    max_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=256,
        description="Threads used by the indicator stage.",
    )
    use_ray: bool = Field(default=False, description="Run the indicator stage on Ray.")
    ray_address: str | None = Field(default=None, description="Ray cluster address; unset "
                                    "starts a local Ray.")

    synthetic_listings: int = Field(default=6000, ge=10, le=200_000)
    synthetic_seed: int = Field(default=20251214, ge=0)
    synthetic_epoch: dt.date = Field(
        default=dt.date(2023, 1, 3), description="First session of the synthetic market."
    )
    synthetic_end: dt.date | None = Field(
        default=None, description="Last session of the synthetic market (default: the latest "
        "completed NYSE session). Pin it for reproducible runs.",
    )
    memory_cache_mb: int = Field(default=1024, ge=0, description="L1 memory cache bound (MiB).")
    refresh_interval_s: float = Field(
        default=60.0, gt=0, description="How often `technic serve` checks in the background "
        "whether the provider has a session the store lacks, and fetches it.")
    memory_budget_mb: int = Field(
        default=2048, ge=1, description="Memory the service lets heavy requests (scans, long or "
        "point-in-time symbol histories) take at once, by estimate; beyond it: HTTP 429.")
    progress: bool = Field(default=True, description="Progress bars on stderr for slow steps.")
    alerts_allow_private: bool = Field(
        default=False, description="Let alert targets (webhook, Slack, Discord, Telegram URLs) "
        "reach private, loopback, link-local, multicast or reserved addresses; off, such URLs "
        "are refused (server-side request forgery guard). Tests and a LAN-only relay turn it on.")
    schedule_enabled: bool = Field(
        default=True, description="`technic serve` runs the saved screens after each NYSE "
        "close (the daily run); `technic watch` runs it whatever this says.")
    public_url: str | None = Field(
        default=None, description="The web page's address as alert receivers reach it (e.g. "
        "https://technic.example.com); each daily-run message links to its screen there.")
    schedule_delay_min: float = Field(
        default=30.0, ge=0, le=24 * 60, description="Minutes after each NYSE close (early "
        "closes respected) the daily run fires.")

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, url: str | None) -> str | None:
        """Reject a URL redis-py would refuse later with a message quoting part of it (e.g. a
        password with an unescaped '?' read as the port). Our message never quotes the URL."""
        if url and not _redis_url_ok(url):
            raise ValueError(
                "not a Redis URL: expected redis://[[user]:password@]host[:port][/db], "
                "rediss://... or unix:///path.sock; percent-encode '@', ':', '/', '?' and '#' "
                "in a user name or password")
        return url


def _redis_url_ok(url: str) -> bool:
    """Whether redis-py (an optional extra) accepts ``url``; without it, a scheme and port check."""
    try:
        from redis.connection import parse_url
    except ImportError:
        from urllib.parse import urlsplit
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError when what follows the host's ':' is not a port
        except ValueError:
            return False
        return parts.scheme in ("redis", "rediss", "unix") and not parts.fragment
    try:
        parse_url(url)
    except ValueError:
        return False
    return True


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment once.

    A bad value raises :class:`~technic_v4.errors.SettingError` (a ``ConfigError``) naming the
    environment variable: ``TECHNIC_MAX_WORKERS=abc: Input should be a valid integer, ...``.
    """
    global _settings
    if _settings is None:
        try:
            _settings = Settings()
        except ValidationError as e:
            raise _setting_error(e) from e
    return _settings


def _setting_error(e: ValidationError) -> SettingError:
    """pydantic's multi-line report as one line per variable (all on one line), without its
    documentation URL; secret values (``repr=False`` fields) are never shown."""
    prefix = Settings.model_config.get("env_prefix", "")
    found: list[tuple[str, str | None, str]] = []
    for err in e.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        info = Settings.model_fields.get(field)
        var = f"{prefix}{field}".upper() if field else f"{prefix}* settings"
        value = err.get("input") if info is not None and info.repr else None
        shown = None if value is None else str(value)
        if shown is not None and len(shown) > 60:
            shown = shown[:57] + "..."
        found.append((var, shown, err["msg"].removeprefix("Value error, ")))
    var, value, msg = found[0]
    rest = "".join(f"; {v}{'' if x is None else '=' + x}: {m}" for v, x, m in found[1:])
    return SettingError(var, value, msg + rest)


def reset_settings() -> None:
    """Forget cached settings (tests and long-lived services re-read the environment)."""
    global _settings
    _settings = None


class _SettingsProxy:
    """``settings.use_ray`` etc. as in the seed, always reflecting :func:`get_settings`."""

    def __getattr__(self, name: str) -> object:
        return getattr(get_settings(), name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(get_settings(), name, value)


settings = _SettingsProxy()
