"""Stored result arrays, streamed: ``GET tasks/{id}/result/{name}``."""

from __future__ import annotations

from tornado.iostream import StreamClosedError

from qtaskdist_jupyter.core import arrays
from qtaskdist_server.api import params as qp

from .base import QtaskdistHandler

# encoding (one of params.ARRAY_ENCODINGS) → content type, the reference's size key (the
# Content-Length), file suffix.
_FORMATS = {
    "npy": (arrays.NPY_MEDIA_TYPE, "npy_bytes", ".npy"),
    "zstd": (arrays.ZSTD_MEDIA_TYPE, "stored_bytes", ".npy.zst"),
}


class ResultArrayHandler(QtaskdistHandler):
    """One stored array as ``.npy`` bytes (``application/x-npy``), or with
    ``?encoding=zstd`` as stored (``application/zstd``, a zstd frame of the same bytes);
    both with a Content-Length. Streamed: a few MiB in memory, whatever the array's size."""

    async def get(self, task_id: str, name: str) -> None:
        tid = self.task_id(task_id)
        encoding = self.params(qp.ResultParams).encoding
        media, size_key, suffix = _FORMATS[encoding]
        ref = await self.service.array_ref(tid, self.owner, name)
        self.set_header("Content-Type", media)  # before the first flush sends the headers
        self.set_header("Content-Length", str(ref[size_key]))
        self.set_header("ETag", f'"{ref["sha256"]}"')
        self.set_header("Content-Disposition", f'attachment; filename="{tid}-{name}{suffix}"')
        try:
            async for piece in self.service.iter_array(tid, name, ref, npy=encoding == "npy"):
                self.write(piece)
                await self.flush()
        except StreamClosedError:
            return
        # Both hosts' base classes (jupyter_server's APIHandler, service_host's) take
        # set_content_type; tornado's RequestHandler, which pyright sees, does not.
        self.finish(set_content_type=media)  # pyright: ignore[reportCallIssue]
