"""The documentation site builds in strict mode: a broken link, a page left out of the
navigation or a missing anchor fails the build (and so this test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# not --quiet: it hides the warnings that strict mode counts
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def test_docs_build_in_strict_mode(tmp_path: Path) -> None:
    proc = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in (
        "index.html",
        "quickstart/index.html",
        "reports/index.html",
        "progress/index.html",
        "notebooks/index.html",
        "cli/index.html",
    ):
        assert (tmp_path / "site" / page).is_file(), page
    assert "paired bootstrap" in (tmp_path / "site" / "reports" / "index.html").read_text()


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "docs" / "index.md", docs / "index.md")
    (docs / "extra.md").write_text("# Extra\n\nSee [the missing page](missing.md).\n")
    config = tmp_path / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0]
    config.write_text(text + "\nnav:\n  - Home: index.md\n  - Extra: extra.md\n")
    proc = build(config, tmp_path / "site")
    assert proc.returncode != 0
    assert "missing.md" in proc.stdout + proc.stderr
