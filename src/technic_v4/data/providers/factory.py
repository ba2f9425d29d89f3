"""``make_provider``: the provider named by the settings (imported lazily: only one is used)."""

from __future__ import annotations

from technic_v4.config.settings import Settings
from technic_v4.data.providers.base import Provider
from technic_v4.errors import ConfigError


def make_provider(settings: Settings) -> Provider:
    """The provider named by ``settings.data_provider``."""
    if settings.data_provider == "synthetic":
        from technic_v4.data.providers.synthetic import SyntheticProvider

        return SyntheticProvider(n_listings=settings.synthetic_listings,
                                 seed=settings.synthetic_seed, epoch=settings.synthetic_epoch,
                                 end=settings.synthetic_end)
    if settings.data_provider == "polygon":
        from technic_v4.data.providers.polygon import PolygonProvider

        return PolygonProvider.from_settings(settings)
    if settings.data_provider == "files":
        from technic_v4.data.providers.files import FilesProvider

        return FilesProvider.from_settings(settings)
    raise ConfigError("data_provider", f"unknown provider {settings.data_provider!r}; valid: "
                      "'synthetic', 'polygon', 'files'")
