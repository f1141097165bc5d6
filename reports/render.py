"""Rendering of report sections to Markdown and to a self-contained HTML page (figures inlined as base64)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"""


def render_markdown(title: str, sections: list[Any], root: Path) -> str:
    """Markdown with pipe tables and figures linked relative to `root`."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts.extend(section.text)
        parts.extend(table.to_markdown(index=False, disable_numparse=True) for table in section.tables)
        parts.extend(f"![{caption}]({os.path.relpath(path, root)})" for caption, path in section.figures)
    return "\n\n".join(parts) + "\n"


def render_html(title: str, sections: list[Any], root: Path) -> str:
    """A standalone HTML page: the same content, every figure embedded as a data URI."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body.extend(f"<p>{html.escape(text)}</p>" for text in section.text)
        body.extend(table.to_html(index=False, border=0, na_rep="") for table in section.tables)
        for caption, path in section.figures:
            data = base64.b64encode(Path(path).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">')
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
