"""The notebooks run top to bottom on tiny data (nbclient, a real kernel), and are committed
without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from vltr.analysis.execute import execute_notebook
from vltr.analysis.execute import main as run_notebooks
from vltr.data.store import FeatureStore

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, cwd: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    return execute_notebook(NOTEBOOKS / name, cwd=cwd, env=env, timeout=300)


def outputs_of_type(nb: nbformat.NotebookNode, output_type: str) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == output_type]


def test_committed_notebooks_have_no_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["01_longtail_dataset.ipynb", "02_compare_methods.ipynb",
                     "03_imbalance_sweep.ipynb"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, name


@pytest.mark.e2e
def test_dataset_notebook_through_the_runner(tiny_store: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"VLTR_STORE": str(tiny_store), "VLTR_HEAD_MIN": "30",
                       "VLTR_TAIL_MAX": "10"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    source = (NOTEBOOKS / "01_longtail_dataset.ipynb").read_bytes()
    assert run_notebooks([str(NOTEBOOKS / "01_longtail_dataset.ipynb"), "--out", "out"]) == 0
    assert (NOTEBOOKS / "01_longtail_dataset.ipynb").read_bytes() == source  # untouched
    nb = nbformat.read(tmp_path / "out" / "01_longtail_dataset.ipynb", as_version=4)
    text = str(outputs_of_type(nb, "execute_result")[0]["data"]["text/plain"])
    assert "'num_classes': 10" in text and "'imbalance_ratio': 0.1" in text
    shown = outputs_of_type(nb, "display_data")
    assert any("image/png" in o["data"] for o in shown)  # the distribution figure
    n_test = int(FeatureStore(tiny_store).class_counts("test").sum())
    assert any(f"| test | {n_test} | 0 |" in o["data"].get("text/markdown", "") for o in shown)


@pytest.mark.e2e
def test_compare_and_sweep_notebooks(tiny_sweep: Path, tmp_path: Path) -> None:
    env = {"VLTR_RUNS": str(tiny_sweep), "VLTR_SWEEP": str(tiny_sweep)}
    nb = execute("02_compare_methods.ipynb", tmp_path, env)
    printed = "".join(o["text"] for o in outputs_of_type(nb, "stream"))
    assert "6 runs (2 failed)" in printed
    tables = [o["data"]["text/markdown"] for o in outputs_of_type(nb, "display_data")
              if "text/markdown" in o["data"]]
    assert "| method | aggregator | imbalance_ratio |" in tables[0]
    nb = execute("03_imbalance_sweep.ipynb", tmp_path, env)
    tables = [o["data"]["text/markdown"] for o in outputs_of_type(nb, "display_data")
              if "text/markdown" in o["data"]]
    assert tables[0].startswith("**mAP**") and tables[1].startswith("**mAP_tail**")
    assert "| 0.2 |" in tables[0]
    images = [o for o in outputs_of_type(nb, "display_data") if "image/png" in o["data"]]
    assert images  # the two sweep plots
