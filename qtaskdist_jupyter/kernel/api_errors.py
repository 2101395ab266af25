"""The REST API's error answers as the error tree's exceptions (for :class:`.client.Client`):
503 is ServiceUnavailable, a 404 without a task error is a server with no qtaskdist API,
and every other answer an ApiError carrying the body's fields (``field``, ``limit`` …).
No connection is ServerNotFound, no answer in time ServiceUnavailable."""

from __future__ import annotations

import httpx

from qtaskdist_jupyter.core.errors import ApiError, ServerNotFound, ServiceUnavailable
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject
from qtaskdist_jupyter.kernel.discovery import HOW_TO_FIX


def transport_error(exc: httpx.TransportError, url: str, call: str, timeout_s: float) -> Exception:
    """The exception for ``call`` (``"GET tasks"``) to the server at ``url`` that got no
    answer: refused or dropped (ServerNotFound), or none within ``timeout_s``."""
    if isinstance(exc, httpx.TimeoutException):
        return ServiceUnavailable(
            f"the Jupyter server at {url} did not answer {call} within {timeout_s} s"
        )
    return ServerNotFound(
        f"the Jupyter server at {url} is not reachable ({exc}); is it still running? {HOW_TO_FIX}"
    )


def error_message(body: JsonMap, fallback: str) -> str:
    msg = str(body.get("detail") or fallback)
    where = [f"{k} {body[k]}" for k in ("line", "column") if body.get(k) is not None]
    return f"{msg} ({', '.join(where)})" if where and "line" not in msg else msg


def api_error(r: httpx.Response, url: str, method: str, path: str) -> Exception:
    """The exception for an error answer of ``method path`` at the server ``url``."""
    try:
        answer = r.json()
    except ValueError:
        answer = None
    body: JsonObject = answer if isinstance(answer, dict) else {}
    raw_code = body.get("error")
    code = raw_code if isinstance(raw_code, str) else None
    if r.status_code == 503:
        return ServiceUnavailable(
            f"qtaskdist services are down: {body.get('detail') or r.reason_phrase}",
            error=code,
        )
    if r.status_code == 404 and not str(code or "").startswith("task_"):
        return ServerNotFound(
            f"the Jupyter server at {url} has no qtaskdist API ({method} {path} "
            f"answered 404). {HOW_TO_FIX}"
        )
    if r.status_code == 403:
        return ApiError(
            f"the Jupyter server at {url} refused the token (403); pass the server's "
            "token as Client(token=...)",
            status=403,
            error=code or "forbidden",
        )
    extra = {k: v for k, v in body.items() if k not in ("error", "detail", "status")}
    msg = error_message(body, f"{method} {path} answered {r.status_code}")
    return ApiError(msg, status=r.status_code, error=code, **extra)
