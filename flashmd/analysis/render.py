"""A small document model (headings, paragraphs, tables, images) rendered to Markdown or HTML.

The evaluation report is built once as a list of blocks; both outputs come from the same blocks,
so they cannot disagree.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    path: str
    """Relative to the report's directory."""
    alt: str


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Table | Image | Code


def to_text(table: Table, right_align: bool = False) -> str:
    """``table`` as aligned plain text, a dashed rule under the header."""
    rows = [tuple(table.header), *(tuple(r) for r in table.rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (
            c.rjust(w) if right_align else c.ljust(w) for c, w in zip(cells, widths, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:])])


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = [
                "| " + " | ".join(_md_cell(c) for c in block.header) + " |",
                "|" + "|".join(" --- " for _ in block.header) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{block.alt}]({block.path})")
        else:
            parts.append(f"```\n{block.text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
    "img{max-width:100%}pre{background:#f6f6f6;padding:.5em}"
)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """A standalone HTML page (images linked, not embedded)."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(block, Image):
            path, alt = html.escape(block.path, quote=True), html.escape(block.alt, quote=True)
            body.append(f'<p><img src="{path}" alt="{alt}"></p>')
        else:
            body.append(f"<pre>{html.escape(block.text)}</pre>")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
