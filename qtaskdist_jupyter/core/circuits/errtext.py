"""A parser's error text made into one clean line for a user.

qiskit's Rust readers format their errors for a terminal: a banner of box-drawing
characters, a numbered backtrace of ``While parsing field … at crates/qpy/src/formats.rs:109``
frames and, sometimes, ANSI colours. A user needs the first frame's reason, nothing of
our build tree.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_BOX = re.compile(r"[\u2500-\u259f]+")  # box drawing and block elements
_BANNER = re.compile(r"\bBacktrace\b\s*")
_FIRST_FRAME = re.compile(r"(?:^|\s)0:\s*(.*?)(?=\s1:\s|$)", re.DOTALL)
_SOURCE_AT = re.compile(r"\s+at\s+[\w./\\-]+\.(?:rs|py|pyx|c|cc|cpp|h|hpp):\d+(?::\d+)?")
_SOURCE = re.compile(r"[\w./\\-]*[/\\][\w.-]+\.(?:rs|py|pyx|c|cc|cpp|h|hpp)(?::\d+)+")


def one_line(text: str) -> str:
    """``text`` without colours, banners, backtrace frames past the first, source paths."""
    text = _BOX.sub(" ", _ANSI.sub("", text))
    parts = _BANNER.split(text, 1)
    if len(parts) == 2:
        head, rest = parts
        frame = _FIRST_FRAME.search(rest)
        text = f"{head} {frame.group(1) if frame else rest}"
    text = _SOURCE.sub("", _SOURCE_AT.sub("", text))
    text = re.sub(r"\bError:\s*", "", text)
    return " ".join(text.split())
