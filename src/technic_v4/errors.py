"""The error tree. Each branch tells the caller what to do.

    TechnicError
    ├── ConfigError (also ValueError)      stop and fix the configuration / request
    │   └── SettingError                   a TECHNIC_* environment variable holds a bad value
    ├── DataError                          skip this symbol or session; the scan goes on
    │   └── ValidationError                a vendor/file row or frame failed validation
    ├── ProviderError                      the data vendor failed
    │   └── RetryableProviderError         transient (429, 5xx, timeout): retry with backoff
    ├── StoreError                         the local database is unusable: stop, fix the path
    │   └── StoreBusy                      another process is updating it: read what is stored
    └── ScanCancelled                      the caller cancelled the scan
"""

from __future__ import annotations


class TechnicError(Exception):
    """Base of every error technic raises on purpose."""


class ConfigError(TechnicError, ValueError):
    """Invalid configuration or request. The message names the field and the valid values."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SettingError(ConfigError):
    """A ``TECHNIC_*`` environment variable holds an invalid value; ``field`` is the variable's
    name (what the user must fix), not the settings attribute."""

    def __init__(self, variable: str, value: str | None, message: str) -> None:
        super().__init__(variable, message)
        self.value = value
        if value is not None:
            self.args = (f"{variable}={value}: {message}",)


class DataError(TechnicError):
    """Data for a symbol or session is missing or unusable; skip it and report it."""


class ValidationError(DataError):
    """Rows or frames that failed validation."""


class ProviderError(TechnicError):
    """The data provider failed."""


class RetryableProviderError(ProviderError):
    """A transient provider failure worth retrying."""


class StoreError(TechnicError):
    """The local store cannot be opened or written."""


class StoreBusy(StoreError):
    """Another process (or thread) is updating the store and the caller chose not to wait."""


class ScanCancelled(TechnicError):
    """The caller asked the scan to stop."""
