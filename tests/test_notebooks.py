"""The notebooks run top to bottom on tiny data (papermill, a real kernel), take their
parameters from a papermill parameters cell, and are committed with the outputs of the
synthetic default (make notebooks): readable without running them, small, no error, no
machine-specific paths."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from vltr.analysis.execute import execute_notebook, notebook_parameters
from vltr.analysis.execute import main as run_notebooks
from vltr.data.store import FeatureStore

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [
    "01_longtail_dataset.ipynb",
    "02_compare_methods.ipynb",
    "03_imbalance_sweep.ipynb",
    "04_predictions.ipynb",
]


def execute(name: str, cwd: Path, parameters: dict) -> nbformat.NotebookNode:
    return execute_notebook(NOTEBOOKS / name, parameters=parameters, cwd=cwd, timeout=300)


def outputs_of_type(nb: nbformat.NotebookNode, output_type: str) -> list[dict]:
    return [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == output_type
    ]


def markdown_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [
        o["data"]["text/markdown"]
        for o in outputs_of_type(nb, "display_data")
        if "text/markdown" in o["data"]
    ]


def test_committed_notebooks_hold_their_outputs_and_a_parameters_cell() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    total = 0
    for name in NAMES:
        path = NOTEBOOKS / name
        total += path.stat().st_size
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0] is code[0], name  # papermill's parameters cell
        assert "os.environ" not in "".join(c.source for c in code), name
        # executed in order, every code cell, without an error
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), name
        assert not outputs_of_type(nb, "error"), name
        images = [o for o in outputs_of_type(nb, "display_data") if "image/png" in o["data"]]
        assert images, name
        text = json.dumps([c.outputs for c in code])
        assert "<Axes" not in text and "/work/" not in text and "/tmp/" not in text, name
    assert total < 1_500_000  # small PNGs, no huge embedded images


def test_parameters_are_read_from_the_parameters_cell() -> None:
    assert notebook_parameters(NOTEBOOKS / "03_imbalance_sweep.ipynb") == {
        "SWEEP": "None",
        "SPLIT": '"test"',
    }
    assert set(notebook_parameters(NOTEBOOKS / "04_predictions.ipynb")) == {
        "RUN_A",
        "RUN_B",
        "SWEEP",
        "VIDEOS",
        "RESAMPLES",
    }


@pytest.mark.e2e
def test_dataset_notebook_through_the_runner(
    tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = (NOTEBOOKS / "01_longtail_dataset.ipynb").read_bytes()
    assert (
        run_notebooks(
            [
                str(NOTEBOOKS / "01_longtail_dataset.ipynb"),
                "--out",
                "out",
                "-p",
                "STORE",
                str(tiny_store),
                "-p",
                "HEAD_MIN",
                "30",
                "-p",
                "TAIL_MAX",
                "10",
                "-p",
                "SWEEP",
                "not declared here",
            ]
        )
        == 0
    )
    assert (NOTEBOOKS / "01_longtail_dataset.ipynb").read_bytes() == source  # untouched
    nb = nbformat.read(tmp_path / "out" / "01_longtail_dataset.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "HEAD_MIN = 30" in injected[0].source and "SWEEP" not in injected[0].source
    text = str(outputs_of_type(nb, "execute_result")[0]["data"]["text/plain"])
    assert "'num_classes': 10" in text and "'imbalance_ratio': 0.1" in text
    shown = outputs_of_type(nb, "display_data")
    assert any("image/png" in o["data"] for o in shown)  # the distribution figure
    n_test = int(FeatureStore(tiny_store).class_counts("test").sum())
    assert any(f"| test | {n_test} | 0 |" in md for md in markdown_outputs(nb))


@pytest.mark.e2e
def test_compare_sweep_and_predictions_notebooks(tiny_sweep: Path, tmp_path: Path) -> None:
    params = {"SWEEP": str(tiny_sweep)}
    nb = execute("02_compare_methods.ipynb", tmp_path, params)
    printed = "".join(o["text"] for o in outputs_of_type(nb, "stream"))
    assert "6 runs (2 failed)" in printed
    assert "| method | aggregator | imbalance_ratio |" in markdown_outputs(nb)[0]
    nb = execute("03_imbalance_sweep.ipynb", tmp_path, params)
    tables = markdown_outputs(nb)
    assert tables[0].startswith("**mAP**") and tables[1].startswith("**mAP_tail**")
    assert "| 0.2 |" in tables[0]
    assert [o for o in outputs_of_type(nb, "display_data") if "image/png" in o["data"]]
    nb = execute("04_predictions.ipynb", tmp_path, {**params, "RESAMPLES": 50})
    printed = "".join(o["text"] for o in outputs_of_type(nb, "stream"))
    assert "A: bce/nonlinear, imbalance ratio 0.2" in printed
    assert "B: focal/nonlinear, imbalance ratio 0.2" in printed
    assert "max |recomputed - saved| score: 0.00" in printed  # load_model, float16 file
    tables = markdown_outputs(nb)
    assert any(t.startswith("| video | labels | A: bce | B: focal |") for t in tables)
    assert any(t.startswith("| metric | A | B | B - A | 95% interval |") for t in tables)
    assert len([o for o in outputs_of_type(nb, "display_data") if "image/png" in o["data"]]) == 2
