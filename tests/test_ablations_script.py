"""scripts/ablations.py: every row's command line composes and validates (nothing is trained)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from vltr.training.builders import check_composition
from vltr.training.config import validate_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablations.py"


def load_script():  # noqa: ANN201 - a module object
    spec = importlib.util.spec_from_file_location("ablations_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_row_composes_and_its_control_exists(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    script = load_script()
    rows = script.rows()
    names = {(r.table, r.name) for r in rows}
    assert len(names) == len(rows)  # row names are unique within a table
    for row in rows:
        assert "," not in row.name  # --rows is comma-separated
        if row.control is not None:
            assert (row.table, row.control) in names, row
    seen: set[tuple[str, ...]] = set()
    for row in rows:
        if tuple(row.overrides) in seen:
            continue
        seen.add(tuple(row.overrides))
        overrides = script.job_overrides(row, 0, 2, 3e-3, tmp_path / "run")
        # the hydra.* and paths.* entries are the runner's; the rest is the row's config
        cfg = compose_cfg(*[o for o in overrides if not o.startswith(("hydra.", "paths."))])
        validate_config(cfg)
        check_composition(cfg)
