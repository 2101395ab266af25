"""Every Redis key and stream name qtaskdist uses, and the consumer group's name.

Stream entries and events (what goes *into* these keys) are :mod:`.wire`'s business; the
commands that touch them are :class:`~qtaskdist_jupyter.core.broker.broker.Broker`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

from qtaskdist_jupyter.core.kinds import by_kind, inverse

# One stream of task messages per task type (XADD by the server, XREADGROUP by workers),
# named by the type's spec (core/kinds.py).
STREAMS: Mapping[str, str] = by_kind(lambda k: f"stream:{k.stream}")
# stream name -> task type
TYPE_OF_STREAM: Mapping[str, str] = inverse(STREAMS)
# Fair share: small submissions (an owner with few active tasks; see
# Limits.priority_max_tasks) go to a second stream per type, which workers read first,
# so one user's interactive task does not wait behind another user's large batch.
PRIORITY_STREAMS: Mapping[str, str] = by_kind(lambda k: f"stream:{k.stream}:priority")
# Status changes of every task, trimmed (MAXLEN ~); the server's events endpoint tails it.
EVENTS_STREAM = "stream:events"
# Messages no worker could handle, with the reason.
DEAD_STREAM = "stream:dead"
# Task ids of cancelled tasks, for workers to stop them. Its own stream so that a worker
# does not read (and every worker again) three events per task.
CANCELS_STREAM = "stream:cancels"
DELAYED_KEY = "qtaskdist:delayed"  # ZSET "<stream>|<message>" scored by the unix time due
WORKERS_KEY = "qtaskdist:workers"  # HASH worker name -> heartbeat JSON
# SET NX PX by the worker that reconciles; it expires, so it spaces the fleet's passes.
RECONCILE_LOCK_KEY = "qtaskdist:reconcile"
GC_LOCK_KEY = "qtaskdist:gc"
# The consumer group every worker reads the task streams in.
GROUP = "qtaskdist"
