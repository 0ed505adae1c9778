"""One self-contained HTML page from markdown text and PNG plots: what ``compare.py`` writes beside its
markdown report, so that a reader (or MLflow's artifact view, which shows HTML inline) gets the answer
from one file.

Self-contained means: the plots are embedded as base64 ``data:`` URIs, the CSS is inline, and there is no
script and no reference to anything outside the file. The markdown is converted here by a small converter
that covers what this package writes (headings, paragraphs, pipe tables, bullet and numbered lists, fenced
code, ``**bold**``, ``*italic*``, ```code```); every piece of text is HTML-escaped, so a report that quotes
``<script>`` shows it instead of running it. No dependency: ``markdown`` is not one of the package's.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.45;
       max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #1f2328; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
tr:nth-child(even) td { background: #fbfcfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { background: #f0f2f4; padding: .05em .3em; border-radius: 3px; font-size: .92em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
pre code { background: none; padding: 0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: .88em; }
details { margin: .8em 0; border: 1px solid #d0d7de; border-radius: 6px; padding: .3em .8em; }
summary { cursor: pointer; font-weight: 600; font-size: 1.1em; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .4em 1em; }
nav.toc ul { margin: .2em 0; }
""".strip()


@dataclass
class Collapsible:
    """A ``<details>`` block: a one-line summary, the items shown when opened (text, plots, nested blocks)."""

    summary: str
    items: Sequence[Item] = field(default_factory=list)
    open: bool = False


Item = str | os.PathLike | Collapsible  # markdown text | a PNG/JPEG file to embed | a collapsible block


def write_html_report(out_path: str | os.PathLike, title: str, sections: Iterable[Item]) -> Path:
    """Write ``sections`` (markdown text, image paths, :class:`Collapsible` blocks, in order) as one HTML
    file at ``out_path``; returns the path. Raises FileNotFoundError / ValueError for an image that is
    missing or of a type a browser cannot show inline from a ``data:`` URI here."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_html(title, sections), encoding="utf-8")
    return out_path


def render_html(title: str, sections: Iterable[Item]) -> str:
    """The page as a string (see :func:`write_html_report`)."""
    headings: list[tuple[int, str, str]] = []  # (level, id, text) of every heading
    body = "\n".join(_render_item(item, headings) for item in sections)
    toc = ""
    listed = [h for h in headings if h[0] <= 2]  # the contents list shows h1 and h2
    if len(listed) > 2:  # a short page needs no contents list
        entries = "".join(
            f'<li style="margin-left:{(level - 1) * 1.2}em"><a href="#{anchor}">{text}</a></li>'
            for level, anchor, text in listed
        )
        toc = f'<nav class="toc"><strong>Contents</strong><ul>{entries}</ul></nav>\n'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        f"{toc}{body}\n</body>\n</html>\n"
    )


def _render_item(item: Item, headings: list) -> str:
    if isinstance(item, Collapsible):
        inner = "\n".join(_render_item(i, headings) for i in item.items)
        return (
            f"<details{' open' if item.open else ''}><summary>{_inline(item.summary)}</summary>\n"
            f"{inner}\n</details>"
        )
    if isinstance(item, str):
        return markdown_to_html(item, headings)
    if isinstance(item, os.PathLike):
        return image_figure(Path(item))
    raise TypeError(f"a report section is markdown text, an image path or a Collapsible, not {type(item)}")


def demote_headings(text: str, levels: int = 1) -> str:
    """``text`` with every markdown heading ``levels`` deeper (at most h6), so that a report written to
    stand alone nests under a heading of the page; fenced code is left alone."""
    out, fenced = [], False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and _HEADING.match(line):
            hashes = len(line) - len(line.lstrip("#"))
            line = "#" * min(6, hashes + levels) + line[hashes:]
        out.append(line)
    return "\n".join(out)


def ordered_files(folder: str | os.PathLike, pattern: str, preferred: Sequence[str] = ()) -> list[Path]:
    """The files in ``folder`` matching ``pattern``: the ``preferred`` names first (in that order, those
    that exist), then the rest alphabetically. An absent folder gives an empty list."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = {p.name: p for p in folder.glob(pattern) if p.is_file()}
    first = [found.pop(name) for name in preferred if name in found]
    return first + [found[name] for name in sorted(found)]


def image_figure(path: Path, caption: str | None = None) -> str:
    """A ``<figure>`` with the image embedded as a base64 ``data:`` URI (nothing to fetch)."""
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ValueError(
            f"{path}: cannot embed a {path.suffix or 'suffix-less'} file; give PNG or JPEG images"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the plot to embed in the HTML report does not exist")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = caption if caption is not None else path.stem.replace("_", " ")
    alt = html.escape(caption, quote=True)
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{alt}">'
        f"<figcaption>{alt} ({html.escape(path.name)})</figcaption></figure>"
    )


