"""Stored result arrays, streamed: ``GET tasks/{id}/result/{name}``."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

from qtaskdist_jupyter import arrays
from qtaskdist_jupyter.errors import ArrayNotFound, InvalidInput

from .handlers import _ID, API, QtaskdistHandler


class ResultArrayHandler(QtaskdistHandler):
    """One stored array as ``.npy`` bytes (``application/x-npy``), or with
    ``?encoding=zstd`` as stored (``application/zstd``, a zstd frame of the same bytes);
    both with a Content-Length. One stored chunk is in memory at a time."""

    @web.authenticated
    @authorized
    async def get(self, task_id: str, name: str) -> None:
        tid = self.task_id(task_id)
        encoding = self.get_query_argument("encoding", "npy")
        if encoding not in ("npy", "zstd"):
            raise InvalidInput(f"encoding={encoding!r} must be npy or zstd", field="encoding")
        store = self.service.store
        ref = arrays.find_ref((await store.get(tid, self.owner)).get("result"), name)
        if ref is None:
            raise ArrayNotFound(f"task {tid} stores no result array {name!r}", task_id=str(tid))
        raw = encoding == "zstd"
        self.set_header("Content-Type", arrays.ZSTD_MEDIA_TYPE if raw else arrays.NPY_MEDIA_TYPE)
        self.set_header("Content-Length", str(ref["stored_bytes" if raw else "npy_bytes"]))
        self.set_header("ETag", f'"{ref["sha256"]}"')
        suffix = ".npy.zst" if raw else ".npy"
        self.set_header("Content-Disposition", f'attachment; filename="{tid}-{name}{suffix}"')

        async def stored() -> Any:
            for seq in range(int(ref["chunks"])):
                yield await store.array_chunk(tid, int(ref["attempt"]), name, seq)

        try:
            if raw:
                async for chunk in stored():
                    self.write(chunk)
                    await self.flush()
            else:
                d = arrays.zstd_decompressobj()
                async for chunk in stored():
                    self.write(d.decompress(chunk))
                    await self.flush()
        except StreamClosedError:
            return
        self.finish(set_content_type=arrays.ZSTD_MEDIA_TYPE if raw else arrays.NPY_MEDIA_TYPE)


handlers = [(rf"{API}/tasks/{_ID}/result/(?P<name>[A-Za-z0-9_.]+)", ResultArrayHandler)]
