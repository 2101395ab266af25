"""The lean tokenizer gives the tokens, lines, columns and refusals of the plain one it
replaced (kept here as the reference), on generated programs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qtaskdist_jupyter.core.circuits import qasm_scan
from qtaskdist_jupyter.core.circuits.qasm_scan import _MAX_NESTING, _TOKEN_RE, Token
from qtaskdist_jupyter.core.errors import CircuitError


def reference(source: str) -> list[Token]:
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
        if kind in ("num", "op") and not text.isascii():
            msg = f"{text[:20]!r} is not a number: digits must be ASCII"
            raise CircuitError(msg, line=line, column=col)
        if kind == "op" and text in "([{)]}":
            depth += 1 if text in "([{" else -1
            if depth > _MAX_NESTING:
                msg = f"brackets nested deeper than {_MAX_NESTING}"
                raise CircuitError(msg, line=line, column=col)
        toks.append(Token(kind, text, line, col))
    return toks


def outcome(fn, source: str):
    try:
        return fn(source)
    except CircuitError as exc:
        return ("refused", exc.message, exc.line, exc.column)


PIECES = ["OPENQASM 2.0;", 'include "qelib1.inc";', "qreg q[3];", "h q[0];", "cx q[0],q[1];",
          "rx(0.5e-3) q[2];", "// note\n", "/* a\nb */", "/* open", '"str', "'x'", "\n", "\r\n",
          " ", "\t", "measure q -> c;", "$12", "١٢", "((((", "))", "{", "}", "1_000", "x.y",
          "->", "==", "\u2028", "#pragma x\n", "@", "π"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=40))
def test_the_lean_tokenizer_equals_the_reference(parts: list[str]) -> None:
    source = "".join(parts)
    assert outcome(qasm_scan.tokenize, source) == outcome(reference, source)


def test_deep_nesting_is_refused_at_the_same_place() -> None:
    source = "h " + "(" * (_MAX_NESTING + 1)
    assert outcome(qasm_scan.tokenize, source) == outcome(reference, source)
    assert outcome(qasm_scan.tokenize, source)[0] == "refused"
