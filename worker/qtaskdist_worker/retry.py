"""Retry delays: exponential backoff with jitter."""

from __future__ import annotations

import random


def backoff_s(retry_count: int, *, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Delay before retry number ``retry_count + 1``: base·2ⁿ capped, then jittered into
    [½, 1]× so a burst of failures does not come back as a burst of retries."""
    ceiling = min(cap_s, base_s * (2 ** min(retry_count, 30)))
    return ceiling * random.uniform(0.5, 1.0)
