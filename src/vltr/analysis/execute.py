"""Run the notebooks top to bottom with papermill.

Each notebook's parameters are its cell tagged ``parameters`` (papermill's convention); values
given here replace them, in a cell papermill adds after it. Parameters a notebook does not
declare are not passed to it, so one command can feed several notebooks.

    python -m vltr.analysis.execute notebooks/*.ipynb --out logs/notebooks
    python -m vltr.analysis.execute notebooks/03_imbalance_sweep.ipynb --out logs/notebooks \\
        -p SWEEP logs/train/multiruns/<time>
    python -m vltr.analysis.execute notebooks/*.ipynb --inplace -p SWEEP logs/notebooks/sweep

``--inplace`` rewrites the notebooks with their outputs (``make notebooks``, the committed
versions); papermill's CLI works as well (``papermill IN.ipynb OUT.ipynb -p SWEEP DIR``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vltr.utils.help import help_formatter, paragraphs
from vltr.utils.io import atomic_path


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters a notebook declares (its ``parameters`` cell), with their defaults."""
    import papermill

    return {name: p["default"] for name, p in papermill.inspect_notebook(str(path)).items()}


def execute_notebook(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: int = 600,
) -> Any:
    """Execute the notebook at ``path`` in a fresh ``python3`` kernel of this environment,
    with ``parameters`` (those it declares) and ``cwd`` (default: the notebook's folder) as its
    working directory; write the executed notebook to ``out`` (atomically) if given and return
    it (an ``nbformat`` notebook). A failing cell raises papermill's
    ``PapermillExecutionError`` naming the cell."""
    import nbformat
    import papermill

    declared = notebook_parameters(path)
    given = {k: v for k, v in (parameters or {}).items() if k in declared}
    nb = papermill.execute_notebook(
        str(path),
        None,
        parameters=given,
        cwd=str(cwd or Path(path).resolve().parent),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=timeout,
        log_output=False,
    )
    for cell in nb.cells:  # papermill's timing metadata would change on every run
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("papermill", None)
    if out is not None:
        with atomic_path(out) as tmp:
            nbformat.write(nb, str(tmp))
    return nb


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m vltr.analysis.execute",
        formatter_class=help_formatter(),
        description=paragraphs(
            "Run notebooks top to bottom with papermill, in this directory, and save the "
            "executed copies (with outputs).",
            "-p NAME VALUE sets a parameter (the notebook's cell tagged parameters); values "
            "are read as Python literals when they parse as one, else as strings.",
        ),
        epilog="examples:\n"
        "  python -m vltr.analysis.execute notebooks/*.ipynb --out logs/notebooks\n"
        "  python -m vltr.analysis.execute notebooks/03_imbalance_sweep.ipynb --out out "
        "-p SWEEP logs/sweeps/grid\n"
        "  python -m vltr.analysis.execute notebooks/*.ipynb --inplace   (make notebooks)",
    )
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="notebooks to run")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="folder for the executed copies")
    where.add_argument(
        "--inplace", action="store_true", help="replace each notebook by its executed version"
    )
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter for the notebooks that declare it",
    )
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    args = p.parse_args(argv)
    import ast

    def value(text: str) -> Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    parameters = {name: value(v) for name, v in args.parameter}
    for src in map(Path, args.notebooks):
        if not src.is_file():
            print(f"execute: error: {src}: no such notebook", file=sys.stderr)
            return 2
        dst = src if args.inplace else Path(args.out) / src.name
        execute_notebook(src, dst, parameters, cwd=Path.cwd(), timeout=args.timeout)
        print(f"{src} -> {dst}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
