"""The notebook's Python client for the qtaskdist REST API (sync, httpx).

Finding the server, in order: explicit ``url``/``token`` → ``QTASKDIST_SERVER_URL`` /
``QTASKDIST_TOKEN`` (exported by the server extension, so every kernel it starts inherits
them) → the running Jupyter server that started this kernel (:mod:`.discovery`).
Circuits become payloads in :mod:`.payloads`. Each answer is checked against its shape
(:mod:`.answers`) where it is decoded. Waiting: :mod:`.waiting`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard, TypeVar
from urllib.parse import urljoin

import httpx

from qtaskdist_jupyter.core import arrays, config
from qtaskdist_jupyter.core.errors import ApiError, ServerNotFound
from qtaskdist_jupyter.core.jsontypes import JsonObject, JsonValue
from qtaskdist_jupyter.core.kinds import BACKEND, CONVERT, SIMULATE
from qtaskdist_jupyter.core.short_ids import id_start
from qtaskdist_jupyter.kernel import answers, waiting
from qtaskdist_jupyter.kernel.answers import EventJson, EventsPage, HealthJson, Resolved, TaskJson
from qtaskdist_jupyter.kernel.api_errors import api_error, transport_error
from qtaskdist_jupyter.kernel.discovery import HOW_TO_FIX, find_server
from qtaskdist_jupyter.kernel.handles import BatchHandle, TaskHandle
from qtaskdist_jupyter.kernel.lazy_result import ArrayNotFound, fetch_array
from qtaskdist_jupyter.kernel.payloads import TaskSpec, sweep_payloads, task_payloads, task_spec
from qtaskdist_jupyter.kernel.waiting import POLL_S

__all__ = ["BatchHandle", "Client", "TaskHandle", "find_server"]

API_PATH = "qtaskdist/api/"
# A query parameter's value as httpx sends it; None leaves the parameter out.
Query = Mapping[str, str | int | float | bool | None]
Shape = TypeVar("Shape")


# ---- the client --------------------------------------------------------------------
class Client:
    """``Client()`` finds the server by itself; ``Client(url, token)`` names it."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout_s: float = 30.0
    ) -> None:
        env_url, env_token = config.kernel_server_env()
        if url is None and env_url:
            url, token = env_url, token if token is not None else env_token
        if url is None:
            found = find_server()
            if found is None:
                raise ServerNotFound(
                    "no Jupyter server with the qtaskdist extension found for this kernel "
                    f"(QTASKDIST_SERVER_URL is not set). {HOW_TO_FIX}"
                )
            url, found_token = found
            token = token if token is not None else found_token
        self.url = url if url.endswith("/") else url + "/"
        self.token = token or ""
        self.timeout_s = timeout_s
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        self._http = httpx.Client(
            base_url=urljoin(self.url, API_PATH), headers=headers, timeout=timeout_s
        )

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- HTTP ----------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Query | None = None,
        timeout: float | None = None,
    ) -> JsonValue:
        """One API call; errors become ServerNotFound / ServiceUnavailable / ApiError."""
        return self._call(method, path, json=json, params=params, timeout=timeout)[1]

    def _checked(
        self, shape: Callable[[object], TypeGuard[Shape]], method: str, path: str, **call: Any
    ) -> Shape:
        """One API call whose answer must be of ``shape`` (an :mod:`.answers` check)."""
        status, body = self._call(method, path, **call)
        if not shape(body):
            raise answers.unexpected(f"{method} {path}", status, body)
        return body

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Query | None = None,
        timeout: float | None = None,
    ) -> tuple[int, JsonValue]:
        """The answer's status and its JSON (None for an empty body)."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        limit = timeout or self.timeout_s
        try:
            r = self._http.request(method, path, json=json, params=params, timeout=limit)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.TimeoutException) as exc:
            raise transport_error(exc, self.url, f"{method} {path}", limit) from exc
        if r.status_code >= 400:
            raise self._error(r, method, path)
        return r.status_code, (r.json() if r.content else None)

    def _error(self, r: httpx.Response, method: str, path: str) -> Exception:
        return api_error(r, self.url, method, path)

    # ---- tasks ---------------------------------------------------------------------
    def submit(
        self,
        task_type: str,
        payloads: JsonObject | Sequence[JsonObject],
        *,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        max_retries: int | None = None,
        labels: JsonObject | None = None,
        meta_data: JsonObject | None = None,
        enqueue: bool = True,
    ) -> TaskHandle | BatchHandle:
        """One payload → one task (TaskHandle); a list → one batch (BatchHandle).

        ``labels``: your own JSON for the task (``meta_data`` is its older name; the
        system's keys in it are refused)."""

        def spec(payload: JsonObject, i: int | None) -> TaskSpec:
            named = name if i is None or name is None else f"{name}[{i}]"
            return task_spec(
                task_type,
                payload,
                enqueue=enqueue,
                name=named,
                tags=tags,
                max_retries=max_retries,
                labels=labels,
                meta_data=meta_data,
            )

        if isinstance(payloads, dict):
            row = self._checked(answers.is_task, "POST", "tasks", json=spec(payloads, None))
            return TaskHandle(self, str(row.get("task_id")), row)
        specs = [spec(p, i) for i, p in enumerate(payloads)]
        body = self._checked(
            answers.is_batch_answer,
            "POST",
            "tasks/batch",
            json={"tasks": specs, "enqueue": enqueue},
        )
        return BatchHandle(self, body["batch_id"], body["task_ids"])

    def submit_simulate(
        self,
        circuits: Any,
        *,
        shots: int = 1024,
        seed: int | None = None,
        method: str | None = None,
        noise: dict[str, float] | None = None,
        observables: Sequence[Any] | None = None,
        parameter_bindings: Sequence[dict[str, float]] | None = None,
        memory: bool = False,
        statevector: bool = False,
        probabilities: bool = False,
        device: str | None = None,
        time_limit_s: float | None = None,
        chunk: int | None = None,
        **task: Any,
    ) -> TaskHandle | BatchHandle:
        """Aer runs of each circuit. ``chunk``: a sweep, ``parameter_bindings`` of one
        circuit split over tasks of at most ``chunk`` bindings, always one batch."""
        opts = {
            "shots": shots,
            "seed": seed,
            "method": method,
            "noise": noise,
            "observables": list(observables) if observables else None,
            "parameter_bindings": list(parameter_bindings) if parameter_bindings else None,
            "memory": memory or None,
            "statevector": statevector or None,
            "probabilities": probabilities or None,
            "device": device,
            "time_limit_s": time_limit_s,
        }
        if chunk is not None:
            return self.submit(SIMULATE.name, sweep_payloads(circuits, opts, chunk), **task)
        return self.submit(SIMULATE.name, task_payloads(circuits, opts), **task)

    def submit_convert(
        self,
        circuits: Any,
        *,
        profile: str = "base",
        module_name: str | None = None,
        parameter_bindings: dict[str, float] | Sequence[dict[str, float]] | None = None,
        verify: str | None = None,
        verify_shots: int | None = None,
        verify_seed: int | None = None,
        time_limit_s: float | None = None,
        **task: Any,
    ) -> TaskHandle | BatchHandle:
        """QIR for each circuit. ``parameter_bindings``: one dict (one module) or a list
        (one module per binding, in one task); ``verify``: ``"auto"`` (the default: execute
        the module in qir-runner when small enough), ``"execute"`` or ``"static"``
        (docs/message-format.md)."""
        bindings = (
            list(parameter_bindings)
            if parameter_bindings is not None and not isinstance(parameter_bindings, dict)
            else parameter_bindings
        )
        opts = {
            "profile": profile,
            "module_name": module_name,
            "parameter_bindings": bindings,
            "verify": verify,
            "verify_shots": verify_shots,
            "verify_seed": verify_seed,
            "time_limit_s": time_limit_s,
        }
        return self.submit(CONVERT.name, task_payloads(circuits, opts), **task)

    def submit_backend(
        self,
        circuits: Any,
        *,
        device_id: str,
        shots: int = 1024,
        provider_options: JsonObject | None = None,
        time_limit_s: float | None = None,
        **task: Any,
    ) -> TaskHandle | BatchHandle:
        opts = {"device_id": device_id, "shots": shots, "provider_options": provider_options}
        opts["time_limit_s"] = time_limit_s  # task_payloads drops what is None
        return self.submit(BACKEND.name, task_payloads(circuits, opts), **task)

    def get(self, task_id: str) -> TaskJson:
        return self._checked(answers.is_task, "GET", f"tasks/{task_id}")

    def handle(self, task_id: str) -> TaskHandle:
        """The task's handle; ``task_id`` may be its start (at least 8 hex digits, such
        as the 8 characters the table shows) when no other task of yours shares it."""
        digits = id_start(task_id)
        if digits is not None and len(digits) < 32:  # a start, not a whole id
            task_id = self.resolve(task_id, kind="task")["id"]
        return TaskHandle(self, task_id, self.get(task_id))

    def resolve(self, start: str, kind: str | None = None) -> Resolved:
        """``{"kind": "task" | "batch", "id": ...}``: your one task or batch whose id
        starts with ``start`` (``kind`` keeps one of the two); ApiError 404 for none,
        422 ``ambiguous_id`` for several."""
        params = {"prefix": start, "kind": kind}
        return self._checked(answers.is_resolved, "GET", "tasks/resolve", params=params)

    def array(self, task_id: str, name: str, *, progress: bool | None = None) -> Any:
        """One stored result array (e.g. ``"statevector"``, ``"results.2.memory"``) as a
        numpy array, streamed; a progress bar over a few MB unless ``progress`` says."""
        ref = arrays.find_ref(self.get(task_id).get("result"), name)
        if ref is None:
            raise ArrayNotFound(f"task {task_id} stores no result array {name!r}")
        return fetch_array(self, task_id, ref, progress=progress)

    def cancel(self, task_id: str) -> TaskJson:
        return self._checked(answers.is_task, "POST", f"tasks/{task_id}/cancel")

    def retry(self, task_id: str) -> TaskJson:
        return self._checked(answers.is_task, "POST", f"tasks/{task_id}/retry")

    def tasks(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        batch_id: str | None = None,
        name: str | None = None,
        limit: int = 100,
        include: Sequence[str] = (),
    ) -> list[TaskJson]:
        """Newest first, up to ``limit`` rows (pages of 1,000 under the hood). Rows leave
        out ``payload`` and ``result`` unless ``include`` names them."""
        if status is not None and not isinstance(status, str):
            status = ",".join(status)
        out: list[TaskJson] = []
        cursor = None
        page_rows = 1000
        while len(out) < limit:
            asked = min(page_rows, limit - len(out))
            params = {
                "status": status or None,
                "task_type": task_type,
                "batch_id": batch_id,
                "name": name,
                "limit": asked,
                "cursor": cursor,
                "include": ",".join(include) or None,
            }
            try:
                page = self._checked(answers.is_tasks_page, "GET", "tasks", params=params)
            except ApiError as exc:
                # Results too large for one page: the server names the rows that fit.
                fit = exc.detail.get("maximum") if exc.detail.get("limit") == "page_bytes" else None
                if not isinstance(fit, int) or not 1 <= fit < asked:
                    raise
                page_rows = fit
                continue
            out += page["tasks"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return out

    def counts(self, batch_id: str | None = None) -> dict[str, int]:
        params = {"batch_id": batch_id}
        return dict(
            self._checked(answers.is_counts, "GET", "tasks/counts", params=params)["counts"]
        )

    def events(
        self,
        after: str | None = None,
        timeout_s: float = POLL_S,
        statuses: Iterable[str] | None = None,
    ) -> EventsPage:
        """One long poll: ``{"events": [...], "cursor": id}`` (pass cursor back as after);
        ``statuses`` keeps only events with those statuses."""
        params: dict[str, str | float | None] = {"after": after, "timeout_s": timeout_s}
        if statuses is not None:
            params["status"] = ",".join(sorted(statuses))
        poll = timeout_s + 15
        try:
            return self._checked(
                answers.is_events_page, "GET", "events", params=params, timeout=poll
            )
        except ApiError as exc:
            if after is None or exc.status != 422 or exc.detail.get("field") != "after":
                raise
        # A cursor the server no longer accepts (it restarted without a configured
        # QTASKDIST_EVENTS_CURSOR_SECRET): from now on; waiters re-check on every poll.
        params["after"] = None
        return self._checked(answers.is_events_page, "GET", "events", params=params, timeout=poll)

    def health(self) -> HealthJson:
        return self._checked(answers.is_health, "GET", "health")

    # ---- waiting -------------------------------------------------------------------
    def wait_for(
        self,
        check: Callable[[], tuple[int, int]],
        relevant: Callable[[EventJson], bool],
        *,
        timeout_s: float | None = None,
        progress: bool = False,
        desc: str = "tasks",
    ) -> None:
        """Block until ``check()`` says (done, total) with done == total (:mod:`.waiting`)."""
        waiting.wait_for(self, check, relevant, timeout_s=timeout_s, progress=progress, desc=desc)
