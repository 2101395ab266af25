"""Re-execute the example notebooks against a real server + worker and store their outputs.

nbval (``scripts/test.sh``) compares each run against the outputs stored in the
``.ipynb`` files, so after editing a notebook run::

    .venv/bin/python notebooks/store_outputs.py            # all five
    .venv/bin/python notebooks/store_outputs.py 02-parameter-sweep.ipynb

It uses the same services and server as the nbval run (``conftest.start_server``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
sys.path.insert(0, str(HERE))

from conftest import start_server  # noqa: E402

from devtools.demo import execute_notebook  # noqa: E402


def drop_widget_state(nb: nbformat.NotebookNode) -> None:
    """No widget models in the stored file: a saved model carries a copy of the widget's
    front-end code, which goes stale with the next change to it. The outputs keep their
    HTML and text snapshot; the live table comes back when the cell runs again. A widget
    with nothing but text beside it (a progress bar) is dropped."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if data.pop(WIDGET_VIEW, None) is not None and set(data) <= {"text/plain"}:
                # A bare widget (a progress bar): its text is its first state ("0/17"),
                # stale above the finished result. Not stored.
                continue
            kept.append(out)
        if "outputs" in cell:
            cell.outputs = kept


def main(names: list[str]) -> int:
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("0*.ipynb"))
    server, stop = start_server(Path(tempfile.mkdtemp(prefix="qtd-store-")))
    try:
        for path in paths:
            t0 = time.monotonic()
            nb = execute_notebook(path, server.kernel_env(), timeout_s=300)
            for cell in nb.cells:
                # Stored as clean as a fresh run: no per-run ids or timings in metadata.
                cell.metadata.pop("execution", None)
            drop_widget_state(nb)
            nbformat.write(nb, path)
            print(f"{path.name}: executed and stored in {time.monotonic() - t0:.1f} s")
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
