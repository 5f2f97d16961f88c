"""Run the notebooks top to bottom and save executed copies elsewhere (the committed notebooks
stay without outputs).

    python -m vltr.analysis.execute notebooks/*.ipynb --out logs/notebooks
    VLTR_SWEEP=logs/train/multiruns/<ts> python -m vltr.analysis.execute \\
        notebooks/03_imbalance_sweep.ipynb --out logs/notebooks

Parameters reach the notebooks through the environment (``VLTR_STORE``, ``VLTR_RUNS``,
``VLTR_SWEEP``, ...; each notebook's first cell lists its own).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vltr.io import atomic_path


def execute_notebook(path: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
                     env: Mapping[str, str] | None = None, timeout: int = 600) -> Any:
    """Execute the notebook at ``path`` in a fresh ``python3`` kernel of this environment,
    with ``env`` added to the kernel's environment and ``cwd`` (default: the notebook's
    folder) as its working directory; return the executed ``nbformat`` notebook. A failing
    cell raises ``nbclient``'s ``CellExecutionError`` naming the cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # the kernel process inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={
            "metadata": {"path": str(cwd or Path(path).resolve().parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vltr.analysis.execute",
                                description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--out", required=True, help="folder for the executed copies")
    args = p.parse_args(argv)
    import nbformat

    for src in map(Path, args.notebooks):
        if not src.is_file():
            print(f"execute: error: {src}: no such notebook", file=sys.stderr)
            return 2
        nb = execute_notebook(src, cwd=Path.cwd())
        dst = Path(args.out) / src.name
        with atomic_path(dst) as tmp:
            nbformat.write(nb, str(tmp))
        print(f"{src} -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
