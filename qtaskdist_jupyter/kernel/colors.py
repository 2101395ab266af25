"""The status badges' colours, with no import beyond the statuses: the labextension's build
reads them (``python -m qtaskdist_jupyter.kernel.live_view``) in the build's own isolated
environment, which has none of the project's dependencies (numpy among them).
"""

from __future__ import annotations

from qtaskdist_jupyter.core.status import TaskStatus

# Badge colours, white text on each at a contrast of 4.5:1 or more (WCAG AA), in light and
# dark themes alike; the live table's front end gets them as a trait. ``waiting`` is
# shown, not stored (live_view.FACTS["waiting"]).
STATUS_COLORS: dict[str, str] = {
    TaskStatus.PENDING: "#616161",
    TaskStatus.QUEUED: "#1565c0",
    TaskStatus.RUNNING: "#bf360c",
    TaskStatus.COMPLETED: "#2e7d32",
    TaskStatus.FAILED: "#c62828",
    TaskStatus.CANCELLED: "#5d4037",
    "waiting": "#5e35b1",
}
