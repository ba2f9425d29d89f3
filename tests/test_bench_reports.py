"""The bench report's backtest sections from results recorded by real runs (2026-11-30):
every number the README quotes comes out of these functions."""

from __future__ import annotations

import json
from pathlib import Path

from technic_v4.bench import ray_big_report, replay_report

RECORDED = json.loads((Path(__file__).parent / "bench_reports.json").read_text())


def test_replay_report_has_the_curve_the_target_run_and_its_ratio() -> None:
    text = "\n".join(replay_report(RECORDED["replay"]))
    big = RECORDED["replay"]["stores"][-1]
    assert f"| {big['listings']:,} | {big['curve'][0]['sessions']:,} |" in text
    assert "`backtest.run`: 6,000 listings x 4,995 sessions" in text
    assert f"{big['run']['peak_rss_mb'] / 1024:.1f} GB |" in text
    assert "(the process, warm-ups included)" not in text  # the run's own peak was measured
    ratio = big["per_session_s"] * 4995 / big["run"]["replay_s"]
    assert f"the replay is {ratio:,.0f}x faster" in text


def test_ray_big_report_names_tasks_nodes_and_the_projection() -> None:
    b = RECORDED["ray_big"]
    text = "\n".join(ray_big_report(b))
    assert f"{b['replay']['listings']:,} listings" in text
    assert f"{b['replay']['runner']['tasks']:,} tasks on 2 nodes" in text
    assert "64 nodes ~" in text
