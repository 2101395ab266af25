"""Docker HEALTHCHECK of a worker container: exit 0 when a worker on this host heartbeats.

Workers write ``{"host": ..., "ts": ...}`` into the Redis hash ``qtaskdist:workers`` every
visibility_timeout / 3 (20 s by default). The container is healthy when a worker whose
``host`` is this container's hostname beat within ``--max-age-s`` (default 60 s: three
missed beats, the server's own ``worker_stale_s``). That checks the process, its Redis
connection and its event loop at once.

    python docker/worker_healthcheck.py [--max-age-s 60] [--host NAME]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

import redis

from qtaskdist_jupyter.core.broker.keys import WORKERS_KEY
from qtaskdist_jupyter.core.config import load_settings


def newest_beat_age(redis_url: str, host: str) -> float | None:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        beats = client.hgetall(WORKERS_KEY)
    finally:
        client.close()
    ages = []
    for raw in beats.values():
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        if info.get("host") == host:
            ages.append(time.time() - float(info.get("ts", 0)))
    return min(ages) if ages else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-age-s", type=float, default=60.0)
    p.add_argument("--host", default=socket.gethostname())
    args = p.parse_args(argv)
    settings = load_settings()
    if not settings.redis_url:
        print("unhealthy: REDIS_URL is not set", file=sys.stderr)
        return 1
    try:
        age = newest_beat_age(settings.redis_url, args.host)
    except redis.RedisError as exc:
        print(f"unhealthy: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    if age is None or age > args.max_age_s:
        seen = "never" if age is None else f"{age:.0f} s ago"
        print(f"unhealthy: no heartbeat from a worker on {args.host} ({seen})", file=sys.stderr)
        return 1
    print(f"healthy: heartbeat {age:.1f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
