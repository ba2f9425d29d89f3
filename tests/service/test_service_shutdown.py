"""SIGTERM to a serving process: a long poll gets its answer and an event stream a final event
before the process exits (a real uvicorn in a subprocess, real signals)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from technic_v4.testing import free_port

# The served app holds every scan in its first progress callback until it is cancelled, so
# the scan is surely running when the signal arrives.
SERVER = """
import sys
from pathlib import Path

from technic_v4.service.app import create_app, serve_app
from technic_v4.testing import make_market

md = make_market(Path(sys.argv[1]), n=60)
md.ensure_current()
jobs = []

def hold(job_id, stage, done, total):
    jobs[0].get(job_id).cancel_event.wait(60)

app = create_app(md, progress_hook=hold)
jobs.append(app.state.service.jobs)
serve_app(app, "127.0.0.1", int(sys.argv[2]), log_level="info")
"""


def test_sigterm_answers_long_polls_and_ends_event_streams(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError(f"the server exited with {proc.wait()}")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as c:
            job = c.post("/v1/scan", json={"max_symbols": 20}).json()["id"]
            poll: dict[str, Any] = {}
            events: list[tuple[str, dict[str, Any]]] = []

            def long_poll() -> None:
                with httpx.Client(base_url=base, timeout=60) as lc:
                    r = lc.get(f"/v1/scan/{job}", params={"wait": 60})
                    poll.update(status=r.status_code, body=r.json())

            def stream() -> None:
                with httpx.Client(base_url=base, timeout=60) as sc, \
                        sc.stream("GET", f"/v1/scan/{job}/events") as r:
                    event = None
                    for line in r.iter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event is not None:
                            events.append((event, json.loads(line[6:])))

            threads = [threading.Thread(target=f) for f in (long_poll, stream)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while c.get(f"/v1/scan/{job}").json()["watchers"] < 2:
                assert time.monotonic() < deadline, "the clients never subscribed"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(timeout=30)
                assert not t.is_alive()
        assert poll["status"] == 200 and poll["body"]["id"] == job
        assert poll["body"]["state"] in ("running", "cancelled")
        assert events[0][0] == "progress" and events[-1][0] == "shutdown"
        assert events[-1][1]["id"] == job
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        rest = proc.stderr.read()
        proc.stderr.close()
    assert "Application shutdown complete" in rest, rest
