"""A report as a list of blocks, written two ways: Markdown (summary.md, images as links) and
one self-contained HTML file (images embedded as base64 PNG: it can be mailed or archived
alone, with nothing to fetch)."""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

from covid_tl.core.formatting import markdown_table as table_lines
from covid_tl.core.formatting import number


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph; `code` in backticks is kept as code. A note stands out in both outputs."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    columns: Sequence[str]


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str


Block = Union[Heading, Text, Table, Image]

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:0.2em 0.5em;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
.note{background:#fff4d6;border-left:4px solid #e0a800;padding:0.5em 1em}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#555}
code{background:#f4f4f4;padding:0 0.2em}"""


def cell(value: Any) -> str:
    """A table cell: numbers through formatting.number (the one formatter), missing as its `-`."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return number(None)
    return number(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def markdown_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """formatting.markdown_table of a DataFrame's columns, each cell through cell()."""
    return "\n".join(table_lines(list(columns), [[cell(row[c]) for c in columns] for _, row in frame.iterrows()]))


def markdown(blocks: Sequence[Block], base: Path) -> str:
    """Markdown with image links relative to `base` (the folder the file is written to)."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Text):
            parts.append(f"> **Note:** {block.text}" if block.note else block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block.frame, block.columns))
        else:
            target = block.path.relative_to(base) if block.path.is_relative_to(base) else block.path
            parts.append(f"![{block.caption}]({target.as_posix()})")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _html_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell(row[c]))}</td>" for c in columns) + "</tr>"
                   for _, row in frame.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    caption = html.escape(image.caption)
    return (f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def html_page(blocks: Sequence[Block], title: str) -> str:
    """One HTML file: inline style, tables, PNGs as data URIs; no external reference."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f'<p class="note"><strong>Note:</strong> {_inline(block.text)}</p>' if block.note
                        else f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            body.append(_html_table(block.frame, block.columns))
        else:
            body.append(_html_image(block))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
