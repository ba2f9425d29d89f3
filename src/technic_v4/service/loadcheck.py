"""A bounded loopback load check: many GETs of one cached scan result at a fixed concurrency.

    python -m technic_v4.service.loadcheck                      # own server on a small market
    python -m technic_v4.service.loadcheck --url http://127.0.0.1:8502 [--api-key KEY]

Without ``--url`` it starts ``technic``'s service in a separate process on a free loopback port
over a synthetic market in a temporary directory (nothing of yours is touched), submits one scan,
waits for it, then sends ``--requests`` GETs of its results at ``--concurrency`` and prints
p50/p90/p99/max latency, throughput and errors (any non-200 or transport error). Exit status 1
when there were errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

DEFAULT_SCAN: dict[str, Any] = {"top_n": 50}


@dataclass
class LoadReport:
    url: str
    requests: int
    concurrency: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests_per_second: float
    bytes_per_response: int
    error_samples: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.requests} GET {self.url} at concurrency {self.concurrency}: "
                f"p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
                f"max {self.max_ms:.2f} ms, {self.requests_per_second:,.0f} req/s, "
                f"{self.errors} errors, {self.bytes_per_response:,} bytes/response")


class _Conn:
    """One keep-alive HTTP/1.1 connection with a minimal client: ``httpx``'s own pool costs
    several times the server's CPU per request at this concurrency and would measure itself."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdr = {k.strip().lower(): v.strip() for k, _, v in
               (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" not in hdr:
            raise ValueError(f"no Content-Length in the response (status {status})")
        body = await self.reader.readexactly(int(hdr["content-length"]))
        if hdr.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _load(url: str, n: int, concurrency: int, headers: dict[str, str]) -> LoadReport:
    u = urlsplit(url)
    target = u.path + (f"?{u.query}" if u.query else "")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nAccept: */*\r\n{extra}\r\n"
               ).encode("latin-1")
    lat = np.full(n, np.nan)
    errors: list[str] = []
    size = 0
    next_i = 0

    async def worker() -> None:
        nonlocal next_i, size
        conn = _Conn(u.hostname or "127.0.0.1", u.port or 80, request)
        try:
            while next_i < n:
                i = next_i
                next_i += 1
                t = time.perf_counter()
                try:
                    status, body = await conn.get()
                except (OSError, ValueError, asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError) as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    await conn.close()
                    continue
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:120]!r}")
                    continue
                lat[i] = time.perf_counter() - t
                size = len(body)
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    good = lat[np.isfinite(lat)] * 1000
    q = np.percentile(good, [50, 90, 99]) if len(good) else np.full(3, np.nan)
    return LoadReport(url=url, requests=n, concurrency=concurrency, errors=len(errors),
                      seconds=round(seconds, 3), p50_ms=float(q[0]), p90_ms=float(q[1]),
                      p99_ms=float(q[2]), max_ms=float(good.max()) if len(good) else np.nan,
                      requests_per_second=n / seconds if seconds else 0.0,
                      bytes_per_response=size, error_samples=errors[:5])


def run_load(base_url: str, path: str, requests: int = 2000, concurrency: int = 50,
             api_key: str | None = None) -> LoadReport:
    """``requests`` GETs of ``base_url + path`` with ``concurrency`` in flight."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be >= 1")
    headers = {"X-API-Key": api_key} if api_key else {}
    return asyncio.run(_load(base_url.rstrip("/") + path, requests, concurrency, headers))


def cached_result_path(base_url: str, scan: dict[str, Any] | None = None,
                       api_key: str | None = None) -> str:
    """Submit ``scan``, wait for it, and return the path of its results (now cached)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=base_url, timeout=120, headers=headers) as c:
        r = c.post("/v1/scan", json=DEFAULT_SCAN if scan is None else scan)
        r.raise_for_status()
        job = r.json()
        deadline = time.monotonic() + 600
        while job["state"] not in ("done", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"scan {job['id']} did not finish")
            job = c.get(f"/v1/scan/{job['id']}", params={"wait": 30}).json()
        if job["state"] != "done":
            raise RuntimeError(f"scan ended {job['state']}: {job.get('error')}")
        path = f"/v1/scan/{job['id']}/results"
        c.get(path).raise_for_status()  # the first GET encodes; the load hits the cache
        return path


def _serve(port: int, data_dir: str, listings: int) -> None:
    """Child process: a service over a synthetic market (not ``technic serve``'s store)."""
    import datetime as dt
    from pathlib import Path

    import uvicorn

    from technic_v4.service.app import ServiceOptions, create_app
    from technic_v4.testing import make_market

    md = make_market(Path(data_dir), n=listings, end=dt.date(2026, 11, 20))
    md.ensure_current()
    app = create_app(md, options=ServiceOptions(allowed_hosts=("127.0.0.1", "localhost")))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _own_server(listings: int) -> tuple[subprocess.Popen[bytes], str, tempfile.TemporaryDirectory[str]]:
    from technic_v4.testing import free_port

    tmp = tempfile.TemporaryDirectory(prefix="technic-loadcheck-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECHNIC_")}
    env["TECHNIC_PROGRESS"] = "false"
    proc = subprocess.Popen([sys.executable, "-m", "technic_v4.service.loadcheck", "--serve",
                             str(port), "--data-dir", tmp.name, "--listings", str(listings)],
                            env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # a readiness probe of a separate process: poll /health
        if proc.poll() is not None:
            raise RuntimeError(f"the server process exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url, tmp
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise TimeoutError("the server did not start within 120 s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m technic_v4.service.loadcheck",
                                 description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--url", help="A running service (default: start one on a free port).")
    ap.add_argument("--api-key", default=os.environ.get("TECHNIC_API_KEY"),
                    help="X-API-Key to send (default: $TECHNIC_API_KEY).")
    ap.add_argument("--requests", "-n", type=int, default=2000)
    ap.add_argument("--concurrency", "-c", type=int, default=50)
    ap.add_argument("--scan", default=json.dumps(DEFAULT_SCAN),
                    help="ScanConfig JSON of the cached result to fetch (default: %(default)s).")
    ap.add_argument("--listings", type=int, default=400,
                    help="Synthetic market size of the own server (default: %(default)s).")
    ap.add_argument("--json", action="store_true", help="Print the report as JSON.")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve is not None:
        _serve(args.serve, args.data_dir, args.listings)
        return 0
    proc = tmp = None
    url = args.url
    try:
        if url is None:
            proc, url, tmp = _own_server(args.listings)
        path = cached_result_path(url, json.loads(args.scan), args.api_key)
        rep = run_load(url, path, args.requests, args.concurrency, args.api_key)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps(asdict(rep), indent=2) if args.json else rep.line())
    return 1 if rep.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
