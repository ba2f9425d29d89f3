"""Support for the daily-run tests (imported by name): a real loopback HTTP receiver that counts
the webhook requests it gets, and a tiny webhook sender that posts a message's JSON to it."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from technic_v4.notify import Delivery, Message


class Receiver:
    """An HTTP server on 127.0.0.1 recording each POSTed JSON body; answers ``fail`` first
    requests with 500."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = fail
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.lock:
                    if owner.fail > 0:
                        owner.fail -= 1
                        self.send_response(500)
                    else:
                        owner.bodies.append(json.loads(body))
                        self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def webhook_send(target: dict[str, Any], message: Message) -> Delivery:
    """POST the message as JSON to ``target["url"]``, once (no retries: the test decides)."""
    body = dataclasses.asdict(message)
    body["session"] = message.session.isoformat()
    req = urllib.request.Request(target["url"], data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return Delivery(target["name"], True, 1, status=r.status)
    except urllib.error.HTTPError as e:
        return Delivery(target["name"], False, 1, f"HTTP {e.code}", e.code)


class Recorder:
    """A sender that records (target name, message) and answers ok."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message]] = []

    def __call__(self, target: dict[str, Any], message: Message) -> Delivery:
        self.calls.append((target["name"], message))
        return Delivery(target["name"], True, 1)