# --------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)\d+[.)]\s+(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_NUMBER = re.compile(r"^[+\-−]?(\d[\d,]*\.?\d*|\.\d+)([eE][+\-]?\d+)?\s*(%|×|x)?$")
# Bold and italic need a non-space just inside the markers; an italic ``*`` must not touch a word
# character outside, so ``intervention_curve_*.png`` or ``2 * 3`` stay as written.
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")


def markdown_to_html(text: str, headings: list | None = None) -> str:
    """Markdown (the subset in the module docstring) as HTML; every piece of text is escaped.

    ``headings``, when given, collects ``(level, id, html text)`` of each heading (ids number them, so they
    stay unique across calls that share the list)."""
    headings = [] if headings is None else headings
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(s.strip() for s in paragraph))}</p>")
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
        elif _FENCE.match(line):
            flush()
            fence = _FENCE.match(line).group(1)
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                block.append(lines[i])
                i += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(block))}</code></pre>")
            i += 1  # the closing fence (or past the end)
        elif m := _HEADING.match(line):
            flush()
            level, content = len(m.group(1)), _inline(m.group(2))
            anchor = f"s{len(headings) + 1}-{_slug(m.group(2))}"  # numbered: unique on the page
            headings.append((level, anchor, content))
            out.append(f'<h{level} id="{anchor}">{content}</h{level}>')
            i += 1
        elif _is_table_start(lines, i):
            flush()
            header, aligns, body = line, _alignments(lines[i + 1]), []
            i += 2
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                body.append(lines[i])
                i += 1
            out.append(_table(header, body, aligns))
        elif _RULE.match(line):
            flush()
            out.append("<hr>")
            i += 1
        elif _BULLET.match(line) or _NUMBERED.match(line):
            flush()
            html_list, i = _list(lines, i)
            out.append(html_list)
        else:
            paragraph.append(line)
            i += 1
    flush()
    return "\n".join(out)


def _is_table_start(lines: list[str], i: int) -> bool:
    """A header row with pipes, then a separator row with as many cells (GFM's rule)."""
    if "|" not in lines[i] or i + 1 >= len(lines) or not _TABLE_SEPARATOR.match(lines[i + 1]):
        return False
    return len(_cells(lines[i])) == len(_cells(lines[i + 1]))


def _alignments(separator: str) -> list[str]:
    """Column alignments from a table's separator row (``:---``, ``---:``, ``:---:``)."""
    out = []
    for cell in _cells(separator):
        if cell.startswith(":") and cell.endswith(":"):
            out.append("center")
        elif cell.endswith(":"):
            out.append("right")
        elif cell.startswith(":"):
            out.append("left")
        else:
            out.append("")
    return out


def _cells(row: str) -> list[str]:
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(row)]


def _table(header: str, rows: list[str], aligns: list[str]) -> str:
    """A pipe table; numbers without an explicit alignment are right-aligned for reading down a column."""
    head = _cells(header)
    parts = ["<table>", "<thead><tr>"]
    for k, cell in enumerate(head):
        style = f' style="text-align:{aligns[k]}"' if k < len(aligns) and aligns[k] else ""
        parts.append(f"<th{style}>{_inline(cell)}</th>")
    parts.append("</tr></thead>\n<tbody>")
    for row in rows:
        cells = _cells(row)
        cells += [""] * (len(head) - len(cells))  # a short row still fills the table
        parts.append("<tr>")
        for k, cell in enumerate(cells[: len(head)]):
            align = aligns[k] if k < len(aligns) else ""
            if align:
                parts.append(f'<td style="text-align:{align}">{_inline(cell)}</td>')
            elif _NUMBER.match(cell):
                parts.append(f'<td class="num">{_inline(cell)}</td>')
            else:
                parts.append(f"<td>{_inline(cell)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _list(lines: list[str], i: int) -> tuple[str, int]:
    """A bullet or numbered list starting at line ``i`` (items may wrap onto indented lines); returns the
    HTML and the index of the first line after it."""
    ordered = bool(_NUMBERED.match(lines[i])) and not _BULLET.match(lines[i])
    marker = _NUMBERED if ordered else _BULLET
    items: list[list[str]] = []
    while i < len(lines):
        line = lines[i]
        m = marker.match(line)
        if m:
            items.append([m.group(2)])
        elif items and line.strip() and line.startswith((" ", "\t")):
            items[-1].append(line.strip())  # a wrapped item
        else:
            break
        i += 1
    tag = "ol" if ordered else "ul"
    body = "".join(f"<li>{_inline(' '.join(parts))}</li>" for parts in items)
    return f"<{tag}>{body}</{tag}>", i


def _inline(text: str) -> str:
    """Escape, then ``code`` spans (their content untouched), **bold** and *italic*."""
    pieces = re.split(r"(`[^`\n]+`)", text)
    out = []
    for piece in pieces:
        if len(piece) > 1 and piece.startswith("`") and piece.endswith("`"):
            out.append(f"<code>{html.escape(piece[1:-1])}</code>")
        else:
            escaped = html.escape(piece)
            escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
            escaped = _ITALIC.sub(r"<em>\1</em>", escaped)
            out.append(escaped)
    return "".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section"
