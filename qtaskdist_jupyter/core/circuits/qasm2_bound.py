"""An upper bound of what an OpenQASM 2 program declares, from a few passes of C-speed
string searches, for the server's parse children and a worker's job processes (each
bounded in memory and time).

The token scan (:mod:`.qasm_scan`) counts exactly, but it is Python per token: for a small
program it costs about twice qiskit's parse. Both the server's submit-time check and a
worker (whose limits may be lower than the server's) check the limits before they parse.
:func:`bound` gives counts that are never below the scan's, or None where it cannot tell
cheaply; when the bound is within the limits, so is the exact count, and the scan is
skipped. The program must then also:

* include nothing but ``qelib1.inc``, in the one canonical statement, and mention
  ``include`` nowhere else (a comment too sends it to the scan);
* define no gates (``gate`` / ``opaque`` appear nowhere): without definitions an
  instruction is one per broadcast qubit, so (``;`` + 1) × the largest register bounds
  them;
* declare each register in the plain form ``qreg name[digits];``, with as many matches as
  the text has ``qreg`` / ``creg`` (a declaration in an odd form, or the word in a
  comment, sends it to the scan), with at most ``MAX_DIGITS`` digits;
* nest no brackets (no opening bracket before the previous one closed), and have no
  ``$``, ``{`` or ``}``.

A program over the limits by its bound, or one the bound cannot tell, is scanned: the
scan's refusals name a line and column.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from qtaskdist_jupyter.core.circuits.qasm_scan import MAX_DIGITS

_INCLUDE = 'include "qelib1.inc";'
_WS = r"[ \t\r\n]*"
_DECL = re.compile(
    rf"\b([qc])reg[ \t\r\n]+[A-Za-z_]\w*{_WS}\[{_WS}([0-9]{{1,{MAX_DIGITS}}}){_WS}\]{_WS};",
    re.ASCII,
)
_NESTED = re.compile(r"[(\[][^)\]]*[(\[]")
_WORDS = ("gate", "opaque", "$", "{", "}")


class Bound(NamedTuple):
    instructions: int
    qubits: int
    clbits: int


def bound(source: str) -> Bound | None:
    """Counts never below :func:`.qasm_scan.scan`'s for this OpenQASM 2 program, or None."""
    if source.count("include") != 1 or _INCLUDE not in source:
        return None
    if any(w in source for w in _WORDS) or _NESTED.search(source):
        return None
    sizes: dict[str, list[int]] = {"q": [], "c": []}
    for kind, digits in _DECL.findall(source):
        sizes[kind].append(int(digits))
    if len(sizes["q"]) != source.count("qreg") or len(sizes["c"]) != source.count("creg"):
        return None
    widest = max([1, *sizes["q"], *sizes["c"]])
    # Statements: one per ";", and one more for a last statement without it.
    return Bound((source.count(";") + 1) * widest, sum(sizes["q"]), sum(sizes["c"]))
