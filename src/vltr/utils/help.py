"""``--help`` of vltr's argparse commands: rich formatting that keeps example epilogs' layout."""

from __future__ import annotations

import argparse
import textwrap


def help_formatter() -> type[argparse.HelpFormatter]:
    """The ``--help`` formatter of vltr's argparse commands: rich-argparse's (colours on a
    terminal, plain text otherwise), keeping the line breaks of descriptions and example
    epilogs."""
    try:
        from rich_argparse import RawDescriptionRichHelpFormatter
    except ImportError:  # an install without it still gets readable help
        return argparse.RawDescriptionHelpFormatter
    return RawDescriptionRichHelpFormatter


def paragraphs(*texts: str, width: int = 88) -> str:
    """Help text: each argument a paragraph, wrapped to ``width`` (descriptions are printed
    as written by :func:`help_formatter`, which keeps example epilogs' layout)."""
    return "\n\n".join(textwrap.fill(" ".join(t.split()), width) for t in texts)
