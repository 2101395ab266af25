"""Service mode of the extension (``QTASKDIST_SERVICE_URL`` set, under JupyterHub): the
browser's ``{base_url}qtaskdist/api/*`` requests are forwarded to the shared service with
the user's own hub token, and the answer is streamed back as it comes (server-sent
events and long polls included).

Why forward rather than let the page call the service with the hub's OAuth cookie: the
live table then keeps one origin and one code path (the same relative URL, the same
``_xsrf`` rule, no CORS and no OAuth redirect inside a widget), and the identity still
comes from the hub: the single-user server's ``JUPYTERHUB_API_TOKEN`` resolves only to
the user who owns this server, so nothing the user controls here can name anyone else.
This server holds no credential of the data side: no database or Redis URL, no
service token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from tornado import web
from tornado.iostream import StreamClosedError

from qtaskdist_jupyter.core import strictjson

from .extension_base import ExtensionBase

# What goes to the service, and what comes back; hop-by-hop headers and cookies never do.
_REQUEST_HEADERS = ("Content-Type", "Accept", "Last-Event-ID")
_RESPONSE_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Retry-After",
    "ETag",
    "Content-Disposition",
    "X-Accel-Buffering",
)
# A batch body may be this large at the service (QtaskdistApp.max_batch_bytes' default);
# anything declared larger is refused before it is read.
MAX_FORWARD_BYTES = 64 * 1024 * 1024 + 1024 * 1024


class ServiceProxy:
    """The user's side of the shared service: its URL, the user's token, one pool."""

    def __init__(self, service_url: str, hub_token: str) -> None:
        self.api_url = service_url.rstrip("/") + "/qtaskdist/api/"
        self.hub_token = hub_token
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))

    async def close(self) -> None:
        await self.http.aclose()


@web.stream_request_body
class ForwardHandler(ExtensionBase):
    _chunks: list[bytes]
    _size: int = 0
    _pump: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        self._chunks, self._size = [], 0
        declared = self.request.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_FORWARD_BYTES:
            self._answer(413, "payload_too_large", f"the limit is {MAX_FORWARD_BYTES} bytes")
            return
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= MAX_FORWARD_BYTES:
            self._chunks.append(chunk)
        else:
            self._chunks = []

    def _answer(self, status: int, code: str, detail: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(strictjson.dumps({"error": code, "detail": detail}))

    async def _forward(self, path: str) -> None:
        if self._size > MAX_FORWARD_BYTES:
            self._answer(413, "payload_too_large", f"the limit is {MAX_FORWARD_BYTES} bytes")
            return
        self._pump = asyncio.ensure_future(self._stream(path))
        try:
            await self._pump
        except asyncio.CancelledError:
            return  # the browser went away
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            self.log.warning("qtaskdist: the shared service did not answer: %s", exc)
            if not self._headers_written:
                self._answer(503, "service_unavailable", "the qtaskdist service is unreachable")
                return
        except StreamClosedError:
            return
        if not self._finished:
            self.finish()

    async def _stream(self, path: str) -> None:
        # extensionapp is our QtaskdistApp (typed as jupyter_server's ExtensionApp).
        proxy: ServiceProxy = self.extensionapp.proxy  # pyright: ignore[reportAttributeAccessIssue]
        headers = {
            k: self.request.headers[k] for k in _REQUEST_HEADERS if k in self.request.headers
        }
        headers["Authorization"] = f"token {proxy.hub_token}"
        body = b"".join(self._chunks) if self.request.method in ("POST", "PATCH", "PUT") else None
        events = path == "events"
        request = proxy.http.build_request(
            self.request.method or "GET",
            proxy.api_url + path,
            params=self.request.query or None,
            headers=headers,
            content=body,
            # SSE lasts as long as the page; a long poll at most its timeout_s
            timeout=httpx.Timeout(None, connect=10.0) if events else httpx.USE_CLIENT_DEFAULT,
        )
        response = await proxy.http.send(request, stream=True)
        try:
            self.set_status(response.status_code)
            for name in _RESPONSE_HEADERS:
                if name in response.headers:
                    self.set_header(name, response.headers[name])
            async for piece in response.aiter_raw():
                self.write(piece)
                await self.flush()
        finally:
            await response.aclose()

    def on_connection_close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        super().on_connection_close()

    async def get(self, path: str) -> None:
        await self._forward(path)

    async def post(self, path: str) -> None:
        await self._forward(path)

    async def patch(self, path: str) -> None:
        await self._forward(path)

    async def delete(self, path: str) -> None:
        await self._forward(path)


def forward_handlers(api: str) -> list[tuple[str, Any]]:
    return [(rf"{api}/(?P<path>.*)", ForwardHandler)]
