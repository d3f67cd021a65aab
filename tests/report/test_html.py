"""`harness report DIR --format html`: DIR/report.html beside report.md, one self-contained page (figures
inline as base64 PNG, no external URL), the same content as report.md; and, in a real headless
browser, every figure present and loaded."""

import base64
import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from report_tables import grid, write_results

from harness.report.html import markdown_to_html, report_html

DATA_PNG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk; asserts the PNG signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_markdown_the_report_writes_becomes_html(tmp_path):
    (tmp_path / "figures").mkdir()
    Figure(figsize=(2, 1)).savefig(tmp_path / "figures" / "f.png")
    md = ("# Report: x\n\nWhy? `a|b` and **bold** _(no rows)_ and pad_size < 8 & more.\n\n## Findings\n\n"
          "- first, with `code`\n- second\n  continued\n\n| k | v |\n| --- | --- |\n| a \\| b | 1 |\n\n"
          "### A figure\n\n![A figure](figures/f.png)\n\nIts caption ([SVG](figures/f.svg))\n\n"
          "<details><summary>config.yaml</summary>\n\n```yaml\nname: <x>\n```\n\n</details>\n")
    page = report_html(md, tmp_path, title="Report: x")
    assert page.startswith("<!DOCTYPE html>") and "<title>Report: x</title>" in page
    assert '<h1 id="report-x">Report: x</h1>' in page and "<h3" in page
    assert "<code>a|b</code>" in page and "<strong>bold</strong>" in page and "<em>(no rows)</em>" in page
    assert "pad_size &lt; 8 &amp; more" in page
    assert "<li>first, with <code>code</code></li>" in page and "<li>second continued</li>" in page
    assert "<td>a | b</td><td>1</td>" in page and "<th>k</th><th>v</th>" in page
    assert '<pre><code class="language-yaml">name: &lt;x&gt;</code></pre>' in page
    assert "<details><summary>config.yaml</summary>" in page and "</details>" in page
    (alt, data), = DATA_PNG.findall(page)
    assert alt == "A figure" and png_size(base64.b64decode(data)) == (200, 100)
    assert "SVG" not in page and "figures/" not in page   # no link out of the page
    assert "<p>Its caption</p>" in page


def test_a_missing_figure_says_so_instead_of_linking_out(tmp_path):
    out = markdown_to_html("![Gone](figures/gone.png)", tmp_path)
    assert "figure missing: Gone" in out and "<img" not in out


@pytest.fixture(scope="module")
def html_report(tmp_path_factory) -> Path:
    """A hand-made results folder (cells × layernorm × two pad sizes × two learning rates) reported with
    `harness report DIR --format html`."""
    from harness.cli import main

    d = write_results(tmp_path_factory.mktemp("html") / "r", grid(pads=(8, 16), lrs=(1e-3, 1e-2), seeds=(0, 1)))
    assert main(["report", str(d), "--format", "html"]) == 0
    return d


def figures_in(md: str) -> list[tuple[str, str]]:
    return re.findall(r"!\[([^\]]*)\]\(figures/([\w-]+)\.png\)", md)


def test_the_html_report_is_self_contained_with_the_same_content(html_report):
    md = (html_report / "report.md").read_text(encoding="utf-8")
    page = (html_report / "report.html").read_text(encoding="utf-8")
    linked = figures_in(md)
    assert len(linked) >= 8
    inlined = DATA_PNG.findall(page)
    assert [html.unescape(alt) for alt, _ in inlined] == [title for title, _ in linked]
    for (_, name), (_, data) in zip(linked, inlined):
        assert base64.b64decode(data) == (html_report / "figures" / f"{name}.png").read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', page)   # nothing loaded from outside the page
    assert "http://" not in page and "https://" not in page
    for heading in re.findall(r"^#{1,3} (.+)$", md, flags=re.M):  # every section and figure heading is there
        assert html.escape(heading, quote=False) in page
    text = re.sub(r"<[^>]+>", "", page)

    def plain(s: str) -> str:  # markdown text as the page shows it: no ** or `, HTML-escaped
        return html.escape(re.sub(r"\*\*|`", "", s).replace("\\|", "|"), quote=False).strip()

    bullets = [line[2:] for line in md.splitlines() if line.startswith("- ")]
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    cells = [c for line in rows for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    assert len(bullets) > 5 and len(cells) > 50
    for s in bullets + cells:
        assert plain(s) in text, s


def _browser() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


LOAD_CHECK = """<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'image-check';
  out.textContent = JSON.stringify(Array.from(document.images).map(
      i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})));
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(_browser() is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)")
def test_every_figure_loads_in_a_headless_browser(html_report, tmp_path):
    """Chromium opens report.html (a copy with a script that, on load, lists every <img> with its decoded
    size) and dumps the DOM: every figure the markdown links is there, complete, with a size > 0."""
    page = (html_report / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", LOAD_CHECK + "\n</body>"), encoding="utf-8")
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, flags=re.S)
    assert found, f"the page's load check did not run; the browser printed: {dom[:500]!r}"
    images = json.loads(html.unescape(found.group(1)))
    titles = [title for title, _ in figures_in((html_report / "report.md").read_text(encoding="utf-8"))]
    assert [i["alt"] for i in images] == titles
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
