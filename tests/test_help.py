"""Help that teaches: every command's --help is plain text (no reStructuredText or ANSI
leaking), has examples and describes every flag; vltr-train --help lists groups and examples
through the Hydra help template instead of the preset names."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from vltr.cli.data import build_parser as data_parser
from vltr.cli.report import build_parser as report_parser

from conftest import run_cli

LEAKS = ("``", ":mod:", ":func:", ":class:", ":meth:", "\x1b[")


def parsers(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


@pytest.mark.parametrize("build,prog", [(data_parser, "vltr-data"), (report_parser, "vltr-report")])
def test_every_command_has_plain_help_with_examples(build, prog: str) -> None:
    seen = 0
    for path, parser in parsers(build(), prog):
        text = parser.format_help()
        for leak in LEAKS:
            assert leak not in text, (path, leak)
        assert "examples:" in text, path
        assert re.search(rf"^  {prog} ", text, re.M), path  # an example command line
        for action in parser._actions:
            if action.option_strings or not isinstance(action, argparse._SubParsersAction):
                assert action.help and action.help.strip(), (path, action.dest)
        seen += 1
    assert seen >= (9 if prog == "vltr-data" else 4)


def test_vltr_train_help_lists_groups_and_examples_not_presets(tmp_path: Path) -> None:
    proc = run_cli(["vltr-train", "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for leak in LEAKS:
        assert leak not in text
    conf = Path(__file__).resolve().parents[1] / "src" / "vltr" / "conf"
    for group in (
        "dataset",
        "features",
        "aggregator",
        "head",
        "method",
        "strategy",
        "schedule",
        "trainer",
    ):
        options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        line = re.search(rf"^  {group} +(.+(?:\n {{10,}}[^ ].*)*)", text, re.M)
        assert line, group
        listed = re.sub(r"\s+", " ", line.group(1))
        assert all(o in listed for o in options), (group, listed)
    presets = sorted(
        f"{p.parent.name}/{p.stem}"
        for p in (conf / "experiment").glob("*/*.yaml")
        if p.name != "metafile.yaml"
    )
    assert f"{len(presets)} presets by paper" in text
    assert sum(name in text for name in presets) <= 3  # named by pattern, not listed
    examples = text.split("== Examples ==")[1].split("\n\n")[0]
    assert len(re.findall(r"^  vltr-train", examples, re.M)) == 5
    assert "Powered by Hydra" not in text and "== Config ==" not in text
