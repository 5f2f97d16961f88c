"""The package layers (docs/architecture.md): each package imports only from the layers below it,
and the top level holds packages, not modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vltr"
# lowest first; a package may import its own modules and any package before it
LAYERS = [
    "utils",
    "conf",
    "data",
    "models",
    "strategies",
    "evaluation",
    "methods",
    "training",
    "analysis",
    "cli",
]
MAX_LINES = 350


def _vltr_imports(path: Path) -> set[str]:
    """The vltr packages a module imports (top-level and function-local imports alike)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "vltr" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p.parent != SRC)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_only_downward(path: Path) -> None:
    layer = path.relative_to(SRC).parts[0]
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    upward = _vltr_imports(path) - allowed
    assert not upward, f"{path.relative_to(SRC)} imports {sorted(upward)} from a higher layer"


def test_top_level_holds_packages_only() -> None:
    modules = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert modules == []
    assert sorted(p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__") == (
        sorted(LAYERS)
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_too_long_without_a_reason(path: Path) -> None:
    # a longer module says why at its top ("Longer than ..." in its docstring)
    text = path.read_text()
    if len(text.splitlines()) > MAX_LINES:
        doc = ast.get_docstring(ast.parse(text)) or ""
        assert "Longer than" in doc, f"{path.relative_to(SRC)}: {len(text.splitlines())} lines"
