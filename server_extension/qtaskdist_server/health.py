"""``GET health``: up/down and the caller's own queue for everyone; fleet internals (workers'
hosts and pids, global stream depths) only for operators, the users the Jupyter
authorizer grants ``admin`` on ``qtaskdist``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import ensure_async
from tornado import web

from qtaskdist_jupyter.core.errors import ServiceUnavailable

from .handlers import QtaskdistHandler, public_message


class HealthHandler(QtaskdistHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        svc = self.service
        db, redis = await asyncio.gather(_probe(svc.store.ping()), _probe(svc.broker.ping()))
        out: dict[str, Any] = {"database": db, "redis": redis}
        if db["ok"]:
            counts = await svc.store.counts(owner=self.owner)
            out["queue"] = {s: counts[s] for s in ("pending", "queued", "running")}
        if await self._is_admin():
            out.update(await self._fleet(redis))
        self.json(out)

    async def _is_admin(self) -> bool:
        """Fleet internals (hosts, pids, global depths) are for operators: users the
        Jupyter authorizer grants ``admin`` on ``qtaskdist``."""
        check = self.authorizer.is_authorized(self, self.current_user, "admin", "qtaskdist")
        return bool(await ensure_async(check))

    async def _fleet(self, redis: dict[str, Any]) -> dict[str, Any]:
        workers: list[dict[str, Any]] = []
        streams: dict[str, Any] = {}
        if redis["ok"]:
            try:
                now, stale = time.time(), self.app.worker_stale_s
                for name, info in sorted((await self.service.broker.workers()).items()):
                    age = max(0.0, now - float(info.pop("ts", 0)))
                    workers.append(
                        {
                            **info,
                            "name": name,
                            "host": info.get("host"),
                            "pid": info.get("pid"),
                            "last_heartbeat_s": round(age, 3),
                            "alive": age < stale,
                        }
                    )
                streams = await self.service.broker.stream_stats()
            except ServiceUnavailable as exc:
                redis.update(ok=False, error=public_message(exc))
        return {"workers": workers, "streams": streams}


async def _probe(check: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(check, timeout=10)
        return {"ok": True}
    except ServiceUnavailable as exc:
        return {"ok": False, "error": public_message(exc)}
    except TimeoutError:
        return {"ok": False, "error": "timed out"}
