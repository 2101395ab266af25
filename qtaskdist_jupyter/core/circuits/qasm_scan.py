"""The token scan every QASM program passes before any parser sees it.

Why it exists: qiskit's ``qasm2.loads`` follows an ``include`` of any path and quotes the
included file in its error messages, and both QASM parsers allocate whatever a program
declares. So :func:`scan`, on our own tokens,

* refuses every ``include`` except the built-in ``qelib1.inc`` / ``stdgates.inc``;
* counts the instructions with user gate definitions expanded (memoized per definition,
  never actually expanded) and ``for`` loops unrolled (their body times the length of
  their literal range; a range it cannot bound is refused), and the declared qubits plus
  the physical ones (``$n`` stands for n + 1 qubits), so an exponential gate tower, a
  ``qreg q[10^9]``, ``h $100000000;`` or a loop of 10^9 iterations is refused before a
  parser would allocate it;
* converts a number only when it is ASCII digits and at most :data:`MAX_DIGITS` long.

A ``while`` loop's body counts once: its iterations depend on measurements, so the
simulator runs it without unrolling it, and the task's time limit bounds how often.

The limits themselves are applied by :mod:`.codec`, which then hands the text to qiskit.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from qtaskdist_jupyter.core.errors import CircuitError, IncludeRefused, LimitExceeded

_ALLOWED_INCLUDES = {"qasm2": "qelib1.inc", "qasm3": "stdgates.inc"}
_MAX_NESTING = 200  # brackets; deeper input only serves to exhaust a recursive parser
# The longest integer literal converted: sizes, constants, loop bounds and ``$n`` above
# this are over every limit anyway, and ``int()`` of 5000 digits is a ValueError.
MAX_DIGITS = 12
_ASCII_INT = re.compile(r"[0-9]+", re.ASCII)


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
    qubits = counter.qubits + _physical_qubits(toks)
    return Scan(count, qubits, counter.clbits, counter.statements)


def int_literal(tok: Token, what: str) -> int:
    """``tok`` as an int: ASCII digits only, at most MAX_DIGITS of them; else refused."""
    text = tok.text.replace("_", "") if tok.kind == "num" else tok.text
    if not _ASCII_INT.fullmatch(text):
        msg = f"{what} must be an integer literal or constant, not {tok.text[:20]!r}"
        raise CircuitError(msg, line=tok.line, column=tok.col)
    if len(text) > MAX_DIGITS:
        msg = f"{what} {text[:8]}... has {len(text)} digits; the limit is {MAX_DIGITS}"
        raise LimitExceeded(
            msg, limit="integer_digits", value=len(text), maximum=MAX_DIGITS, field="circuit"
        )
    return int(text)


def _physical_qubits(toks: list[Token]) -> int:
    """OpenQASM 3 ``$n`` names physical qubit n: a parser allocates qubits 0..n."""
    top = -1
    for t in toks:
        if t.kind == "op" and t.text.startswith("$") and len(t.text) > 1:
            top = max(top, int_literal(Token("num", t.text[1:], t.line, t.col), "physical qubit"))
    return top + 1


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
        | (?P<op>->|==|!=|<=|>=|&&|\|\||\+\+|<<|>>|\$\w+|\S))""",
    re.VERBOSE | re.DOTALL,
)


_RARE = frozenset(("end", "badbc", "badstr"))
_BRACKETS = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
_new_token = tuple.__new__  # Token(...) without the Python-level __new__ of NamedTuple


def tokenize(source: str) -> list[Token]:
    """Every token with its line and column. Lean per token: a small program has hundreds,
    and every QASM submission is scanned at submit and again by the worker."""
    toks: list[Token] = []
    append = toks.append
    line, line_start, depth, prev = 1, 0, 0, 0
    rfind, count = source.rfind, source.count
    for m in _TOKEN_RE.finditer(source):
        kind = m.lastgroup or "op"
        start = m.start(kind)
        # From the previous token on: the search may also skip a character no token
        # matches (a control character), not only the whitespace folded into the match.
        nl = rfind("\n", prev, start)
        if nl >= 0:
            line += count("\n", prev, start)
            line_start = nl + 1
        prev = start
        if kind in _RARE:
            _refuse_token(kind, line, start - line_start + 1)
            break
        text = m.group(kind)
        if kind == "num" or kind == "op":
            if not text.isascii():
                msg = f"{text[:20]!r} is not a number: digits must be ASCII"
                raise CircuitError(msg, line=line, column=start - line_start + 1)
            if kind == "op" and text in _BRACKETS:
                depth += _BRACKETS[text]
                if depth > _MAX_NESTING:
                    msg = f"brackets nested deeper than {_MAX_NESTING}"
                    raise CircuitError(msg, line=line, column=start - line_start + 1)
        append(_new_token(Token, (kind, text, line, start - line_start + 1)))
    return toks


