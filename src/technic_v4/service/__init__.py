"""technic's HTTP service (FastAPI + uvicorn): scans as jobs, results, charts, metrics.

``create_app(market, settings, options)`` builds an app; ``run(host, port)`` is ``technic
serve``. Needs the ``service`` extra (fastapi, uvicorn, prometheus-client).
"""

from __future__ import annotations

__all__ = ["ServiceOptions", "create_app", "run"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from technic_v4.service import app

        return getattr(app, name)
    raise AttributeError(name)
