"""Report sections and their rendering to Markdown and to a self-contained HTML page (figures inlined as base64)."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em;display:block;max-width:100%;overflow-x:auto}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}li{margin:0.3em 0}"""


@dataclass
class Section:
    """A report section: paragraphs, a bullet list, tables and figures (caption, PNG path), in that order."""

    title: str
    text: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def render_markdown(title: str, sections: list[Section], root: Path) -> str:
    """Markdown with pipe tables and figures linked relative to `root`."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts.extend(section.text)
        if section.bullets:
            parts.append("\n".join(f"- {bullet}" for bullet in section.bullets))
        parts.extend(pipe_table(table) for table in section.tables)
        parts.extend(f"![{caption}]({os.path.relpath(path, root)})" for caption, path in section.figures)
    return "\n\n".join(parts) + "\n"


def pipe_table(table: pd.DataFrame) -> str:
    """`table` as a Markdown pipe table, a `|` inside a cell or header escaped as `\\|` (GitHub Flavored Markdown's
    table rule), so that arm labels such as `arithmetic | estimator=group_mean` stay in one cell."""
    def escape(value: object) -> object:
        return value.replace("|", "\\|") if isinstance(value, str) else value

    escaped = table.rename(columns=escape).map(escape)
    return escaped.to_markdown(index=False, disable_numparse=True)


def inline(text: str) -> str:
    """Escaped HTML of a Markdown paragraph, with `**bold**` and `code` spans kept."""
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def render_html(title: str, sections: list[Section], root: Path | None = None) -> str:
    """A standalone HTML page: the same content, every figure embedded as a data URI (so `root`, taken for symmetry
    with `render_markdown`, is not needed)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body.extend(f"<p>{inline(text)}</p>" for text in section.text)
        if section.bullets:
            body.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in section.bullets) + "</ul>")
        body.extend(table.to_html(index=False, border=0, na_rep="") for table in section.tables)
        for caption, path in section.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
