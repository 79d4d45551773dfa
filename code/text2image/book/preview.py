"""A static HTML preview of an edition, for machines without Quarto.

Quarto is the real renderer (conda-forge ships it). Where it is missing we
still want to *read* the executed book: every page with its code, outputs,
figures, numbered sections, captions and working cross-reference links, a
chapter list, and a link to the same chapter in the other language. Each
chapter becomes Pandoc Markdown (outputs inserted, numbers and links resolved
by ``crossref``), then one call of the pandoc binary shipped by
``pypandoc-binary`` turns it into an HTML fragment that we wrap in a small
page. Math is MathML (no network needed).

The preview is cached: an edition whose chapters, outputs and code did not
change is not rewritten, so a second ``make book`` stays fast. An edition is
written into a temporary folder beside its own and swapped in whole
(``renameat2`` with ``RENAME_EXCHANGE`` on Linux, else two renames), under a
lock on ``.<lang>.lock``: two renders at once take turns, and a reader never
sees half an edition.

Citations are pandoc's citeproc, as in Quarto, with what Quarto's book type
adds (``src/project/types/book/book-bibliography.ts``
``bookBibliographyPostRender``): the first page holding a ``#refs`` div is
the references page; it lists every work cited anywhere in the edition, plus
the configuration's ``nocite`` (split at commas, as there); every other page's
citations link to it, and its own bibliography is hidden (``display: none``).
Without such a page, each page keeps its own bibliography, as in Quarto.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from text2image.book import crossref, inline
from text2image.book.execute import strip_ansi
from text2image.book.freeze import write_atomic
from text2image.book.qmd import CODE_SPAN, IMAGE, REFERENCE, Document

FORMAT = 4  # bump to invalidate cached previews when the page layout changes
CSS = Path(__file__).with_name("preview.css")
OTHER = {"fr": "en", "en": "fr"}
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}
MESSAGES = {
    "fr": {"chapters": "Chapitres", "prev": "Précédent", "next": "Suivant",
           "note": "Aperçu statique écrit par text2image (Quarto n'est pas installé).",
           "unexecuted": "Ce chapitre n'a pas encore été exécuté : code sans résultats."},
    "en": {"chapters": "Chapters", "prev": "Previous", "next": "Next",
           "note": "Static preview written by text2image (Quarto is not installed).",
           "unexecuted": "This chapter has not been executed yet: code without outputs."},
}
MIME_ORDER = ("text/html", "text/markdown", "image/svg+xml", "image/png", "image/jpeg", "text/latex", "text/plain")
TABLE_CAPTION = re.compile(r"^(?P<lead>(?:Table)?:[ \t]+)(?P<text>.*?)[ \t]*\{#(?P<label>tbl-[^\s}]+)[^}]*\}[ \t]*$")
WARNING_PREFIX = re.compile(r"<ipython-input.*?>:\d+:\s+")
BRACKET_BARE = re.compile(r"\[-@(?P<name>(?:fig|tbl|sec)-[\w-]*\w)\]")
REFS_DIV = re.compile(r"^ {0,3}:{3,}\s*\{[^}]*#refs[\s}]", re.MULTILINE)
CITE_LINK = re.compile(r'(<a href=")(#ref-[^"]*)(" role="doc-biblioref")')
BRACKET_GROUP = re.compile(r"\[(?P<inner>[^\[\]]*@(?:fig|tbl|sec)-[^\[\]]*)\](?!\()")


def pandoc_path() -> str:
    found = shutil.which("pandoc")
    if found:
        return found
    import pypandoc

    return pypandoc.get_pandoc_path()


def _raw(content: str) -> str:
    """A raw HTML block for Pandoc, fenced with more backticks than the content holds."""
    longest = max((len(m) for m in re.findall(r"`+", content)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{{=html}}\n{content}\n{fence}"


def _text(data) -> str:
    return "".join(data) if isinstance(data, list) else str(data)


class ChapterRenderer:
    """Turns one executed chapter into Pandoc Markdown, writing its images beside the page."""

    def __init__(self, doc: Document, nb, outline: crossref.Outline, out_dir: Path, executed: bool,
                 lightbox: bool = False):
        self.doc, self.nb, self.outline, self.out_dir = doc, nb, outline, out_dir
        self.name = doc.path.stem
        self.lang = outline.lang
        self.executed = executed
        self.lightbox = lightbox  # a figure is a link to its full-size PNG, as Quarto's lightbox: true opens it
        self.images: dict[str, bytes] = {}

    # ---- links and numbers -------------------------------------------------------------------
    def _link(self, name: str, bare: bool = False) -> str:
        target = self.outline.targets.get(name)
        if target is None:  # the static checks make this unreachable; keep the text visible anyway
            return f"@{name}"
        href = f"#{name}" if target.chapter == self.name else f"{target.chapter}.html#{name}"
        return f"[{self.outline.text(name, bare)}]({href})"

    def _references(self, segment: str) -> str:
        segment = BRACKET_BARE.sub(lambda m: self._link(m.group("name"), bare=True), segment)
        segment = BRACKET_GROUP.sub(
            lambda m: REFERENCE.sub(lambda r: self._link(r.group("name")), m.group("inner")).replace(";", ","), segment)
        return REFERENCE.sub(lambda m: self._link(m.group("name")), segment)

    def _outside_code(self, line: str) -> str:
        out, last = [], 0
        for match in CODE_SPAN.finditer(line):
            out.append(self._references(line[last:match.start()]))
            out.append(match.group())
            last = match.end()
        out.append(self._references(line[last:]))
        return "".join(out)

    def _caption(self, kind: str, label: str, text: str) -> str:
        number = self.outline.caption(label)
        sep = self.outline.separator
        return f"**{number}**{sep}{self._outside_code(text)}" if text else f"**{number}**"

    # ---- images ------------------------------------------------------------------------------
    def _image(self, data: bytes, name: str) -> str:
        self.images[name] = data
        return name

    def _local_image(self, src: str) -> str:
        if re.match(r"^[a-z]+:", src) or src.startswith("/"):
            return src
        path = (self.doc.path.parent / src).resolve()
        if not path.is_file():
            return src
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        return self._image(path.read_bytes(), f"img/{digest}-{path.name}")

    # ---- cells -------------------------------------------------------------------------------
    def markdown(self, index: int, cell, node) -> str:
        results = inline.results(node) if self.executed else {}
        source = cell.source
        placeholders = {}
        for k, item in reversed(list(enumerate(cell.inline))):
            token = f"T2IINLINE{k}X"
            original = source[item.start: item.end]
            text = inline.markdown(results[item.expr]) if item.expr in results else None
            placeholders[token] = text or (original if self.executed else f"`{item.expr}`")
            source = source[: item.start] + token + source[item.end:]
        lines = source.split("\n")
        for heading in cell.headings:
            number = self.outline_chapter.headings.get((index, heading.offset))
            if number:
                css = "chapter-number" if heading.level == 1 else "header-section-number"
                lines[heading.offset] = re.sub(r"^(#+[ \t]+)", lambda m: f'{m.group(1)}<span class="{css}">{number}</span> ',
                                               lines[heading.offset], count=1)
        for offset, line in enumerate(lines):
            if offset in cell.fenced_lines:
                continue
            line = self._outside_code(line)
            caption = TABLE_CAPTION.match(line)
            if caption and caption.group("label") in self.outline.targets:
                label = caption.group("label")
                line = (f"{caption.group('lead')}[**{self.outline.caption(label)}**]{{#{label}}}"
                        f"{self.outline.separator}{caption.group('text')}")
            line = IMAGE.sub(self._markdown_image, line)
            lines[offset] = line
        text = "\n".join(lines)
        for token, value in placeholders.items():
            text = text.replace(token, value)
        return text

    def _markdown_image(self, match: re.Match) -> str:
        alt, attrs = match.group("alt"), match.group("attrs") or ""
        label = re.search(r"#(fig-[^\s}]+)", attrs)
        if label and label.group(1) in self.outline.targets:
            alt = self._caption("fig", label.group(1), alt)
        return f"![{alt}]({self._local_image(match.group('src'))}{match.group('title')}){attrs}"

    def code(self, index: int, cell, node) -> str:
        if cell.option("include") is False:
            return ""
        parts: list[str] = []
        echo = cell.option("echo")
        if echo:
            code = cell.source if echo == "fenced" else cell.code
            if echo == "fenced":
                code = "```{python}\n" + code + "\n```"
            longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
            fence = "`" * max(3, longest + 1)
            parts.append(f"{fence} {{.python .cell-code}}\n{code}\n{fence}")
        outputs = self.outputs(cell, node) if cell.option("output") is not False else []
        label = cell.label or ""
        if label.startswith("fig-"):
            caption = self._caption("fig", label, str(cell.options.get("fig-cap", "")))
            parts.append(f"::: {{#{label} .t2i-figure}}\n\n" + "\n\n".join(outputs)
                         + f"\n\n::: {{.t2i-caption}}\n{caption}\n:::\n\n:::")
        elif label.startswith("tbl-"):
            caption = self._caption("tbl", label, str(cell.options.get("tbl-cap", "")))
            parts.append(f"::: {{#{label} .t2i-table}}\n\n::: {{.t2i-caption}}\n{caption}\n:::\n\n"
                         + "\n\n".join(outputs) + "\n\n:::")
        else:
            parts.extend(outputs)
        if not parts:
            return ""
        return "::: {.cell}\n\n" + "\n\n".join(parts) + "\n\n:::"

    def outputs(self, cell, node) -> list[str]:
        """The outputs as Quarto writes them (``src/core/jupyter/jupyter.ts`` ``mdFromCodeCell``).

        Stderr is dropped only with ``warning: false``; every stream output is
        its own ``cell-output-stdout``/``cell-output-stderr`` block (nbclient
        does not merge them), ANSI colours stripped and the
        ``<ipython-input-…>:N:`` prefix of a warning's first line removed.
        """
        rendered: list[str] = []
        asis = cell.option("output") == "asis"
        show_warnings = cell.option("warning") is not False
        label = cell.label or ""
        for output in node.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                name = output.get("name")
                if name == "stderr" and not show_warnings:
                    continue
                rendered.append(self._stream(name, _text(output["text"]), asis))
            elif kind == "error":
                trace = strip_ansi("\n".join(output.get("traceback", [])))
                rendered.append(_raw(f'<pre class="cell-output error">{html.escape(trace)}</pre>'))
            elif kind in ("display_data", "execute_result"):
                rendered.append(self._display(output.get("data", {}), label, asis, len(rendered),
                                              cell.options.get("fig-alt")))
        return [r for r in rendered if r]

    @staticmethod
    def _stream(name: str, text: str, asis: bool) -> str:
        if asis and name == "stdout":
            return text
        if name == "stderr":
            text = WARNING_PREFIX.sub("", text, count=1)
        text = strip_ansi(text)
        return _raw(f'<div class="cell-output cell-output-{name}">\n<pre><code>{html.escape(text.rstrip(chr(10)))}'
                    f'</code></pre>\n</div>')

    def _display(self, data: dict, label: str, asis: bool, position: int, alt=None) -> str:
        mime = next((m for m in MIME_ORDER if m in data), None)
        if label.startswith("fig-") and "image/png" in data:
            mime = "image/png"
        if mime is None:
            return ""
        value = _text(data[mime])
        if mime in ("image/png", "image/jpeg"):
            ext = "png" if mime == "image/png" else "jpg"
            if label.startswith("fig-"):
                name = f"figures/{label}.{ext}"
            else:
                digest = hashlib.sha256(value.encode()).hexdigest()[:12]
                name = f"img/{self.name}-{digest}.{ext}"
            src = self._image(base64.b64decode(value), name)
            alt = alt if isinstance(alt, str) and label.startswith("fig-") else ""
            image = f'<img src="{src}" class="cell-output-image" alt="{html.escape(alt)}">'
            if self.lightbox and label.startswith("fig-"):
                image = f'<a href="{src}" class="t2i-lightbox">{image}</a>'
            return _raw(image)
        if mime == "text/html":
            return _raw(f'<div class="cell-output-display">\n{value}\n</div>')
        if mime == "image/svg+xml":
            return _raw(f'<div class="cell-output-display">{value}</div>')
        if mime == "text/markdown" or (asis and mime == "text/plain"):
            return value
        if mime == "text/latex":
            return value
        return _raw(f'<pre class="cell-output">{html.escape(value)}</pre>')

    def render(self) -> str:
        self.outline_chapter = next(c for c in self.outline.chapters if c.name == self.name)
        parts = []
        if not any(h.level == 1 for h in self.doc.headings()):
            number = self.outline_chapter.number
            span = f'<span class="chapter-number">{number}</span> ' if number else ""
            parts.append(f"# {span}{self.doc.title}")
        if not self.executed:
            parts.append(f"::: {{.t2i-unexecuted}}\n{MESSAGES[self.lang]['unexecuted']}\n:::")
        for index, (cell, node) in enumerate(zip(self.doc.cells, self.nb.cells)):
            if cell.kind == "markdown":
                parts.append(self.markdown(index, cell, node))
            elif cell.kind == "code":
                parts.append(self.code(index, cell, node))
        return "\n\n".join(p for p in parts if p) + "\n"


@dataclass
class Citations:
    """How pandoc's citeproc runs for one edition (``None`` in place of it: the book has no bibliography)."""

    files: list[Path]
    lang: str
    refs_page: str | None  # the references page's name (file stem), if the edition has one
    cited: list[str]  # every key the edition cites, and nocite's

    def args(self, name: str) -> list[str]:
        """pandoc's citeproc, with Quarto's ``link-citations: true`` (``format-html-bootstrap.ts``)."""
        args = ["--citeproc", "-M", "link-citations=true", "-M", f"lang={CITE_LANG.get(self.lang, self.lang)}"]
        return args + [f"--bibliography={path}" for path in self.files]

    def front(self, name: str) -> str:
        """The references page's metadata block: every key of the edition (Quarto's ``generateBibliography``)."""
        if name != self.refs_page or not self.cited:
            return ""
        return "---\nnocite: |\n  " + ", ".join(f"@{key}" for key in self.cited) + "\n---\n\n"

    def fix_links(self, name: str, body: str) -> str:
        """A page's citations lead to the references page, its own bibliography hidden (as Quarto does)."""
        if not self.refs_page or name == self.refs_page:
            return body
        body = CITE_LINK.sub(lambda m: f"{m.group(1)}{self.refs_page}.html{m.group(2)}{m.group(3)}", body)
        return body.replace('<div id="refs"', '<div id="refs" style="display: none"', 1)


