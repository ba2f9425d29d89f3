"""The panel kept beside the store: a new process maps it instead of querying, never stale."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from technic_v4.data.panel import FIELDS, Panel
from technic_v4.testing import make_market

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
