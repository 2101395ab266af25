"""Result arrays (statevector, probabilities, memory): when they stay inline, how large
ones are encoded (zstd-compressed ``.npy`` bytes), their summaries, and the size limit.

Pure logic shared by the worker's job processes (encode), the worker (store), the server
(stream) and the notebook client (decode); no I/O other than the files and streams given.
The format is described in docs/message-format.md ("Large results").
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeGuard

import numpy as np
import zstandard

from qtaskdist_jupyter.core.errors import ResultTooLarge
from qtaskdist_jupyter.core.jsontypes import JsonMap, JsonObject

# An array whose inline JSON would exceed this stays out of the row. A statevector of up
# to 10 qubits (1,024 amplitudes as [re, im] pairs, ~45 KB of JSON) stays inline; so do
# the nonzero probabilities of most small circuits and the memory of 1,024 shots on up to
# ~60 clbits.
INLINE_JSON_MAX_BYTES = 64 * 1024
# Rough JSON bytes per element, to decide without serializing.
_JSON_BYTES = {"statevector": 45, "probabilities": 30}
ENCODING = "npy+zstd"
# Stored chunk size (compressed bytes): bounds the memory of whoever writes or reads one.
CHUNK_BYTES = 1 << 20
# Elements encoded / scanned per slice: bounds the extra memory next to the array itself.
_SLICE_ELEMS = 1 << 20
TOP_K = 8
ZSTD_LEVEL = 3
ARRAY_KEYS = ("statevector", "probabilities", "memory", "counts")
NPY_MEDIA_TYPE = "application/x-npy"
ZSTD_MEDIA_TYPE = "application/zstd"


# ---- size limit -------------------------------------------------------------------------
def result_bytes(payload: JsonMap, num_qubits: int, num_clbits: int) -> dict[str, int]:
    """Uncompressed bytes of each array a simulate task would return (for all bindings)."""
    bindings = payload.get("parameter_bindings")
    runs = (len(bindings) if isinstance(bindings, (list, dict)) else 0) or 1
    shots = payload.get("shots", 1024)
    shots = int(shots) if isinstance(shots, (int, float)) else 1024  # validated: an int
    out: dict[str, int] = {}
    if payload.get("statevector"):
        out["statevector"] = runs * 16 * (1 << num_qubits)
    if payload.get("probabilities"):
        out["probabilities"] = runs * 8 * (1 << num_qubits)
    if payload.get("memory"):
        out["memory"] = runs * shots * max(1, num_clbits)
    if num_clbits:
        out["counts"] = runs * counts_bytes_bound(shots, num_clbits)
    return out


def counts_bytes_bound(shots: int, num_clbits: int) -> int:
    """The most JSON bytes a counts map of ``shots`` over ``num_clbits`` can take: at most
    min(shots, 2^clbits) keys, each of at most 2·clbits - 1 characters (clbits, and a space
    between registers), quoted, with its count and separators."""
    keys = min(shots, 1 << min(num_clbits, 64))
    return keys * (2 * num_clbits - 1 + len(str(shots)) + 6)


def check_result_size(
    payload: JsonMap,
    num_qubits: int,
    num_clbits: int,
    max_bytes: int,
    *,
    counts: bool = True,
) -> None:
    """ResultTooLarge (one line, naming the limit) when the arrays, and the bound on the
    counts (``counts``: at submit; a job counts what Aer returned, check_counts_size),
    would exceed it."""
    sizes = result_bytes(payload, num_qubits, num_clbits)
    if not counts:
        sizes.pop("counts", None)
    total = sum(sizes.values())
    if total <= max_bytes:
        return
    what = ", ".join(f"{k} {human_bytes(v)}" for k, v in sizes.items())
    raise ResultTooLarge(
        f"the result would be {human_bytes(total)} ({what} for {num_qubits} qubits); "
        f"QTASKDIST_MAX_RESULT_BYTES is {human_bytes(max_bytes)}",
        limit="max_result_bytes",
        value=total,
        maximum=max_bytes,
        field="payload",
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


# ---- the inline / stored decision (job process) ----------------------------------------
def statevector_part(
    sv: np.ndarray, num_qubits: int, spool_dir: str | None
) -> list[list[float]] | JsonObject:
    if sv.size * _JSON_BYTES["statevector"] <= INLINE_JSON_MAX_BYTES:
        return [[float(z.real), float(z.imag)] for z in sv]
    return spill(np.asarray(sv, dtype="<c16"), spool_dir, top=top_states(sv, num_qubits))


def probabilities_part(
    probs: np.ndarray, num_qubits: int, spool_dir: str | None
) -> dict[str, float] | JsonObject:
    # Counted before listed: the indexes of a dense 2^25 array would be 256 MiB more.
    if np.count_nonzero(probs > 1e-15) * _JSON_BYTES["probabilities"] <= INLINE_JSON_MAX_BYTES:
        nonzero = np.flatnonzero(probs > 1e-15)
        return {format(int(k), f"0{num_qubits}b"): float(probs[k]) for k in nonzero}
    return spill(np.asarray(probs, dtype="<f8"), spool_dir, top=top_states(probs, num_qubits))


def memory_part(memory: list[str], spool_dir: str | None) -> list[str] | JsonObject:
    width = max((len(m) for m in memory), default=0)
    if len(memory) * (width + 3) <= INLINE_JSON_MAX_BYTES:
        return list(memory)
    arr = np.array(memory, dtype=f"S{max(width, 1)}")
    return spill(arr, spool_dir, first=[m for m in memory[:TOP_K]])


def top_states(values: np.ndarray, num_qubits: int, k: int = TOP_K) -> list[JsonObject]:
    """The ``k`` basis states of largest probability, scanned in slices so only ``k``
    candidates per slice are kept next to the array."""
    cands: list[tuple[float, int]] = []
    for start in range(0, values.size, _SLICE_ELEMS):
        part = values[start : start + _SLICE_ELEMS]
        p = np.abs(part) ** 2 if np.iscomplexobj(part) else np.asarray(part, dtype=float)
        idx = np.argpartition(p, -k)[-k:] if p.size > k else np.arange(p.size)
        cands += [(float(p[i]), start + int(i)) for i in idx]
    best = sorted(cands, key=lambda c: (-c[0], c[1]))[:k]
    out: list[JsonObject] = []
    for prob, i in best:
        entry: JsonObject = {"bitstring": format(i, f"0{num_qubits}b"), "probability": prob}
        if np.iscomplexobj(values):
            entry["amplitude"] = [float(values[i].real), float(values[i].imag)]
        out.append(entry)
    return out


@dataclass
class _Counting:
    """A binary sink that hashes and counts what is written through it."""

    fp: IO[bytes]
    written: int = 0

    def write(self, b: Any) -> int:
        n = self.fp.write(b)
        self.written += len(b)
        return n


def spill(array: np.ndarray, spool_dir: str | None, **summary: Any) -> JsonObject:
    """Write ``array`` as zstd-compressed ``.npy`` bytes to a new file in ``spool_dir`` (the
    directory the worker created for its job processes) and describe it; the worker moves
    the file into PostgreSQL and replaces ``file`` with the stored reference."""
    if not spool_dir:
        raise RuntimeError("no spool directory: large arrays need a worker's job process")
    name = os.urandom(16).hex() + ".npy.zst"
    path = os.path.join(spool_dir, name)
    digest = hashlib.sha256()
    with open(path, "xb") as raw:
        sink = _Counting(raw)
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        # zstandard takes any object with write(); its stubs say IO[bytes].
        writer = compressor.stream_writer(sink, closefd=False)  # pyright: ignore[reportArgumentType]
        with writer as zw:
            head = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                head, np.lib.format.header_data_from_array_1_0(array)
            )
            digest.update(head.getvalue())
            zw.write(head.getvalue())
            npy_bytes = len(head.getvalue()) + array.nbytes
            flat = array.reshape(-1)
            for start in range(0, flat.size, _SLICE_ELEMS):
                piece = np.ascontiguousarray(flat[start : start + _SLICE_ELEMS]).data
                piece = piece.cast("B")
                digest.update(piece)
                zw.write(piece)
    return {
        "$array": None,
        "file": name,
        "encoding": ENCODING,
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "nbytes": int(array.nbytes),
        "npy_bytes": int(npy_bytes),
        "stored_bytes": int(sink.written),
        "sha256": digest.hexdigest(),
        **summary,
    }


# ---- references in a result -------------------------------------------------------------
def is_ref(value: object) -> TypeGuard[dict[str, Any]]:
    """Is ``value`` (read from a result) an array's description (spilled or stored)?
    (The notebook's display reads one's summary keys without narrowing them: Any-valued.)"""
    return isinstance(value, dict) and "$array" in value


def refs(result: object) -> Iterator[tuple[str, JsonObject]]:
    """(name, descriptor) of each stored array: ``statevector`` or ``results.3.memory``."""
    if not isinstance(result, dict):
        return
    for key in ARRAY_KEYS:
        if is_ref(ref := result.get(key)):
            yield key, ref
    for i, part in enumerate(result.get("results") or []):
        if isinstance(part, dict):
            for key in ARRAY_KEYS:
                if is_ref(ref := part.get(key)):
                    yield f"results.{i}.{key}", ref


def find_ref(result: object, name: str) -> JsonObject | None:
    return next((ref for n, ref in refs(result) if n == name), None)


# ---- decoding (server stream, client) ---------------------------------------------------
class _Fed:
    """The decompressor's source: bytes appended as stored chunks arrive."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        n = len(self.buf) if n < 0 else n
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class NpyStream:
    """A stored frame in, its ``.npy`` bytes out, at most ``size`` bytes per :meth:`take`.

    Memory stays bounded whatever the compression ratio (one zstd RLE block turns 4 bytes
    into 128 KiB, so a uniform statevector's frame of a few KB decompresses to gigabytes):
    the caller keeps :attr:`buffered` above one stored chunk while chunks remain, then
    takes. Output stops only where the input ends.
    """

    def __init__(self, read_size: int = 64 * 1024) -> None:
        self._src = _Fed()
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            # zstandard takes any object with read(); its stubs say IO[bytes].
            self._src,  # pyright: ignore[reportArgumentType]
            read_size=read_size,
        )

    @property
    def buffered(self) -> int:
        return len(self._src.buf)

    def feed(self, data: bytes) -> None:
        self._src.buf += data

    def take(self, size: int = CHUNK_BYTES) -> bytes:
        return bytes(self._reader.read(size))


