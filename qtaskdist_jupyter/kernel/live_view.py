"""What a live table needs to draw itself with no kernel: the statuses (``FACTS``) and the
MIME bundle that ``%qtask table``, batch handles and task handles put beside the widget.

In JupyterLab the extension's renderer (labextension/, docs/notebook.md) draws
``application/vnd.qtaskdist.tasks+json`` as a live table straight from the API, so a saved
notebook reopened with no kernel shows its tasks live again. Elsewhere the widget or the
HTML snapshot of the same bundle shows.
"""

from __future__ import annotations

import json
from typing import TypedDict
from urllib.parse import urlsplit

from qtaskdist_jupyter.core.kinds import TASK_TYPES
from qtaskdist_jupyter.core.status import DELETED, FINISHED, RETRYABLE, STATUSES, TaskStatus
from qtaskdist_jupyter.kernel.colors import STATUS_COLORS

TASKS_MIME = "application/vnd.qtaskdist.tasks+json"


class Facts(TypedDict):
    """What the front end knows of the statuses (the widget's ``facts`` trait, and the
    bundle's): each status by name, their order, the sets over them, the task types."""

    status: dict[str, str]
    statuses: list[str]
    finished: list[str]
    retryable: list[str]
    task_types: list[str]
    deleted: str
    # How the table shows a task that a worker claimed and whose job has not begun (its
    # row is ``running`` with no ``started_at``): it waits behind the worker's others.
    waiting: str


class TasksBundle(TypedDict):
    """The ``application/vnd.qtaskdist.tasks+json`` data (see :func:`tasks_bundle`)."""

    api_url: str
    status: str
    task_type: str
    batch_id: str
    task_id: str
    page_size: int
    facts: Facts
    colors: dict[str, str]


FACTS = Facts(
    status={s.name: s.value for s in TaskStatus},
    statuses=[s.value for s in STATUSES],
    finished=[s.value for s in STATUSES if s in FINISHED],
    retryable=[s.value for s in STATUSES if s in RETRYABLE],
    task_types=list(TASK_TYPES),
    deleted=DELETED,
    waiting="waiting",
)

COLORS = {str(s): c for s, c in STATUS_COLORS.items()}


def tasks_bundle(
    base_url: str,
    *,
    status: str = "",
    task_type: str = "",
    batch_id: str = "",
    task_id: str = "",
    page_size: int = 50,
) -> TasksBundle:
    """The ``application/vnd.qtaskdist.tasks+json`` data: the API's path (``base_url`` is
    the server's path, see browser_base_url), the filter, and the facts. It holds
    no token: the browser's own cookies authenticate."""
    return TasksBundle(
        api_url=base_url.rstrip("/") + "/qtaskdist/api/",
        status=status,
        task_type=task_type,
        batch_id=batch_id,
        task_id=task_id,
        page_size=page_size,
        facts=FACTS,
        colors=COLORS,
    )


def browser_base_url(server_url: str) -> str:
    """The path part only: the browser must stay same-origin to send its cookies."""
    path = urlsplit(server_url).path or "/"
    return path if path.endswith("/") else path + "/"


if __name__ == "__main__":
    # labextension/'s build writes this into src/facts.json: the panel and the status-bar
    # item have no kernel to send the facts, and the JS holds no copy of its own.
    print(json.dumps({"facts": FACTS, "colors": COLORS}, indent=1))