CITE_LANG = {"fr": "fr-FR", "en": "en-US"}


def citations(lang: str, docs: list[Document], config: dict, files: list[Path]) -> Citations | None:
    if not files:
        return None
    from text2image.book.qmd import mask

    refs_page = next((doc.path.stem for doc in docs
                      if any(c.kind == "markdown" and REFS_DIV.search(mask(c.source, fenced=c.fenced_lines))
                             for c in doc.cells)), None)
    cited = [c.name for doc in docs for c in doc.citations]
    nocite = config.get("nocite")
    if isinstance(nocite, str):
        cited += [item.strip().lstrip("@") for item in nocite.split(",") if item.strip()]
    return Citations(files, lang, refs_page, list(dict.fromkeys(cited)))


def _pandoc(markdown: str, where: Path, extra: list[str] | None = None, citations: bool = False) -> str:
    reader = "markdown" if citations else "markdown-citations"
    result = subprocess.run(
        [pandoc_path(), "-f", reader, "-t", "html5", "--mathml", "--wrap=none", *(extra or [])],
        input=markdown.encode(), capture_output=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pandoc failed on {where}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


def _plain(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def _page(lang: str, book_title: str, outline: crossref.Outline, name: str, body: str, other_label: str,
          other_page: str | None = None) -> str:
    chapters = outline.chapters
    current = next(i for i, c in enumerate(chapters) if c.name == name)
    title = _plain(chapters[current].title)
    items = []
    for chapter in chapters:
        number = f'<span class="chapter-number">{chapter.number}</span> ' if chapter.number else ""
        active = ' class="active" aria-current="page"' if chapter.name == name else ""
        items.append(f'<li><a href="{chapter.name}.html"{active}>{number}{html.escape(_plain(chapter.title))}</a></li>')
    pager = []
    words = MESSAGES[lang]
    sep = "\u00a0:" if lang == "fr" else ":"
    if current > 0:
        prev = chapters[current - 1]
        pager.append(f'<a class="prev" href="{prev.name}.html">← {words["prev"]}{sep} {html.escape(_plain(prev.title))}</a>')
    if current + 1 < len(chapters):
        nxt = chapters[current + 1]
        pager.append(f'<a class="next" href="{nxt.name}.html">{words["next"]}{sep} {html.escape(_plain(nxt.title))} →</a>')
    other = OTHER[lang]
    other_href = f"../{other}/{other_page or name + '.html'}"
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – {html.escape(book_title)}</title>
<link rel="stylesheet" href="style.css">
<link rel="alternate" hreflang="{other}" href="../{other}/{name}.html">
</head>
<body>
<header class="topbar">
<a class="book-title" href="{chapters[0].name}.html">{html.escape(book_title)}</a>
<a class="other-lang" href="{other_href}" hreflang="{other}" lang="{other}">{html.escape(other_label)}</a>
</header>
<div class="layout">
<nav class="sidebar" aria-label="{words['chapters']}">
<h2>{words['chapters']}</h2>
<ol>
{chr(10).join(items)}
</ol>
<p class="preview-note">{words['note']}</p>
</nav>
<main class="content">
{body}
<nav class="pager">{''.join(pager)}</nav>
</main>
</div>
</body>
</html>
"""


def lightbox(config: dict) -> bool:
    """Whether ``_quarto.yml`` turns Quarto's lightbox on (``format.html.lightbox``, or at the top level):
    a click on a figure then opens it at full size, and the preview mirrors it with a plain link."""
    html = ((config.get("format") or {}).get("html") or {})
    value = html.get("lightbox", config.get("lightbox")) if isinstance(html, dict) else config.get("lightbox")
    return bool(value)


LANGUAGE_LINK_SCRIPT = "book/_language-link.html"  # the include that retargets the link on Quarto's pages


def language_link(config: dict, lang: str, root: Path | None = None) -> tuple[str, str | None]:
    """The navbar's link to the other edition: its text, and its target page (``None``: this same chapter).

    Quarto writes one navbar for every page, so the ``href`` of
    ``_quarto-<lang>.yml`` alone always leads to one page, the other
    edition's home. The book's ``include-after-body`` script retargets the
    item marked ``rel: alternate`` (an attribute Quarto writes, ``navitem.ejs``)
    to the same page in the other edition; without both, the preview links
    where Quarto's pages would.
    """
    other = OTHER[lang]
    navbar = ((config.get("book") or {}).get("navbar") or {})
    for item in navbar.get("right", []) if isinstance(navbar, dict) else []:
        href = str(item.get("href", "")) if isinstance(item, dict) else ""
        if f"../{other}/" in href:
            text = str(item.get("text") or LANGUAGE_NAMES[other])
            includes = ((config.get("format") or {}).get("html") or {}).get("include-after-body") or []
            includes = [includes] if isinstance(includes, str) else includes
            scripted = LANGUAGE_LINK_SCRIPT in includes and (root is None or (root / LANGUAGE_LINK_SCRIPT).is_file())
            same = "alternate" in str(item.get("rel", "")).split() and scripted
            return text, None if same else href.split(f"../{other}/", 1)[1].rsplit("/", 1)[-1]
    return LANGUAGE_NAMES[other], None


def write_edition(lang: str, docs: list[Document], notebooks: list, executed: list[bool], config: dict,
                  out_dir: Path, cache_key: str, texts: list[str | None] | None = None,
                  root: Path | None = None, bibliography: list[Path] | None = None) -> bool:
    """Write ``out_dir/<chapter>.html`` for every chapter; return False when the cached preview was current.

    The edition is built in a temporary folder and swapped in whole, under the
    edition's lock: a concurrent render waits, then finds it current.
    """
    bibliography = list(bibliography or [])
    key = hashlib.sha256(json.dumps([FORMAT, cache_key, CSS.read_text(),
                                     [p.read_text(encoding="utf-8") for p in bibliography]]).encode()).hexdigest()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir.parent / f".{out_dir.name}.lock"):
        key_file = out_dir / ".preview-key"
        pages = [out_dir / f"{doc.path.stem}.html" for doc in docs]
        if key_file.is_file() and key_file.read_text() == key and all(p.is_file() for p in pages):
            return False
        for stale in out_dir.parent.glob(f".{out_dir.name}-*"):  # left by a render killed mid-way
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
        try:
            _write_pages(lang, docs, notebooks, executed, config, staging, texts, root, bibliography)
            write_atomic(staging / ".preview-key", key.encode())
            os.chmod(staging, 0o755)
            staging = _swap_in(staging, out_dir)  # now the old edition, if any
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
    return True


def _write_pages(lang: str, docs: list[Document], notebooks: list, executed: list[bool], config: dict,
                 out_dir: Path, texts, root: Path | None, bibliography: list[Path]) -> None:
    outline = crossref.outline(lang, docs, config, texts)
    book_title = str((config.get("book") or {}).get("title") or "")
    other_label, other_page = language_link(config, lang, root)
    cites = citations(lang, docs, config, bibliography)
    shutil.copyfile(CSS, out_dir / "style.css")
    zoom = lightbox(config)
    for doc, nb, ran in zip(docs, notebooks, executed):
        name = doc.path.stem
        renderer = ChapterRenderer(doc, nb, outline, out_dir, ran, zoom)
        markdown = renderer.render()
        if cites:
            body = cites.fix_links(name, _pandoc(cites.front(name) + markdown, doc.path, cites.args(name), True))
        else:
            body = _pandoc(markdown, doc.path)
        for image, data in renderer.images.items():
            write_atomic(out_dir / image, data)
        write_atomic(out_dir / f"{name}.html", _page(lang, book_title, outline, name, body, other_label,
                                                     other_page).encode())


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (``flock``), held for the ``with`` block; a no-op where there is no ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent renders are guarded there
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def _swap_in(new: Path, target: Path) -> Path | None:
    """Put the folder ``new`` at ``target``; return where the previous ``target`` now is (``None``: there was none)."""
    if not target.exists():
        os.rename(new, target)
        return None
    if _exchange(new, target):
        return new
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
    os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(new, ignore_errors=True)
    return old


def write_root_index(root_dir: Path, first: str) -> None:
    """``<preview>/index.html``: send the reader to the French edition (the book's first language)."""
    write_atomic(root_dir / "index.html", (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0; url=fr/{first}.html"><title>text2image</title></head>'
        f'<body><p><a href="fr/{first}.html">Français</a> · <a href="en/{first}.html">English</a></p></body></html>\n'
    ).encode())