class _IterReader(io.RawIOBase):
    """A readable binary file over an iterator of byte chunks (an HTTP body)."""

    def __init__(self, chunks: Iterable[bytes], on_read: Callable[[int], object] | None) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
            if self._on_read is not None:
                self._on_read(len(self._buf))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Hashing:
    def __init__(self, fp: Any) -> None:
        self.fp = fp
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fp.read(n)
        self.digest.update(data)
        return bytes(data)

    def readinto(self, view: memoryview) -> int:
        n = self.fp.readinto(view)
        self.digest.update(view[:n])
        return int(n)


def decode(
    chunks: Iterable[bytes],
    ref: JsonMap,
    on_read: Callable[[int], object] | None = None,
) -> np.ndarray:
    """The array of a stored reference from its compressed bytes, streamed: the only
    full-size allocation is the array itself. ValueError if the bytes do not match."""
    source = _IterReader(chunks, on_read)
    # zstandard takes any object with read(); its stubs say IO[bytes].
    raw = zstandard.ZstdDecompressor().stream_reader(source)  # pyright: ignore[reportArgumentType]
    fp = _Hashing(raw)
    version = np.lib.format.read_magic(fp)
    if version != (1, 0):
        raise ValueError(f"unexpected .npy version {version}")
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    if dtype.hasobject:
        raise ValueError("object arrays are never stored")
    arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = arr.reshape(-1, order="A").data.cast("B") if arr.size else memoryview(b"")
    pos = 0
    while pos < len(view):
        n = fp.readinto(view[pos:])
        if not n:
            raise ValueError(f"the array's bytes ended after {pos} of {len(view)}")
        pos += n
    if fp.digest.hexdigest() != ref.get("sha256"):
        raise ValueError("the array's sha256 does not match its reference")
    return arr
