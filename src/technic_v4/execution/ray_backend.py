"""Ray backend: panel arrays go into the object store once; coarse row chunks run as tasks.

Imported only when ``use_ray`` is set (Ray is an optional extra). ``TECHNIC_RAY_ADDRESS`` names a
cluster; unset means a local Ray started with ``max_workers`` CPUs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import ray

from technic_v4.config.settings import Settings
from technic_v4.execution import ChunkFn, Columns, spans

_init_lock = threading.Lock()


@ray.remote
def _run_chunk(fn: ChunkFn, lo: int, hi: int, n_sliced: int, *arrays: np.ndarray) -> Columns:
    return fn(*(np.ascontiguousarray(a[lo:hi]) for a in arrays[:n_sliced]),
              *arrays[n_sliced:])


class RayBackend:
    name = "ray"
    fallback_reason: str | None = None
    MIN_ROWS_PER_TASK = 256

    def __init__(self, workers: int, address: str | None) -> None:
        self.workers = workers
        self.address = address
        self.tasks_last = 0

    @classmethod
    def connect(cls, settings: Settings) -> RayBackend:
        with _init_lock:
            if not ray.is_initialized():
                kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
                if settings.ray_address:
                    ray.init(address=settings.ray_address, **kw)
                else:  # a new local Ray, never another cluster running on this machine
                    ray.init(address="local", num_cpus=settings.max_workers, **kw)
        cpus = int(ray.cluster_resources().get("CPU", settings.max_workers))
        return cls(cpus, settings.ray_address)

    def run_chunks(self, fn: ChunkFn, arrays: Sequence[np.ndarray],
                   on_chunk: Callable[[int], None] | None = None,
                   shared: Sequence[np.ndarray] = ()) -> list[Columns]:
        n = len(arrays[0])
        refs = [ray.put(a) for a in (*arrays, *shared)]  # once per panel, shared by every task
        parts = spans(n, max(1, min(2 * self.workers, n // self.MIN_ROWS_PER_TASK)))
        futures = [_run_chunk.remote(fn, lo, hi, len(arrays), *refs) for lo, hi in parts]
        self.tasks_last = len(futures)
        out = ray.get(futures)
        if on_chunk is not None:
            on_chunk(n)
        return list(out)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "cluster_cpus": self.workers, "tasks": self.tasks_last,
                "address": self.address or "local", "fallback_reason": None}


@ray.remote
def remote_history(config: Any, ref: Any, panel: Any, days: Any, sess_days: Any,
                   shares: Any = None) -> Any:
    """One group of history dates as one task (see ``technic_v4.history``)."""
    from technic_v4.history import _evaluate_dates

    return _evaluate_dates(config, ref, panel, days, sess_days, shares)
