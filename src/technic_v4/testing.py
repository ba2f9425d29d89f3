"""Test doubles that ship with the package: small real markets and a faulty vendor.

Used by technic's own tests and benchmarks, and by anyone who wants to test code against technic
without a data vendor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from technic_v4.config.settings import Settings
from technic_v4.data.bars import BarBatch
from technic_v4.data.market import MarketData
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.errors import ProviderError

END = dt.date(2026, 11, 20)
EPOCH = dt.date(2025, 1, 2)
N_SMALL = 400


def make_market(path: Path, n: int = N_SMALL, end: dt.date = END, epoch: dt.date = EPOCH,
                seed: int = 7, provider: SyntheticProvider | None = None,
                **settings: object) -> MarketData:
    """A MarketData over a synthetic market in a DuckDB store under ``path`` (not yet filled)."""
    s = Settings(data_dir=path, synthetic_listings=n, synthetic_seed=seed, synthetic_epoch=epoch,
                 synthetic_end=end, progress=False, **settings)  # type: ignore[arg-type]
    return MarketData(settings=s, provider=provider)


class FaultyProvider(SyntheticProvider):
    """The synthetic market with a vendor's bad habits injected into chosen symbols.

    ``faults`` maps a fault name to the symbols it hits on every served session:
    ``nan_close``, ``zero_close``, ``negative_open``, ``high_below_low``, ``zero_volume``,
    ``duplicate`` (the row appears twice, the second copy with close x 1.01),
    ``missing`` (the row is absent).
    """

    FAULTS = ("nan_close", "zero_close", "negative_open", "high_below_low", "zero_volume",
              "duplicate", "missing")

    def __init__(self, faults: dict[str, Sequence[str]], *, sessions: Sequence[dt.date] | None
                 = None, fail_sessions: Sequence[dt.date] = (),
                 empty_sessions: Sequence[dt.date] = (), no_shares: Sequence[str] = (),
                 **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        # Sessions answered with no rows (data not published yet), and symbols whose reference
        # data lacks shares outstanding.
        self.empty_sessions = {np.datetime64(d, "D") for d in empty_sessions}
        self.no_shares = set(no_shares)
        # Sessions whose request fails outright (as a vendor outage would), one per call.
        self.fail_sessions = set(fail_sessions)
        if self.fail_sessions:
            self.fetch_batch_sessions = 1
        unknown = set(faults) - set(self.FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; valid: {self.FAULTS}")
        self.faults = {k: set(v) for k, v in faults.items()}
        self.fault_sessions = None if sessions is None else set(
            np.asarray(sessions, dtype="datetime64[D]").tolist())

    def reference(self) -> Any:
        ref = super().reference()
        ref.loc[ref["Symbol"].isin(self.no_shares), "SharesOutstanding"] = np.nan
        return ref

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        bad = self.fail_sessions.intersection(sessions)
        if bad:
            self._requests["grouped_daily"] += len(sessions)
            raise ProviderError(f"grouped daily {min(bad)}: HTTP 503 after retries")
        b = super().bars_for_sessions(sessions)
        if self.empty_sessions:
            b = b.take(np.flatnonzero(~np.isin(b.date, list(self.empty_sessions))))
        hit_session = np.ones(len(b), dtype=bool) if self.fault_sessions is None else np.isin(
            b.date, np.array(sorted(self.fault_sessions), dtype="datetime64[D]"))

        def rows(name: str) -> np.ndarray:
            return np.isin(b.symbol, list(self.faults.get(name, ()))) & hit_session

        b.close[rows("nan_close")] = np.nan
        b.close[rows("zero_close")] = 0.0
        b.open[rows("negative_open")] = -1.0
        hl = rows("high_below_low")
        b.high[hl], b.low[hl] = b.low[hl] * 0.5, b.high[hl]
        b.volume[rows("zero_volume")] = 0.0
        dup = np.flatnonzero(rows("duplicate"))
        missing = rows("missing")
        extra = b.take(dup)
        extra.close = extra.close * 1.01
        extra.high = np.maximum(extra.high, extra.close)
        return BarBatch.concat([b.take(np.flatnonzero(~missing)), extra])


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` on a free loopback port, in a temporary directory.

    For tests and benchmarks; needs the ``redis-server`` binary (Debian package redis-server).
    Use as a context manager; ``url`` is the ``TECHNIC_REDIS_URL`` to give technic.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: Any = None
        self._dir: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import shutil
        import subprocess
        import tempfile
        import time

        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server "
                               "(scripts/test.sh does it)")
        self._dir = tempfile.TemporaryDirectory(prefix="technic-redis-")
        self._proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir.name, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within 10 s")

    def ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - escalate to kill on any wait failure
                self._proc.kill()
                self._proc.wait(timeout=5)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ActionsProvider(SyntheticProvider):
    """The synthetic market with corporate actions added, served the way a vendor serves them.

    ``actions`` are rows (symbol, ex-date, type, ratio, amount), served by ``actions(since)``
    (counted as ``actions`` requests) after the synthetic market's own ones, whatever their
    ex-date (a vendor lists announced splits before they happen); rows may be bad on purpose.
    Bars are unadjusted: before a split's ex-date a symbol trades at ``ratio`` times the
    synthetic price, with volume divided by ``ratio`` -- the same whatever ``end`` is.
    ``fail_actions`` makes every actions request fail as a vendor outage would;
    ``own_actions=False`` serves only the given rows (for tests that count what is stored; the
    bars still trade through the market's own splits, which such tests never adjust).
    """

    def __init__(self, actions: Sequence[tuple[str, dt.date | str, str, float, float]] = (),
                 *, fail_actions: bool = False, own_actions: bool = True,
                 **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.extra_actions = list(actions)
        self.fail_actions = fail_actions
        self.own_actions = own_actions
        self._requests["actions"] = 0
        self.actions_asked: list[dt.date] = []  # ``since`` of every actions request

    def _unadjust(self, b: BarBatch) -> BarBatch:
        for sym, day, typ, ratio, _ in self.extra_actions:
            if typ != "split" or not isinstance(ratio, float) or not ratio > 0:
                continue  # a bad row on purpose: the vendor's bars do not follow it
            rows = (b.symbol == sym) & (b.date < np.datetime64(day, "D"))
            for f in ("open", "high", "low", "close"):
                getattr(b, f)[rows] *= ratio
            b.volume[rows] = b.volume[rows] / ratio
        return b

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        return self._unadjust(super().bars_for_sessions(sessions))

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        return self._unadjust(super().bars_for_symbols(symbols, start, end))

    def actions(self, since: dt.date) -> Any:
        import pandas as pd

        self._requests["actions"] += 1
        self.actions_asked.append(since)
        if self.fail_actions:
            raise ProviderError("reference splits: HTTP 503 after retries")
        rows = pd.DataFrame([r for r in self.extra_actions
                             if str(r[1]) >= str(since)],
                            columns=["Symbol", "ExDate", "Type", "Ratio", "Amount"],
                            dtype=object)
        if not self.own_actions:
            return rows
        own = super().actions(since)
        self._requests["actions"] -= 1  # one request: the market's own and the added rows
        return rows if not len(own) else pd.concat([own, rows], ignore_index=True)
