"""The task types: the one home of their names and of the facts every side reads.

A domain module: it imports nothing of the store, the broker or the circuit codec, so the
kernel (the live table's facts, the client) can read it without the Redis layout.
:mod:`.broker.keys` names each type's streams from :data:`STREAM_NAMES`.
"""

from __future__ import annotations

# task type -> the name of its task stream (broker.keys prefixes "stream:"), in the
# order views list the types.
STREAM_NAMES: dict[str, str] = {
    "simulate": "simulate",
    "c_qir_convert": "c_qir",
    "backend_run": "backend",
}
TASK_TYPES: tuple[str, ...] = tuple(STREAM_NAMES)
