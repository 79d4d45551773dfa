"""Helpers for the chapter-runner tests: tiny throwaway books, and a headless-Chromium page check.

Kept out of conftest.py so that other test files can import them explicitly.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
from pathlib import Path

QUARTO = """\
project:
  type: book
execute:
  freeze: auto
format:
  html:
    fig-dpi: 110
    lightbox: true
    include-after-body: book/_language-link.html
jupyter: python3
"""

# The home page Quarto's book type requires at the root, one per edition through conditional content.
HOME = """\
::: {.content-visible when-profile="fr"}

# Accueil {.unnumbered}

Le livre.

:::

::: {.content-visible when-profile="en"}

# Home {.unnumbered}

The book.

:::
"""


def write_book(root: Path, chapters: dict[str, dict[str, str]], lists: dict[str, list[str]] | None = None,
               home: str | None = HOME, quarto: str = QUARTO, french: str | None = None,
               link_script: bool = True) -> Path:
    """A minimal two-language book: ``chapters = {"fr": {"intro": text, ...}, "en": {...}}``.

    ``home`` is the root ``index.qmd`` (``None``: no home page, listed nowhere);
    ``french`` what ``_quarto-fr.yml`` adds (default: the real book's French keys);
    ``link_script`` copies the real language-link include (the QUARTO default names it).
    """
    french = FRENCH if french is None else french
    root.mkdir(parents=True, exist_ok=True)
    (root / "_quarto.yml").write_text(quarto)
    if home is not None:
        (root / "index.qmd").write_text(textwrap.dedent(home).lstrip("\n"))
    # The freeze key hashes <root>/code/text2image: a stub keeps the tiny book's keys stable while
    # the real package is being edited (the kernel still imports the installed package).
    (root / "code" / "text2image").mkdir(parents=True, exist_ok=True)
    (root / "code" / "text2image" / "__init__.py").write_text('"""stub"""\n')
    for lang, files in chapters.items():
        folder = root / "book" / lang
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / f"{name}.qmd").write_text(textwrap.dedent(text).lstrip("\n"))
    for lang in ("fr", "en"):
        names = (lists or {}).get(lang, list(chapters.get(lang, {})))
        entries = "\n".join(([f"    - href: index.qmd\n      text: \"{'Accueil' if lang == 'fr' else 'Home'}\""]
                              if home is not None else []) + [f"    - book/{lang}/{n}.qmd" for n in names])
        other = "en" if lang == "fr" else "fr"
        (root / f"_quarto-{lang}.yml").write_text(
            f"lang: {lang}\n" + (french if lang == "fr" else "") + f"book:\n  title: \"Book {lang}\"\n  navbar:\n"
            f"    right:\n      - text: \"{other.upper()}\"\n        href: ../{other}/index.html\n"
            f"        rel: alternate\n  chapters:\n{entries}\n"
        )
    if link_script:
        (root / "book").mkdir(exist_ok=True)
        (root / "book" / "_language-link.html").write_text((REPO / "book" / "_language-link.html").read_text())
    return root


REPO = Path(__file__).resolve().parents[1]
# What the real _quarto-fr.yml sets for French cross-references (Quarto's French file says "Table").
FRENCH = 'language:\n  crossref-tbl-title: "Tableau"\ncrossref:\n  title-delim: "\u00a0:"\n'


def same(text: str, name: str = "a") -> dict[str, dict[str, str]]:
    """One chapter with the same text in both languages."""
    return {"fr": {name: text}, "en": {name: text}}


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--run-all-compositor-stages-before-draw", "--virtual-time-budget=20000",
]

# Loads every page in an iframe (same origin), waits for it, then checks images and links.
CHECKER = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<pre id="result">pending</pre>
<script>
const pages = %s;
const problems = [];
const cache = {};
async function ids(url) {
  if (!(url in cache)) {
    cache[url] = fetch(url).then(r => r.ok ? r.text() : null).then(t => {
      if (t === null) return null;
      const d = new DOMParser().parseFromString(t, 'text/html');
      return new Set([...d.querySelectorAll('[id]')].map(e => e.id));
    });
  }
  return cache[url];
}
function load(url) {
  return new Promise(resolve => {
    const f = document.createElement('iframe');
    f.style.width = '1200px'; f.style.height = '800px';
    f.onload = () => resolve(f);
    f.src = url;
    document.body.appendChild(f);
  });
}
(async () => {
  let images = 0, links = 0;
  for (const page of pages) {
    const f = await load(page);
    const doc = f.contentDocument;
    if (!doc.documentElement.getAttribute('lang')) problems.push(page + ': <html> has no lang');
    for (const img of doc.querySelectorAll('img')) {
      images++;
      if (!img.complete || img.naturalWidth === 0) problems.push(page + ': image not loaded: ' + img.getAttribute('src'));
    }
    for (const a of doc.querySelectorAll('a[href]')) {
      const url = new URL(a.getAttribute('href'), f.contentWindow.location.href);
      if (url.origin !== location.origin) continue;
      links++;
      const target = await ids(url.origin + url.pathname);
      if (target === null) { problems.push(page + ': broken link ' + a.getAttribute('href')); continue; }
      const anchor = decodeURIComponent(url.hash.slice(1));
      if (anchor && !target.has(anchor)) problems.push(page + ': missing anchor ' + a.getAttribute('href'));
    }
  }
  document.getElementById('result').textContent = JSON.stringify({pages: pages.length, images, links, problems});
})();
</script></body></html>
"""


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_check(preview: Path) -> dict:
    """Serve ``preview`` over HTTP on 127.0.0.1, open every page in headless Chromium, report problems.

    A checker page next to the site (in a temporary folder that links to it)
    loads each page in an iframe and writes a JSON verdict into its DOM, which
    ``--dump-dom`` prints: no WebDriver, no CDP client needed.
    """
    pages = sorted(str(p.relative_to(preview)) for p in preview.rglob("*.html") if p.name != "index.html" or p.parent != preview)
    with tempfile.TemporaryDirectory() as tmp:
        serve = Path(tmp) / "serve"
        serve.mkdir()
        (serve / "site").symlink_to(preview.resolve(), target_is_directory=True)
        (serve / "check.html").write_text(CHECKER % json.dumps(["site/" + p for p in pages]))
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(serve), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/check.html"
            out = subprocess.run(
                [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", "--dump-dom", url],
                capture_output=True, text=True, timeout=120,
            )
        finally:
            server.shutdown()
    start = out.stdout.find('<pre id="result">')
    assert start >= 0, f"no result from chromium: {out.stdout[-500:]} {out.stderr[-1500:]}"
    text = out.stdout[start + len('<pre id="result">'): out.stdout.find("</pre>", start)]
    assert text != "pending", "the checker page did not finish within the virtual time budget"
    import html

    return json.loads(html.unescape(text))
