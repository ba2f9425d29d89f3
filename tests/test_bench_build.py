"""``technic bench``'s embedded-market build section: the child builds the market as the fetch
planner does and reports it (no timing assertions: the numbers are the benchmark's)."""

from __future__ import annotations

import json
import os

from technic_v4.bench import _BUILD, _child, build_report


def test_build_child_reports_the_market_it_built() -> None:
    args = {"listings": 80, "epoch": "2025-06-02", "end": "2026-11-20"}
    _, got = _child(dict(os.environ), ["-c", _BUILD, json.dumps(args)])
    assert got is not None
    assert got["listings"] <= 80 and got["sessions"] > 300
    assert got["rows"] > 0.8 * got["listings"] * got["sessions"]
    assert got["dividends"] > 0 and got["peak_rss_mb"] > 0
    lines = build_report({"default": got, "long": got, "long_scan_s": 1.0,
                          "long_scan": {"peak_rss_mb": 1.0}})
    text = "\n".join(lines)
    assert f"| {got['sessions']:,} | {got['rows']:,} |" in text
    assert "20 years" in text and "Cold `technic scan` on the 20-year market" in text
