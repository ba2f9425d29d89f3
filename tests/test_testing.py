"""The test doubles themselves: a real redis-server starts, answers and stops."""

from __future__ import annotations

import redis

from technic_v4.testing import RedisServer


def test_redis_server_really_runs(redis_server: RedisServer) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.set("technic:probe", b"1")
    assert r.get("technic:probe") == b"1"
    assert redis_server.url.startswith("redis://127.0.0.1:")


def test_redis_server_stops() -> None:
    s = RedisServer().start()
    assert s.ping()
    s.stop()
    assert not s.ping()
