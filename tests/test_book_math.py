"""Every formula of the book is valid for MathJax, the renderer Quarto's HTML pages load at view time.

Quarto hands the math to Pandoc, which writes it for MathJax 3 (``tex-chtml-full.js``,
every TeX extension); a formula MathJax cannot parse shows as a red error box
in the reader's browser and nowhere else. So: Pandoc finds the formulas exactly
as it will in the real render (its JSON AST, ``Math`` nodes), and MathJax 3.2.2
itself (npm package ``mathjax``, installed by ``make test`` into ``build/mathjax``)
parses each one in headless Chromium.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

from bookkit import CHROMIUM_FLAGS, chromium
from text2image.book import build, preview, project

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "build/mathjax/node_modules/mathjax/es5/tex-chtml-full.js"

CHECKER = """<!DOCTYPE html><html><head><meta charset="utf-8">
<script>window.MathJax = {startup: {typeset: false}};</script>
<script src="%s"></script></head><body><pre id="result">pending</pre>
<script>
MathJax.startup.promise.then(() => {
  const problems = [];
  for (const [where, tex, display] of %s) {
    try {
      const mml = MathJax.tex2mml(tex, {display});
      // errors become <merror>; an undefined macro, red text (the noundefined extension of the -full build)
      const error = mml.match(/data-mjx-error="([^"]*)"/) || mml.match(/<merror[\\s\\S]*?<mtext>([^<]*)/) ||
        mml.match(/<mtext mathcolor="red">(\\\\[^<]*)<\\/mtext>/);
      if (error) problems.push(where + ": " + error[1] + ": " + tex);
    } catch (e) { problems.push(where + ": " + e.message + ": " + tex); }
  }
  document.getElementById("result").textContent = JSON.stringify(problems);
});
</script></body></html>
"""


def formulas(root: Path = ROOT) -> list[tuple[str, str, bool]]:
    """``(chapter, tex, display)`` for every formula of both editions, as Pandoc reads the Markdown."""
    docs = build.parse_editions(project.load(root))  # the formulas as written; the checks have their own tests
    found = []
    for lang, chapters in docs.items():
        for doc in chapters:
            markdown = "\n\n".join(cell.source for cell in doc.cells if cell.kind == "markdown")
            ast = json.loads(subprocess.run([preview.pandoc_path(), "-f", "markdown", "-t", "json"],
                                            input=markdown, capture_output=True, text=True, check=True).stdout)
            stack = [ast["blocks"]]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if node.get("t") == "Math":
                        kind, tex = node["c"]
                        found.append((f"{lang}/{doc.path.name}", tex, kind["t"] == "DisplayMath"))
                    else:
                        stack.extend(node.values())
                elif isinstance(node, list):
                    stack.extend(node)
    return found


def mathjax_problems(items: list[tuple[str, str, bool]], tmp_path: Path) -> list[str]:
    assert MATHJAX.is_file(), f"{MATHJAX} is missing: `make test` installs MathJax 3.2.2 from npm"
    assert chromium(), "chromium is missing: `make browser` installs it"
    page = tmp_path / "math.html"
    page.write_text(CHECKER % (MATHJAX.as_uri(), json.dumps(items)))
    out = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path}/profile",
                          "--allow-file-access-from-files", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    match = re.search(r'<pre id="result">(.*?)</pre>', out.stdout, re.S)
    assert match and match.group(1) != "pending", out.stderr[-2000:]
    return json.loads(html.unescape(match.group(1)))


def test_mathjax_reports_a_bad_formula(tmp_path):
    """The check itself: a formula MathJax rejects is reported, a good one is not."""
    problems = mathjax_problems([("x", r"\frac{a}{b}", False), ("x", r"\notamacro{x}", False),
                                 ("x", r"\frac{a", True)], tmp_path)
    assert len(problems) == 2 and "notamacro" in problems[0] and r"\frac{a" in problems[1]


def test_every_formula_of_the_book_is_valid_for_mathjax(tmp_path):
    items = formulas()
    assert len(items) > 50  # the chapters hold formulas; an empty harvest would prove nothing
    assert mathjax_problems(items, tmp_path) == []


SIZES = """<script>
const sums = [...document.querySelectorAll('mo')].filter(m => m.textContent.trim() === '\\u2211');
const fracs = [...document.querySelectorAll('mfrac')];
const height = e => e.getBoundingClientRect().height;
document.getElementById('result').textContent = JSON.stringify({
  sums: sums.map(m => [m.closest('math').getAttribute('display'), height(m)]),
  fracs: fracs.map(m => [m.closest('math').getAttribute('display'), height(m)])});
</script>"""


def test_the_preview_shows_display_sums_and_fractions_at_display_size(tmp_path):
    """MathML needs a font with an OpenType MATH table (the preview's CSS names them): without one, Chromium
    draws a display sum at its inline size. Measured in headless Chromium, as a reader's browser lays it out."""
    assert chromium(), "chromium is missing: `make browser` installs it"
    markdown = "Inline $\\sum_{i=1}^{n} \\frac{a_i}{b_i}$ text.\n\n$$\\sum_{i=1}^{n} \\frac{a_i}{b_i}$$\n"
    body = subprocess.run([preview.pandoc_path(), "-f", "markdown", "-t", "html5", "--mathml"], input=markdown,
                          capture_output=True, text=True, check=True).stdout
    page = tmp_path / "sizes.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="stylesheet" '
                    f'href="{preview.CSS.as_uri()}"></head><body><main class="content">{body}</main>'
                    f'<pre id="result">pending</pre>{SIZES}</body></html>')
    out = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path}/profile",
                          "--allow-file-access-from-files", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    sizes = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', out.stdout, re.S).group(1)))
    sums, fracs = dict(sizes["sums"]), dict(sizes["fracs"])
    assert sums["block"] >= 1.3 * sums["inline"], f"{sizes}: no math font (apt-get install fonts-dejavu-core)"
    assert fracs["block"] >= 1.2 * fracs["inline"], sizes
