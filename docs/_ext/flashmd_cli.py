"""``.. flashmd-cli::``: the command-line reference, generated from the real parser.

For ``flashmd`` and each of its subcommands, one section: the command's one-line help and a
literal block of exactly what ``flashmd COMMAND --help`` prints (``format_help()`` of the parser
that :func:`flashmd.cli_parser.build_parser` builds, 100 columns wide). The page therefore cannot
disagree with ``--help``. (sphinx-argparse was tried first: it quotes string defaults, writing
``'0/1'`` where ``--help`` writes ``0/1``.)
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

WIDTH = "100"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every subcommand, in the order ``--help`` lists them."""
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]


class FlashmdCli(SphinxDirective):
    """Sections of ``--help`` texts for ``flashmd`` and its subcommands."""

    def run(self) -> list[nodes.Node]:
        from flashmd.cli_parser import build_parser

        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = WIDTH  # argparse wraps at the terminal width it finds
        try:
            parser = build_parser()
            result: list[nodes.Node] = [nodes.literal_block(text=parser.format_help())]
            for name, help_text, sub in _subcommands(parser):
                section = nodes.section(ids=[f"flashmd-{name}"])
                section += nodes.title(text=f"flashmd {name}")
                section += nodes.paragraph(text=help_text[:1].upper() + help_text[1:] + ".")
                section += nodes.literal_block(text=sub.format_help())
                result.append(section)
        finally:
            if previous is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = previous
        return result


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("flashmd-cli", FlashmdCli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
