"""The table of every option in docs/configuration.md, generated from the settings model:
``python -m qtaskdist_jupyter.core.options_table`` prints it."""

from __future__ import annotations

from qtaskdist_jupyter.core.options import FIELDS, env_var, surfaces


def table() -> str:
    """The Markdown table of every option (docs/configuration.md holds it verbatim)."""
    rows = ["| option | environment | default | on | meaning |", "|---|---|---|---|---|"]
    for name, info in FIELDS.items():
        shown = "" if info.default is None else f"`{info.default!r}`"
        where = ", ".join(surfaces(name)) or "env"
        text = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{env_var(name)}` | {shown} | {where} | {text} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
