"""The token scan every QASM program passes before any parser sees it.

Why it exists: qiskit's ``qasm2.loads`` follows an ``include`` of any path and quotes the
included file in its error messages, and both QASM parsers allocate whatever a program
declares. So :func:`scan`, on our own tokens,

* refuses every ``include`` except the built-in ``qelib1.inc`` / ``stdgates.inc``;
* counts the instructions with user gate definitions expanded (memoized per definition,
  never actually expanded), and the declared qubits, so an exponential gate tower or a
  ``qreg q[10^9]`` can be refused before a parser would allocate it.

The limits themselves are applied by :mod:`.codec`, which then hands the text to qiskit.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from qtaskdist_jupyter.core.errors import CircuitError, IncludeRefused

_ALLOWED_INCLUDES = {"qasm2": "qelib1.inc", "qasm3": "stdgates.inc"}
_MAX_NESTING = 200  # brackets; deeper input only serves to exhaust a recursive parser


class Scan(NamedTuple):
    instructions: int  # user gates expanded, registers broadcast
    qubits: int
    clbits: int
    statements: int  # 0: nothing but the OPENQASM header and includes


def scan(source: str, fmt: str) -> Scan:
    """Tokenize ``source``, refuse foreign includes, count; CircuitError on refusal."""
    toks = tokenize(source)
    _check_includes(toks, fmt)
    counter = _Count(toks)
    count, _ = counter.walk(0, True)
    return Scan(count, counter.qubits, counter.clbits, counter.statements)


# ---------------------------------------------------------------- token scan
class Token(NamedTuple):
    kind: str  # "id" | "num" | "str" | "op"
    text: str
    line: int
    col: int


# Line comments end at *any* line break a lexer might honour, so text we treat as code is
# never less than what a parser treats as code (the safe direction for the include check).
# Whitespace and comments are folded (atomically: no backtracking into a comment) into
# each match, which halves the number of matches.
_TOKEN_RE = re.compile(
    r"""(?>(?:[ \t\n\r\f\v\x85\u2028\u2029]+|//[^\n\r\f\v\x85\u2028\u2029]*|/\*.*?\*/)*)
      (?: (?P<end>\Z)
        | (?P<badbc>/\*)
        | (?P<str>"[^"\n\r\\]*"|'[^'\n\r\\]*')
        | (?P<badstr>["'])
        | (?P<id>[^\W\d]\w*)
        | (?P<num>(?:\d[\w.]*|\.\d[\w.]*)(?:(?<=[eE])[+-]\d+)?)
        | (?P<op>->|==|!=|<=|>=|&&|\|\||\+\+|<<|>>|\$\d+|\S))""",
    re.VERBOSE | re.DOTALL,
)


def tokenize(source: str) -> list[Token]:
    toks: list[Token] = []
    line, line_start, prev, depth = 1, 0, 0, 0
    for m in _TOKEN_RE.finditer(source):
        kind = m.lastgroup or "op"
        start = m.start(kind)
        text = m.group(kind)
        nl = source.rfind("\n", prev, start)
        if nl >= 0:
            line += source.count("\n", prev, start)
            line_start = nl + 1
        prev, col = start, start - line_start + 1
        if kind == "end":
            break
        if kind == "badbc":
            raise CircuitError("unterminated block comment", line=line, column=col)
        if kind == "badstr":
            msg = "unterminated string, or one with an escape or line break"
            raise CircuitError(msg, line=line, column=col)
        if kind == "op" and text in "([{)]}":
            depth += 1 if text in "([{" else -1
            if depth > _MAX_NESTING:
                msg = f"brackets nested deeper than {_MAX_NESTING}"
                raise CircuitError(msg, line=line, column=col)
        toks.append(Token(kind, text, line, col))
    return toks


def _check_includes(toks: list[Token], fmt: str) -> None:
    allowed = _ALLOWED_INCLUDES[fmt]
    for i, t in enumerate(toks):
        if t.kind != "id" or t.text != "include":
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        end = toks[i + 2] if i + 2 < len(toks) else None
        if nxt is None or nxt.kind != "str" or end is None or end.text != ";":
            raise IncludeRefused("malformed include statement", line=t.line, column=t.col)
        if nxt.text[1:-1] != allowed:
            msg = f"include {nxt.text} refused: only {allowed!r} may be included in {fmt}"
            raise IncludeRefused(msg, line=t.line, column=t.col)


# ---------------------------------------------------------------- instruction count
_NO_OP = {
    "OPENQASM", "include", "qreg", "creg", "qubit", "bit", "int", "uint", "float", "angle",
    "bool", "duration", "stretch", "complex", "const", "input", "output", "let", "array",
    "extern", "opaque", "defcalgrammar", "break", "continue", "return", "end",
}  # fmt: skip


def _group_end(s: list[Token], k: int) -> int:
    """Index after the bracket group opening at ``k`` (or after the single token there)."""
    if k >= len(s) or s[k].text not in ("(", "[", "{"):
        return k + 1
    depth = 0
    while k < len(s):
        depth += s[k].text in ("(", "[", "{")
        depth -= s[k].text in (")", "]", "}")
        k += 1
        if depth == 0:
            break
    return k


class _Count:
    """Walks the token list once: instructions (user gates expanded), declared bits."""

    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.gates: dict[str, int] = {}  # gate name -> expanded size of its body
        self.regs: dict[str, int] = {}
        self.consts: dict[str, int] = {}
        self.qubits = self.clbits = self.statements = 0

    def walk(self, i: int, top: bool) -> tuple[int, int]:
        total, stmt = 0, []
        toks = self.toks
        while i < len(toks):
            t = toks[i]
            if not stmt and (t.text in ("pragma", "@") or (t.text == "#" and i + 1 < len(toks))):
                while i + 1 < len(toks) and toks[i + 1].line == t.line:  # runs to line end
                    i += 1
                i += 1
            elif t.text == ";":
                total += self._stmt(stmt, top)
                stmt, i = [], i + 1
            elif t.text == "{" and stmt and stmt[0].text == "for" and stmt[-1].text == "in":
                j = _group_end(toks, i)  # a set literal `{1, 2}`, not a block
                stmt.extend(toks[i:j])
                i = j
            elif t.text == "{":
                head, stmt = stmt, []
                if head and head[0].text in ("cal", "defcal"):
                    i = _group_end(toks, i)
                elif head and head[0].text in ("gate", "def") and len(head) > 1:
                    body, i = self.walk(i + 1, False)
                    self.gates[head[1].text] = body
                else:  # control flow or bare scope: its instructions, not the wrapper
                    body, i = self.walk(i + 1, top)
                    total += body
                    self.statements += 1
            elif t.text == "}":
                return total + self._stmt(stmt, top), i + 1
            else:
                stmt.append(t)
                i += 1
        return total + self._stmt(stmt, top), i

    def _size(self, tok: Token) -> int:
        if tok.kind == "num" and tok.text.isdigit():
            return int(tok.text)
        if tok.text in self.consts:
            return self.consts[tok.text]
        msg = "register sizes must be integer literals or integer constants"
        raise CircuitError(msg, line=tok.line, column=tok.col)

    def _declare(self, s: list[Token], top: bool) -> None:
        texts = [t.text for t in s]
        kind = texts[0]
        if kind == "const" and len(s) >= 5 and texts[3] == "=" and s[4].text.isdigit():
            self.consts[texts[2]] = int(s[4].text)
            return
        if kind in ("qreg", "creg") and len(s) >= 5 and texts[2] == "[":
            name, size = texts[1], self._size(s[3])
        elif kind in ("qubit", "bit") and len(s) >= 5 and texts[1] == "[":
            name, size = texts[4], self._size(s[2])
        elif kind in ("qubit", "bit") and len(s) >= 2:
            name, size = texts[1], 1
        else:
            return
        if not top:
            return
        self.regs[name] = size
        if kind in ("qreg", "qubit"):
            self.qubits += size
        else:
            self.clbits += size

    def _stmt(self, s: list[Token], top: bool) -> int:
        while s and s[0].text in ("if", "while", "else", "for"):
            if s[0].text == "else":
                s = s[1:]
            elif s[0].text == "for":
                k = next((k for k, t in enumerate(s) if t.text == "in"), len(s) - 1) + 1
                s = s[_group_end(s, k) :]
            else:
                s = s[_group_end(s, 1) :]
        if not s:
            return 0
        self.statements += s[0].text not in ("OPENQASM", "include")
        if s[0].text in _NO_OP:
            self._declare(s, top)
            if "measure" not in (t.text for t in s):
                return 0
        i = 0
        while i + 1 < len(s) and s[i].kind == "id":  # gate modifiers: ctrl @, pow(2) @ ...
            j = _group_end(s, i + 1) if s[i + 1].text == "(" else i + 1
            if j < len(s) and s[j].text == "@":
                i = j + 1
            else:
                break
        name = s[i].text
        if name == "barrier":
            return 1
        unit = self.gates.get(name, 1)
        mult = 1
        if top:  # QASM broadcasting: `h q;` on a 5-qubit register is five instructions
            piece: list[str] = []
            for t in [*s[i + 1 :], Token("op", ",", 0, 0)]:
                if t.text in (",", "->", "="):
                    if len(piece) == 1 and piece[0] in self.regs:
                        mult = max(mult, self.regs[piece[0]])
                    piece = []
                elif t.text != "measure":
                    piece.append(t.text)
        return unit * mult
