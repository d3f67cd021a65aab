"""report.html: report.md as one self-contained page (`harness report DIR --format html`).

A small markdown-to-HTML conversion of the subset `render` writes — headings, paragraphs, lists,
pipe tables, fenced code, raw <details>/<summary> lines, images, links, `code`, **bold**, _italic_
— so the page needs no markdown package. Every figure is inlined as a base64 PNG data URI; the
links to the SVG copies are dropped (they would point outside the page). No script, no external
URL: the page opens offline, from any folder.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

__all__ = ["report_html", "markdown_to_html"]

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1.5rem; color: #222; }
h1, h2, h3 { line-height: 1.25; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; font-size: 90%; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; } pre code { background: none; padding: 0; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""

_SVG_LINK = re.compile(r" ?\(\[SVG\]\([^)]*\.svg\)\)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w\\])_(?!\s)(.+?)(?<!\s)_(?!\w)")


def report_html(md: str, base: Path, *, title: str = "Report") -> str:
    """The page for report.md text `md` whose figures lie under `base` (the results directory)."""
    body = markdown_to_html(_SVG_LINK.sub("", md), base)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def markdown_to_html(md: str, base: Path | None = None) -> str:
    """HTML for the markdown subset the report writes; images under `base` inlined as data URIs."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        i = _block(lines, i, out, base)
    return "\n".join(out)


def _block(lines: list[str], i: int, out: list[str], base: Path | None) -> int:
    """Convert the block starting at line i into `out`; return the index of the line after it."""
    line = lines[i]
    if not line.strip():
        return i + 1
    if line.startswith("```"):
        j = _until(lines, i + 1, lambda s: s.startswith("```"))
        lang = line[3:].strip()
        cls = f' class="language-{html.escape(lang)}"' if lang else ""
        out.append(f"<pre><code{cls}>" + html.escape("\n".join(lines[i + 1:j])) + "</code></pre>")
        return j + 1
    m = re.match(r"(#{1,6}) +(.*)", line)
    if m:
        n = len(m.group(1))
        out.append(f"<h{n} id=\"{_slug(m.group(2))}\">{_inline(m.group(2), base)}</h{n}>")
        return i + 1
    if re.match(r"</?(details|summary)\b", line.strip()):
        out.append(_raw_tag_line(line.strip(), base))
        return i + 1
    if line.startswith("|"):
        j = _until(lines, i, lambda s: not s.startswith("|"))
        out.append(_table(lines[i:j], base))
        return j
    if re.match(r"[-*] ", line):
        return _list(lines, i, out, base)
    j = _until(lines, i, lambda s: not s.strip() or _starts_block(s))
    j = max(j, i + 1)
    text = " ".join(s.strip() for s in lines[i:j])
    only_image = _IMAGE.fullmatch(text.strip())
    if only_image:
        out.append(f"<figure>{_inline(text, base)}</figure>")
    else:
        out.append(f"<p>{_inline(text, base)}</p>")
    return j


def _starts_block(s: str) -> bool:
    return bool(s.startswith(("```", "#", "|")) or re.match(r"[-*] ", s) or re.match(r"</?(details|summary)\b", s))


def _until(lines: list[str], start: int, stop) -> int:
    """The first index at or after `start` whose line satisfies `stop` (len(lines) when none does)."""
    return next((k for k in range(start, len(lines)) if stop(lines[k])), len(lines))


def _list(lines: list[str], i: int, out: list[str], base: Path | None) -> int:
    """A flat list: each item starts with '- ' (or '* '); following indented or plain lines continue it."""
    items: list[str] = []
    while i < len(lines) and lines[i].strip():
        s = lines[i]
        if re.match(r"[-*] ", s):
            items.append(s[2:].strip())
        elif _starts_block(s) and not s.startswith(" "):
            break
        else:
            items[-1] += " " + s.strip()
        i += 1
    out.append("<ul>\n" + "\n".join(f"<li>{_inline(t, base)}</li>" for t in items) + "\n</ul>")
    return i


def _table(rows: list[str], base: Path | None) -> str:
    """A pipe table: the first row the header, the second the |---| separator."""
    cells = [_cells(r) for r in rows]
    body = cells[2:] if len(cells) > 1 and all(set(c) <= set("-: ") for c in cells[1]) else cells[1:]
    head = "".join(f"<th>{_inline(c, base)}</th>" for c in cells[0])
    trs = "\n".join("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{trs}\n</tbody>\n</table>"


def _cells(row: str) -> list[str]:
    """The cells of '| a | b \\| c |': ['a', 'b | c'] (an escaped pipe stays in its cell)."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _raw_tag_line(line: str, base: Path | None) -> str:
    """A <details>/<summary> line as written: its tags kept, the text between them converted."""
    m = re.fullmatch(r"(<summary>)(.*)(</summary>)", line)
    return f"{m.group(1)}{_inline(m.group(2), base)}{m.group(3)}" if m else line


def _inline(text: str, base: Path | None) -> str:
    """Escape `text` and convert its inline markdown: `code` (left as is inside), images, links,
    **bold** and _italic_."""
    codes: list[str] = []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{html.escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    s = _CODE.sub(keep, text)
    s = html.escape(s, quote=False)
    s = _IMAGE.sub(lambda m: _image(m.group(1), m.group(2), base), s)
    s = _LINK.sub(lambda m: f'<a href="{_attr(m.group(2))}">{m.group(1)}</a>', s)
    s = _BOLD.sub(r"<strong>\1</strong>", s)
    s = _ITALIC.sub(r"<em>\1</em>", s)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], s)


def _image(alt: str, src: str, base: Path | None) -> str:
    """An <img> whose source is inlined: a PNG or SVG file under `base` as a base64 data URI."""
    src = html.unescape(src)
    path = (base / src) if base is not None else Path(src)
    kind = {".png": "image/png", ".svg": "image/svg+xml"}.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return f'<span class="missing-figure">[figure missing: {alt}]</span>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_attr(alt)}" src="data:{kind};base64,{data}">'


def _attr(escaped: str) -> str:
    """Text already escaped for HTML (&, <, >) made safe inside a double-quoted attribute."""
    return escaped.replace('"', "&quot;")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
