"""Execution backends for the indicator stage: local threads, or Ray.

Both run the same pure function (``indicators.compute.chunk_columns``) over coarse row chunks of
the scanned rows and return identical results; the choice only changes where the chunks run.

    get_backend(settings)  -> LocalBackend (threads, ``max_workers``)
                            | RayBackend   (``use_ray``; falls back to local, once, with a reason)
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from technic_v4.config.settings import Settings

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]
ChunkFn = Callable[..., Columns]


class Backend(Protocol):
    name: str
    workers: int
    fallback_reason: str | None

    def run_chunks(self, fn: ChunkFn, arrays: Sequence[np.ndarray],
                   on_chunk: Callable[[int], None] | None = None,
                   shared: Sequence[np.ndarray] = ()) -> list[Columns]:
        """``fn(*[a[lo:hi] for a in arrays], *shared)`` for row chunks covering every row, in
        order; ``shared`` arrays are passed whole to every chunk (never copied per chunk)."""
        ...

    def describe(self) -> dict[str, Any]:
        ...


def spans(n: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous, balanced row ranges covering ``range(n)`` (no empty ones)."""
    bounds = np.linspace(0, n, max(1, min(chunks, n)) + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


class LocalBackend:
    """``workers`` threads share the chunks (the kernels release the GIL).

    There are a few chunks per thread: thread ``i`` runs chunk ``i`` first, then each thread
    takes the next chunk nobody has taken, so a thread that gets less CPU (a busy machine)
    leaves its share to the others instead of making everyone wait for it. ``threads_used``
    records the distinct threads that really ran chunks in the last call, so the
    ``max_workers`` setting is observable rather than assumed.
    """

    name = "local"
    MIN_ROWS_PER_CHUNK = 128
    CHUNKS_PER_WORKER = 4

    def __init__(self, workers: int, fallback_reason: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.fallback_reason = fallback_reason
        self.threads_used = 0

    def run_chunks(self, fn: ChunkFn, arrays: Sequence[np.ndarray],
                   on_chunk: Callable[[int], None] | None = None,
                   shared: Sequence[np.ndarray] = ()) -> list[Columns]:
        n = len(arrays[0])
        chunks = 1 if self.workers == 1 else self.workers * self.CHUNKS_PER_WORKER
        parts = spans(n, min(chunks, max(1, n // self.MIN_ROWS_PER_CHUNK)))
        n_threads = min(self.workers, len(parts))
        results: list[Columns | None] = [None] * len(parts)
        errors: list[Exception] = []
        names: set[str] = set()  # thread idents get reused once a thread ends; names do not
        done: queue.Queue[int | None] = queue.Queue()  # rows of a finished chunk; None: exit
        free = itertools.count(n_threads)  # the next chunk nobody has taken
        take = threading.Lock()
        stop = threading.Event()  # the caller gave up (cancelled): take no more chunks

        def run(i: int) -> None:
            try:
                while i < len(parts) and not errors and not stop.is_set():
                    lo, hi = parts[i]
                    try:
                        results[i] = fn(*(np.ascontiguousarray(a[lo:hi]) for a in arrays),
                                        *shared)
                        names.add(threading.current_thread().name)
                    except Exception as e:  # noqa: BLE001 - re-raised in the calling thread
                        errors.append(e)
                    done.put(hi - lo)
                    with take:
                        i = next(free)
            finally:
                done.put(None)

        threads = [threading.Thread(target=run, args=(i,), name=f"technic-ind-{i}")
                   for i in range(n_threads)]
        for t in threads:
            t.start()
        try:
            # Progress (and the cancel check behind it) runs in the calling thread only.
            running = n_threads
            while running:
                rows = done.get()
                if rows is None:
                    running -= 1
                elif on_chunk is not None and not errors:
                    on_chunk(rows)
        finally:
            stop.set()
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
        self.threads_used = len(names)
        return [r for r in results if r is not None]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "max_workers": self.workers,
                "threads_used": self.threads_used, "fallback_reason": self.fallback_reason}


_ray_failure: str | None = None
_ray_lock = threading.Lock()


def get_backend(settings: Settings) -> Backend:
    """The backend the settings ask for; Ray falls back to local (logged once) if unusable."""
    global _ray_failure
    if not settings.use_ray:
        return LocalBackend(settings.max_workers)
    with _ray_lock:
        if _ray_failure is None:
            if not settings.ray_address:
                # A local Ray binds to loopback only: without this Ray on Linux registers the
                # machine's network address and its processes talk over it.
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            try:
                from technic_v4.execution.ray_backend import RayBackend

                return RayBackend.connect(settings)
            except ImportError:
                _ray_failure = ("ray is not installed (run pip install -e '.[ray]' in the "
                                "technic checkout); running locally")
            except Exception as e:  # noqa: BLE001 - any start-up failure means "run locally"
                _ray_failure = f"Ray could not start ({type(e).__name__}: {e}); running locally"
            log.warning("%s", _ray_failure)
    return LocalBackend(settings.max_workers, fallback_reason=_ray_failure)


def reset_ray_failure() -> None:
    """Forget a previous Ray start-up failure (tests; a service after fixing the cluster)."""
    global _ray_failure
    _ray_failure = None
