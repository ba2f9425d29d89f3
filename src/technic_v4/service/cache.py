"""Result cache keyed by (scan config, data version): in-process LRU, then Redis when configured.

The key is a SHA-256 over technic's version, the canonical config (set-valued fields sorted) and
the data version, a fingerprint of the store's *content* (dataset, first/last session, sessions,
bars, symbols): two instances whose stores hold the same market compute the same key, so one
instance serves what another computed. Redis holds Arrow IPC bytes (see ``results.py``), never
pickle; a Redis outage degrades to the in-process layer and is reported by ``/health``. Like the
L3 layer, a failure turns the shared layer off for ``cooldown_s`` (a hung Redis costs one socket
timeout per cooldown, not one per request); a value that does not decode is a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

from technic_v4 import __version__
from technic_v4.config.scan import ScanConfig
from technic_v4.data.l3 import redact_url
from technic_v4.data.market import MarketData
from technic_v4.service.results import Outcome

log = logging.getLogger(__name__)

_SET_FIELDS = ("sectors", "industries", "types", "symbols")


def canonical_config(config: ScanConfig) -> dict[str, Any]:
    """The config as JSON, with fields whose order does not matter sorted."""
    d = config.model_dump(mode="json")
    for f in _SET_FIELDS:
        if d.get(f) is not None:
            d[f] = sorted(d[f])
    if d.get("columns") is not None:
        # Their order is the output's: pairs, so the sorted-keys dump keeps it.
        d["columns"] = [[k, v] for k, v in d["columns"].items()]
    return d


def result_key(config: ScanConfig, data_version: str) -> str:
    blob = json.dumps({"technic": __version__, "config": canonical_config(config),
                       "data": data_version}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class Snapshot(NamedTuple):
    """The data version of one store version: ``identity`` is the store's ``(id, version)``
    it was computed from, ``status`` that of :meth:`Store.status` at that version."""

    identity: tuple[str | None, int]
    version: str
    status: dict[str, Any]


class DataVersion:
    """The store's content fingerprint, recomputed only when the store's identity (id and
    version: a store deleted and rebuilt has a new id) moves."""

    def __init__(self, market: MarketData) -> None:
        self.market = market
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        store = self.market.store
        ident = store.identity()
        with self._lock:
            cached = self._cached
        if cached is not None and cached.identity == ident:
            return Snapshot(cached.identity, cached.version, dict(cached.status))
        with store.reading():  # the counts, the digest and the identity of one version
            ident = store.identity()
            st = store.status()
            content = store.content()  # moves when bars are replaced one for one
        fp = json.dumps([self.market.provider.store_key, str(st["first_session"]),
                         str(st["last_session"]), st["sessions"], st["bars"], st["symbols"],
                         content])
        last = st["last_session"]
        version = f"{last or 'empty'}.{hashlib.sha256(fp.encode()).hexdigest()[:16]}"
        snap = Snapshot(ident, version, st)
        with self._lock:
            self._cached = snap
        return Snapshot(ident, version, dict(st))

    def status(self) -> tuple[str, dict[str, Any]]:
        """``(data_version, store status)``; the status is that of :meth:`Store.status`."""
        snap = self.snapshot()
        return snap.version, snap.status

    def current(self) -> str:
        return self.snapshot().version


class ResultCache:
    """Two layers: ``memory`` (this process, LRU bounded by ``entries`` and ``max_bytes``) and
    ``redis`` (shared, with a TTL)."""

    def __init__(self, entries: int, redis_url: str | None, prefix: str, ttl_seconds: int,
                 on_lookup: Any = None, on_error: Any = None, max_bytes: int = 256 << 20,
                 cooldown_s: float = 30.0) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._mem: OrderedDict[str, Outcome] = OrderedDict()
        self._lock = threading.Lock()
        self._on_lookup = on_lookup  # (layer, hit: bool) -> None
        self._on_error = on_error  # (op) -> None
        self.redis_url = redis_url
        self._redis: Any = None
        self._redis_ok = True
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self._last_error: str | None = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=1.0,
                                               socket_connect_timeout=0.5,
                                               health_check_interval=30)

    # -- memory ------------------------------------------------------------------------------
    def get_memory(self, key: str) -> Outcome | None:
        with self._lock:
            out = self._mem.get(key)
            if out is not None:
                self._mem.move_to_end(key)
        self._count("memory", out is not None)
        return out

    def put_memory(self, out: Outcome) -> None:
        with self._lock:
            self._mem[out.key] = out
            self._mem.move_to_end(out.key)
            while len(self._mem) > 1 and (len(self._mem) > self.entries or sum(
                    o.nbytes for o in self._mem.values()) > self.max_bytes):
                self._mem.popitem(last=False)

    # -- redis -------------------------------------------------------------------------------
    def _rkey(self, key: str) -> str:
        return f"{self.prefix}result:{key}"

    @property
    def redis_available(self) -> bool:
        """False while backing off after a failure."""
        return self._redis is not None and time.monotonic() >= self._down_until

    def get_redis(self, key: str) -> Outcome | None:
        if not self.redis_available:
            if self._redis is not None:
                self._count("redis", False)
            return None
        try:
            raw = self._redis.get(self._rkey(key))
        except Exception as e:  # noqa: BLE001 - any client failure means "no shared layer now"
            self._failed("get", e)
            self._count("redis", False)
            return None
        self._recovered()
        if raw is None:
            self._count("redis", False)
            return None
        try:
            out = Outcome.from_arrow(bytes(raw))
        except ValueError as e:
            log.warning("ignoring an unreadable cached result %s: %s", key[:12], e)
            self._count("redis", False)
            return None
        if out.key != key:
            log.warning("ignoring a cached result stored under the wrong key %s", key[:12])
            self._count("redis", False)
            return None
        self._count("redis", True)
        return out

    def put_redis(self, out: Outcome) -> bool:
        if not self.redis_available:
            return False
        try:
            self._redis.set(self._rkey(out.key), out.to_arrow(), ex=self.ttl)
        except Exception as e:  # noqa: BLE001 - the shared layer is best effort
            self._failed("set", e)
            return False
        self._recovered()
        return True

    def redis_status(self) -> dict[str, Any] | None:
        """Ping Redis (blocks up to the socket timeout: call it off the event loop); a success
        ends a back-off early, a failure starts one."""
        if self._redis is None or self.redis_url is None:
            return None
        try:
            up = bool(self._redis.ping())
        except Exception as e:  # noqa: BLE001 - reported as "down" with the reason
            self._failed("ping", e, count=False)
            up = False
        else:
            self._recovered()
        d: dict[str, Any] = {"url": redact_url(self.redis_url), "status": "up" if up else "down"}
        if not up and self._last_error:
            d["error"] = self._last_error
        return d

    def _failed(self, op: str, e: Exception, count: bool = True) -> None:
        if count and self._on_error is not None:
            self._on_error(op)
        self._last_error = f"{type(e).__name__}: {e}"
        self._down_until = time.monotonic() + self.cooldown_s
        if self._redis_ok:
            log.warning("Redis at %s: %s failed (%s); serving from this process, retrying in "
                        "%.0f s", redact_url(self.redis_url or ""), op, self._last_error,
                        self.cooldown_s)
        self._redis_ok = False

    def _recovered(self) -> None:
        if not self._redis_ok:
            log.warning("Redis is reachable again")
        self._redis_ok = True
        self._down_until = 0.0

    def _count(self, layer: str, hit: bool) -> None:
        if self._on_lookup is not None:
            self._on_lookup(layer, hit)

    def close(self) -> None:
        if self._redis is not None:
            try:
                self._redis.close()
            except Exception:
                log.debug("closing the Redis client failed", exc_info=True)
