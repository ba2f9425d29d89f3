"""The panel kept beside the store: a new process maps it instead of querying, never stale."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.panel import FIELDS, Panel, PanelFiles
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.data.store import Store
from technic_v4.pipeline import scan
from technic_v4.testing import END, make_market

EPOCH = dt.date(2025, 9, 2)


def _same(a: Panel, b: Panel) -> None:
    for f in (*FIELDS, "day", "sids"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.symbols.tolist() == b.symbols.tolist() and a.as_of == b.as_of


def test_a_new_process_maps_the_saved_panel(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=60, epoch=EPOCH, end=dt.date(2026, 11, 13))
    md.ensure_current()
    as_of = md.resolve_as_of(None)
    built = md.panel(as_of, 60)
    md.close()
    again = make_market(tmp_path, n=60, epoch=EPOCH, end=dt.date(2026, 11, 13))
    calls: list[object] = []
    real = again._load_panel
    again._load_panel = lambda *a: calls.append(a) or real(*a)  # type: ignore[method-assign]
    with again.request() as c:
        mapped = again.panel(as_of, 60)
    assert calls == []  # served from the files, no query
    assert isinstance(mapped.close, np.memmap)
    assert c.served["store"] == c.requested > 0
    _same(built, mapped)
    # A write to the store (new sessions) makes the files stale: they are not used again.
    again.close()
    later = make_market(tmp_path, n=60, epoch=EPOCH, end=dt.date(2026, 11, 20))
    later.ensure_current()
    calls2: list[object] = []
    real2 = later._load_panel
    later._load_panel = lambda *a: calls2.append(a) or real2(*a)  # type: ignore[method-assign]
    fresh = later.panel(as_of, 60)
    assert len(calls2) == 1
    _same(built, fresh)  # same as-of, same data: equal, but rebuilt for the new version
    later.close()


def test_damaged_files_are_rebuilt(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=60, epoch=EPOCH)
    md.ensure_current()
    as_of = md.resolve_as_of(None)
    built = md.panel(as_of, 40)
    md.close()
    for f in tmp_path.rglob("close.npy"):
        f.write_bytes(b"garbage")
    again = make_market(tmp_path, n=60, epoch=EPOCH)
    _same(built, again.panel(as_of, 40))
    again.close()


def test_a_new_store_at_the_same_path_never_maps_an_old_panel(tmp_path: Path) -> None:
    # Two markets with the same listings and sessions (so the same number of writes: the same
    # version) but different prices; the second is imported after deleting the first's file.
    md = make_market(tmp_path, n=60, epoch=EPOCH, seed=7)
    md.ensure_current()
    as_of = md.resolve_as_of(None)
    old = md.panel(as_of, 40)
    old_id, version = md.store.identity()
    path = md.store.path
    md.close()
    for f in tmp_path.glob(path.name + "*"):
        if f.is_file() and not f.name.endswith(".lock"):
            f.unlink()
    other = MarketData(settings=md.settings, store=Store(path),
                       provider=SyntheticProvider(n_listings=60, seed=8, epoch=EPOCH, end=END))
    other.ensure_current()
    assert other.store.version == version and other.store.store_id != old_id
    got = other.panel(as_of, 40)
    assert not isinstance(got.close, np.memmap)  # built from the new store, not mapped
    _same(got, other._load_panel(as_of, 40).adjusted(other.actions(), "split"))
    assert not np.array_equal(np.nan_to_num(got.close), np.nan_to_num(old.close))
    other.close()


def test_concurrent_saves_of_one_panel_leave_one_complete_copy(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=60, epoch=EPOCH)
    md.ensure_current()
    as_of = md.resolve_as_of(None)
    p = md._load_panel(as_of, 40)
    ident = md.store.identity()
    files = PanelFiles(tmp_path / "panels")
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda _: files.save(ident, p), range(16)))
    _same(p, files.load(ident, as_of, 40, p.adjust))  # type: ignore[arg-type]
    assert [d.name for d in (tmp_path / "panels").iterdir()] == [
        f"{ident[0]}-v{ident[1]}-{as_of}-{p.adjust}-40"]
    md.close()


def test_read_only_data_dir_still_serves_scans(tmp_path: Path) -> None:
    data = tmp_path / "data"
    md = make_market(data, n=60, epoch=EPOCH)
    md.ensure_current()
    as_of = md.resolve_as_of(None)
    built = md._load_panel(as_of, 40)
    md.close()
    with read_only(data):
        # A later provider: the missing sessions are reported, not fetched, and nothing fails.
        later = make_market(data, n=60, epoch=EPOCH, end=END + dt.timedelta(days=14))
        assert later.store.read_only
        rep = later.ensure_current()
        assert rep.sessions_fetched == [] and rep.failed
        assert all("read-only" in why for why in rep.failed.values())
        assert later.resolve_as_of(None) == as_of
        _same(built, later.panel(as_of, 40))
        assert not list(data.glob("*.panels"))  # the panel files were skipped
        res = scan(ScanConfig(max_symbols=20, min_price=0, min_dollar_volume=0,
                              min_market_cap=0), later)
        assert len(res.frame) > 0
        later.close()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` and its files unwritable, also for root (who ignores chmod): root gets
    the immutable attribute (``chattr +i``), others ``chmod``."""
    targets = [folder, *folder.iterdir()]
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        done = []
        try:
            for t in targets:
                r = subprocess.run(["chattr", "+i", str(t)], capture_output=True, text=True)
                if r.returncode != 0:
                    pytest.skip(f"chattr +i not supported here: {r.stderr.strip()}")
                done.append(t)
            yield
        finally:
            for t in done:
                subprocess.run(["chattr", "-i", str(t)], check=True)
    else:
        modes = {t: t.stat().st_mode for t in targets}
        try:
            for t in targets:
                t.chmod(0o555 if t.is_dir() else 0o444)
            yield
        finally:
            for t, m in modes.items():
                t.chmod(m)