def _refuse_token(kind: str, line: int, col: int) -> None:
    """The end of input returns; an unterminated comment or string is refused."""
    if kind == "badbc":
        raise CircuitError("unterminated block comment", line=line, column=col)
    if kind == "badstr":
        msg = "unterminated string, or one with an escape or line break"
        raise CircuitError(msg, line=line, column=col)


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
_NO_OP = set(
    "OPENQASM include qreg creg qubit bit int uint float angle bool duration stretch complex "
    "const input output let array extern opaque defcalgrammar break continue return end".split()
)


# The tokens that end, open or close a statement or start a pragma (walk's branches).
_MARKS = frozenset(("pragma", "@", "#", ";", "{", "}"))


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
        n = len(toks)
        while i < n:
            t = toks[i]
            if t.text not in _MARKS:  # most tokens: part of the statement
                stmt.append(t)
                i += 1
            elif not stmt and (t.text in ("pragma", "@") or (t.text == "#" and i + 1 < len(toks))):
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
                    _, times = self._flow(head)
                    body, i = self.walk(i + 1, top)
                    total += body * times
                    self.statements += 1
            elif t.text == "}":
                return total + self._stmt(stmt, top), i + 1
            else:
                stmt.append(t)
                i += 1
        return total + self._stmt(stmt, top), i

    def _size(self, tok: Token, what: str = "register size") -> int:
        if tok.kind == "id" and tok.text in self.consts:
            return self.consts[tok.text]
        return int_literal(tok, what)

    def _declare(self, s: list[Token], top: bool) -> None:
        texts = [t.text for t in s]
        kind = texts[0]
        if kind == "const" and len(s) == 5 and texts[3] == "=" and s[4].kind == "num":
            if _ASCII_INT.fullmatch(texts[4].replace("_", "")):
                self.consts[texts[2]] = int_literal(s[4], f"constant {texts[2]}")
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

    def _flow(self, s: list[Token]) -> tuple[list[Token], int]:
        """``s`` without its control-flow prefix, and how often the rest runs: the product
        of the ``for`` ranges' lengths (``if`` / ``while`` / ``else``: once)."""
        times = 1
        while s and s[0].text in ("if", "while", "else", "for"):
            if s[0].text == "else":
                s = s[1:]
            elif s[0].text == "for":
                k = next((k for k, t in enumerate(s) if t.text == "in"), len(s) - 1) + 1
                end = _group_end(s, k)
                times *= self._iterations(s[0], s[k:end])
                s = s[end:]
            else:
                s = s[_group_end(s, 1) :]
        return s, times

    def _iterations(self, at: Token, group: list[Token]) -> int:
        """Length of a ``for`` loop's literal range ``[a:b]`` / ``[a:step:b]`` or set
        ``{x, y, …}``; anything else (a variable, an input) cannot be bounded: refused."""
        if len(group) >= 2 and group[0].text == "{" and group[-1].text == "}":
            depth, items = 0, 1
            for t in group[1:-1]:
                depth += (t.text in "([{") - (t.text in ")]}")
                items += depth == 0 and t.text == ","
            return items
        if len(group) >= 2 and group[0].text == "[" and group[-1].text == "]":
            parts: list[list[Token]] = [[]]
            for t in group[1:-1]:
                parts.append([]) if t.text == ":" else parts[-1].append(t)
            if len(parts) in (2, 3) and all(parts):
                a, *step, b = (self._signed(p) for p in parts)
                step_n = step[0] if step else 1
                if step_n != 0:
                    return max(0, (b - a) // step_n + 1)
        msg = "a for loop must run over a literal range [a:b], [a:step:b] or set {x, y}"
        raise CircuitError(msg, line=at.line, column=at.col)

    def _signed(self, part: list[Token]) -> int:
        sign = -1 if part[0].text == "-" else 1
        rest = part[1:] if part[0].text in "+-" else part
        if len(rest) != 1:
            msg = "a for loop's range bounds must be integer literals or constants"
            raise CircuitError(msg, line=part[0].line, column=part[0].col)
        return sign * self._size(rest[0], "loop bound")

    def _stmt(self, s: list[Token], top: bool) -> int:
        s, times = self._flow(s)
        if not s:
            return 0
        return times * self._instruction(s, top)

    def _instruction(self, s: list[Token], top: bool) -> int:
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
        if i >= len(s):  # modifiers and nothing after them (`ctrl @`): a parser refuses it
            return 1
        name = s[i].text
        if name == "barrier":
            return 1
        unit = self.gates.get(name, 1)
        mult = 1
        if top:  # QASM broadcasting: `h q;` on a 5-qubit register is five instructions
            piece: list[str] = []
            for text in [*(t.text for t in s[i + 1 :]), ","]:
                if text in (",", "->", "="):
                    if len(piece) == 1 and piece[0] in self.regs:
                        mult = max(mult, self.regs[piece[0]])
                    piece = []
                elif text != "measure":
                    piece.append(text)
        return unit * mult
