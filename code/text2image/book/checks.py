"""What must hold before and after a chapter runs, each failure said in one message.

Static checks (labels, references, fr/en parity) run on every chapter before any
kernel starts, so a typo fails in a second rather than after an hour of
training. The output checks run after execution: a ``fig-`` cell must draw
exactly one image, the one the book's ``figures/`` folder keeps, with text a
reader can read, and no inline value may reach the page through a ``str``'s
repr.
"""

from __future__ import annotations

import ast
import base64
import difflib
import re
from pathlib import Path

from text2image.book import inline
from text2image.book.errors import BookError, where
from text2image.book.qmd import Document

LABEL_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def check_labels(lang: str, docs: list[Document], root: Path) -> None:
    """Hyphens only, no duplicates in an edition, and a caption for every figure or table cell."""
    seen: dict[str, tuple[Path, int]] = {}
    for doc in docs:
        for label in doc.labels:
            here = where(doc.path, label.line, root)
            if "_" in label.name:
                raise BookError(
                    f"{here}: label {label.name!r} contains an underscore; labels use hyphens "
                    f"({label.name.replace('_', '-')!r})"
                )
            if not LABEL_CHARS.fullmatch(label.name):
                raise BookError(f"{here}: label {label.name!r} may only hold letters, digits and hyphens")
            if label.name in seen:
                first = where(*seen[label.name], root)
                raise BookError(f"{here}: label {label.name!r} is already defined at {first}")
            seen[label.name] = (doc.path, label.line)
        for cell in doc.code_cells():
            for kind in ("fig", "tbl"):
                if cell.label and cell.label.startswith(f"{kind}-") and not cell.options.get(f"{kind}-cap"):
                    raise BookError(
                        f"{where(doc.path, cell.line, root)}: cell {cell.label!r} has no {kind}-cap "
                        f"(a {kind}- label makes it a numbered {'figure' if kind == 'fig' else 'table'}, which needs a caption)"
                    )


def check_references(lang: str, docs: list[Document], root: Path) -> None:
    """Every ``@fig-``/``@tbl-``/``@sec-`` resolves somewhere in the same edition."""
    defined = {label.name for doc in docs for label in doc.labels}
    for doc in docs:
        for ref in doc.references:
            if ref.name not in defined:
                close = difflib.get_close_matches(ref.name, sorted(defined), n=1)
                hint = f" (did you mean @{close[0]}?)" if close else ""
                raise BookError(
                    f"{where(doc.path, ref.line, root)}: @{ref.name} refers to no label of the {lang} edition{hint}"
                )


NBSP = "\u00a0"
MATH = re.compile(r"\$[^$\n]*\$")
# A plain space where French typography wants a no-break one: before ; : ! ? » % and after «.
FRENCH_SPACE = re.compile(r"(?<=\S) (?=[;:!?»%])|(?<=«) ")


def check_french_typography(doc: Document, root: Path) -> None:
    """In French prose and captions, the space before ; : ! ? » % and after « must not break (U+00A0 or U+202F).

    A code span counts as a word (``{python} share`` then `` %``: the number the reader sees is followed by a
    breaking space), so spans are filled with a letter, not blanked."""
    from text2image.book.qmd import CODE_SPAN, mask

    for cell in doc.cells:
        if cell.kind == "code":
            _check_french_captions(doc, cell, root)
            continue
        if cell.kind != "markdown":
            continue
        text = mask(cell.source, code_spans=False, fenced=cell.fenced_lines)
        text = CODE_SPAN.sub(lambda m: "x" * len(m.group()), MATH.sub(lambda m: "x" * len(m.group()), text))
        for offset, (line, original) in enumerate(zip(text.split("\n"), cell.source.split("\n"))):
            if line.lstrip().startswith(":::"):
                continue  # a fenced div, not prose
            hit = FRENCH_SPACE.search(line)
            if hit:
                where_ = "after «" if line[hit.start() - 1] == "«" else f"before {line[hit.end()]!r}"
                raise BookError(
                    f"{where(doc.path, cell.line + offset, root)}: French typography: a breaking space {where_} "
                    f"(use a no-break space, U+00A0): ...{original[max(0, hit.start() - 30):hit.end() + 10]}..."
                )


CAPTIONS = ("fig-cap", "tbl-cap", "fig-alt")
# What a text template leaves behind when nothing filled it: {NB}, {VALUE}, {name}. Braces in prose are never
# meant for the reader; attribute blocks ({#sec-a}, {.callout-note}, {python}) and maths are not prose.
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
LATEX_ARGUMENT = re.compile(r"(\\[A-Za-z]+|[_^])$")  # what may precede a LaTeX argument: \mathbf{w}, _{x}, ^{T}
DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)


def _placeholder(line: str):
    """The first ``{name}`` of ``line`` that is no LaTeX argument, glued to a word or not (``courbes{NB}``)."""
    return next((m for m in PLACEHOLDER.finditer(line) if not LATEX_ARGUMENT.search(line[:m.start()])), None)


def check_placeholders(doc: Document, root: Path) -> None:
    """No unfilled template field (``{NB}``, ``{value}``) in prose or in a caption: the reader would see it."""
    from text2image.book.qmd import mask

    for cell in doc.cells:
        if cell.kind == "code":
            lines = [(cell.line + k, line) for k, line in enumerate(cell.source.split("\n")[:cell.option_count], 1)
                     if line.lstrip("#| ").split(":", 1)[0].strip() in CAPTIONS]
        elif cell.kind == "markdown":
            text = mask(cell.source, fenced=cell.fenced_lines)
            for maths in (DISPLAY_MATH, MATH):  # blanked, newlines kept, so line numbers stay right
                text = maths.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
            lines = list(enumerate(text.split("\n"), cell.line))
        else:
            continue
        for number, line in lines:
            hit = _placeholder(line)
            if hit:
                raise BookError(f"{where(doc.path, number, root)}: an unfilled template field {hit.group()!r} "
                                f"would reach the reader: ...{line[max(0, hit.start() - 30):hit.end() + 10]}...")




def _check_french_captions(doc: Document, cell, root: Path) -> None:
    """Captions are prose the reader sees, though they sit in a code cell's ``#|`` lines."""
    for offset, line in enumerate(cell.source.split("\n")[:cell.option_count], 1):
        key = line.lstrip("#| ").split(":", 1)[0].strip()
        hit = FRENCH_SPACE.search(line.split(":", 1)[1]) if key in CAPTIONS and ":" in line else None
        if hit:
            raise BookError(f"{where(doc.path, cell.line + offset, root)}: French typography in the {key}: "
                            f"a breaking space before {line.split(':', 1)[1][hit.end()]!r} (use a no-break space, U+00A0)")


def _first_difference(a: str, b: str) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines()), 1):
        if x != y:
            return f"code line {number}: {x.strip()!r} vs {y.strip()!r}"
    return "one cell has more lines than the other"


def check_parity(fr: Document, en: Document, root: Path) -> None:
    """The two editions of a chapter say the same thing: beyond prose and captions, nothing may differ.

    In order: the code cells (``#|`` lines aside) and the labels; the inline
    expressions (every number quoted in prose, so a sentence with a number in
    one edition has it in the other); the callouts; then, in any order but
    as many times, each ``@fig-``/``@tbl-``/``@sec-`` reference and each
    citation; and no figure keeps the same ``fig-alt`` in both editions (it
    was not translated). The home page is one file read twice, each edition
    seeing its own half (``profile_view``): its halves are held together too.
    """
    both = f"{where(fr.path, root=root)} and {where(en.path, root=root)}"
    problems = []
    for check in (
        lambda: _check_code_and_labels(fr, en, root, both),
        lambda: _check_sequence(fr, en, root, "inline expression",
                                [(f"`{{python}} {i.expr}`", i.line) for i in fr.inline_expressions()],
                                [(f"`{{python}} {i.expr}`", i.line) for i in en.inline_expressions()]),
        lambda: _check_sequence(fr, en, root, "callout", [(f"callout-{c.name}", c.line) for c in fr.callouts],
                                [(f"callout-{c.name}", c.line) for c in en.callouts]),
        lambda: _check_counts(fr, en, root, "reference", fr.references, en.references),
        lambda: _check_counts(fr, en, root, "citation", fr.citations, en.citations),
        lambda: _check_alt_translated(fr, en, root),
    ):
        try:
            check()
        except BookError as error:
            problems.append(str(error))
    if problems:
        raise BookError("\n".join(problems))


def _check_sequence(fr: Document, en: Document, root: Path, what: str, a: list, b: list) -> None:
    """The same items in the same order; the message names the first difference in both files."""
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x is None or y is None or x[0] != y[0]:
            def side(item, doc, items):
                return f"{item[0]} at {where(doc.path, item[1], root)}" if item else \
                    f"none left in {where(doc.path, root=root)} (it has {len(items)})"
            raise BookError(f"the editions differ at {what} {index + 1}: fr has {side(x, fr, a)}, en has "
                            f"{side(y, en, b)}; both must have the same {what}s in the same order")


def _check_counts(fr: Document, en: Document, root: Path, what: str, a: list, b: list) -> None:
    """Each name as many times in both editions; one line per name that differs, with the lines of each side."""
    problems = []
    for name in dict.fromkeys([r.name for r in a] + [r.name for r in b]):
        lines_a = [r.line for r in a if r.name == name]
        lines_b = [r.line for r in b if r.name == name]
        if len(lines_a) != len(lines_b):
            def side(doc, lines):
                if not lines:
                    return f"never in {where(doc.path, root=root)}"
                return f"{len(lines)}\u00d7 in {where(doc.path, root=root)} (line{'s' if len(lines) > 1 else ''} " \
                       f"{', '.join(map(str, lines))})"
            problems.append(f"@{name}: {what} made {side(fr, lines_a)} but {side(en, lines_b)}; "
                            f"both editions must make the same {what}s")
    if problems:
        raise BookError("\n".join(problems))


def _check_alt_translated(fr: Document, en: Document, root: Path) -> None:
    alt = {c.label: (c.options.get("fig-alt"), c.line) for c in en.code_cells() if c.label}
    for cell in fr.code_cells():
        text = cell.options.get("fig-alt")
        if cell.label in alt and isinstance(text, str) and len(text.split()) > 2 and text == alt[cell.label][0]:
            raise BookError(f"{where(fr.path, cell.line, root)} and {where(en.path, alt[cell.label][1], root)}: "
                            f"figure {cell.label!r} has the same fig-alt in both editions; write each in its language")


def _check_code_and_labels(fr: Document, en: Document, root: Path, both: str) -> None:
    fr_cells, en_cells = fr.code_cells(), en.code_cells()
    for index, (a, b) in enumerate(zip(fr_cells, en_cells), 1):
        if a.code != b.code or a.label != b.label:
            what = (f"label {a.label!r} vs {b.label!r}" if a.label != b.label else _first_difference(a.code, b.code))
            raise BookError(
                f"{both} differ at code cell {index} (fr lines {a.line}-{a.end}, en lines {b.line}-{b.end}): {what}; "
                "the code cells must be identical in both languages"
            )
    if len(fr_cells) != len(en_cells):
        longer, cells = ("fr", fr_cells) if len(fr_cells) > len(en_cells) else ("en", en_cells)
        extra = cells[min(len(fr_cells), len(en_cells))]
        raise BookError(
            f"{both} differ: the {longer} file has {abs(len(fr_cells) - len(en_cells))} more code cell(s), "
            f"the first at {longer} line {extra.line}"
        )
    fr_labels, en_labels = [l.name for l in fr.labels], [l.name for l in en.labels]
    if fr_labels != en_labels:
        index = next((i for i, (x, y) in enumerate(zip(fr_labels, en_labels)) if x != y), min(len(fr_labels), len(en_labels)))
        a = fr.labels[index] if index < len(fr.labels) else None
        b = en.labels[index] if index < len(en.labels) else None
        raise BookError(
            f"{both} differ in their labels: "
            f"fr {('%s (line %d)' % (a.name, a.line)) if a else 'has none left'} vs "
            f"en {('%s (line %d)' % (b.name, b.line)) if b else 'has none left'}; labels must match, in the same order"
        )


def images(cell_node) -> list[bytes]:
    """The PNG images a code cell displayed, in order."""
    found = []
    for output in cell_node.get("outputs", []):
        if output.get("output_type") in ("display_data", "execute_result") and "image/png" in output.get("data", {}):
            data = output["data"]["image/png"]
            found.append(base64.b64decode("".join(data) if isinstance(data, list) else data))
    return found


def figures(doc: Document, nb, root: Path) -> dict[str, bytes]:
    """``{label: png}`` for every executed ``fig-`` cell; exactly one image each, else an error."""
    out: dict[str, bytes] = {}
    for cell, node in zip(doc.cells, nb.cells):
        if cell.kind != "code" or not (cell.label or "").startswith("fig-") or cell.option("eval") is False:
            continue
        found = images(node)
        if len(found) != 1:
            raise BookError(
                f"{where(doc.path, cell.line, root)}: figure cell {cell.label!r} displayed {len(found)} images; "
                "a fig- cell must display exactly one (close or reuse extra figures)"
            )
        out[cell.label] = found[0]
    return out


QUARTO_SCRATCH = "/.quarto/"  # project-gitignore.ts kQuartoIgnore: `/${kQuartoScratch}/`


def quarto_gitignore_entries(root: Path) -> list[str]:
    """The lines Quarto's ``ensureGitignore`` appends to ``.gitignore`` at every render, when missing.

    ``src/project/project-gitignore.ts``: each line is compared trimmed and
    exactly (``.quarto/`` does not count for ``/.quarto/``); ``/env/`` joins
    when ``env/`` holds a virtual environment, ``/_*.local`` when a root file
    matches ``_*.local``. A missing ``.gitignore`` is created in a git checkout.
    """
    path = root / ".gitignore"
    present = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()} if path.is_file() else set()
    needed = [QUARTO_SCRATCH]
    if (root / "env" / "pyvenv.cfg").exists() or (root / "env" / "conda-meta").exists():
        needed.insert(0, "/env/")
    if any(re.match(r"^_.*?\.local$", p.name) for p in root.iterdir()):
        needed.append("/_*.local")
    return [entry for entry in needed if entry not in present]


def check_gitignore(root: Path) -> None:
    """A render must change nothing in git: Quarto would append these lines to ``.gitignore``."""
    path = root / ".gitignore"
    in_git = any((folder / ".git").exists() for folder in (root, *root.parents))
    if not path.is_file() and not in_git:
        return  # Quarto only creates a .gitignore inside a git checkout
    missing = quarto_gitignore_entries(root)
    if missing:
        raise BookError(
            f"{where(path, root=root)}: lacks the exact line(s) {', '.join(repr(m) for m in missing)}; "
            "quarto render appends them when missing (project-gitignore.ts), so every render would change "
            "a tracked file: add them"
        )


def check_shared_freeze(home: Document, modes: dict[str, object], root: Path) -> None:
    """The home page is one file for both editions; Quarto keys a frozen result by file, not by edition.

    With ``freeze`` on, the second edition rendered would show the first
    one's outputs (its language, its numbers): a shared page that runs code
    must say ``execute: freeze: false`` in its front matter.
    """
    runs_code = any(c.kind == "code" and c.option("eval") is not False for c in home.cells) or \
        any(c.inline for c in home.cells)
    frozen = sorted(profile for profile, value in modes.items() if value is not False)
    if runs_code and frozen:
        raise BookError(
            f"{where(home.path, 1, root)}: this page is shared by both editions and runs code, but the "
            f"{', '.join(frozen)} profile(s) freeze it: Quarto keys a frozen result by file "
            "(_freeze/index/), so the second edition would show the first one's outputs; "
            "set `execute: freeze: false` in its front matter"
        )


# ---- images, alt text, citations -------------------------------------------------------------

def _image_path(doc: Document, src: str, root: Path) -> Path | None:
    """The file a local image reference points at (``None``: a URL or a data URI, not ours to check).

    As Quarto resolves it: relative to the chapter's folder, or to the
    project root when it starts with ``/`` (a site-absolute path).
    """
    from urllib.parse import unquote

    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", src) or src.startswith("//"):
        return None
    src = unquote(src.split("#", 1)[0].split("?", 1)[0])
    if not src:
        return None
    return (root / src.lstrip("/")) if src.startswith("/") else (doc.path.parent / src)


def check_images(doc: Document, root: Path) -> None:
    """Every local image a chapter's Markdown shows (``![...](path)``, ``<img src>``) exists.

    Quarto renders a missing one with exit status 0 and a broken image: the
    HTML writer of pandoc never opens the file (only ``embed-resources``
    would, with its "Could not fetch resource" warning), and Quarto's resource
    discovery copies what it finds and skips the rest. Here it fails the build.
    """
    from text2image.book.qmd import HTML_IMAGE, IMAGE, mask

    problems = []
    for cell in doc.cells:
        if cell.kind != "markdown":
            continue
        visible = mask(cell.source, fenced=cell.fenced_lines)
        for pattern in (IMAGE, HTML_IMAGE):
            for match in pattern.finditer(visible):
                path = _image_path(doc, match.group("src"), root)
                if path is not None and not path.is_file():
                    line = cell.line + visible.count("\n", 0, match.start())
                    problems.append(f"{where(doc.path, line, root)}: image {match.group('src')} not found "
                                    f"(no file {where(path, root=root)})")
    if problems:
        raise BookError("\n".join(problems))


def check_alt_text(doc: Document, root: Path) -> None:
    """Every figure has alt text: ``fig-alt`` on a ``fig-`` cell, or on a Markdown ``{#fig-...}`` image.

    Quarto writes ``fig-alt`` into the image's ``alt`` attribute; without it
    the image has none, and a screen reader says nothing of the figure.
    """
    from text2image.book.qmd import IMAGE, mask

    problems = []
    for cell in doc.cells:
        if cell.kind == "code" and (cell.label or "").startswith("fig-") and cell.option("eval") is not False:
            alt = cell.options.get("fig-alt")
            texts = alt if isinstance(alt, list) else [alt]
            if not all(isinstance(t, str) and t.strip() for t in texts):
                problems.append(f"{where(doc.path, cell.line, root)}: figure cell {cell.label!r} has no fig-alt "
                                "(alt text describing the figure, in the edition's language)")
        elif cell.kind == "markdown":
            visible = mask(cell.source, fenced=cell.fenced_lines)
            for match in IMAGE.finditer(visible):
                attrs = match.group("attrs") or ""
                label = re.search(r"#(fig-[^\s}]+)", attrs)
                if label and not re.search(r"fig-alt\s*=\s*([\"'])\s*[^\"'\s]", attrs):
                    line = cell.line + visible.count("\n", 0, match.start())
                    problems.append(f"{where(doc.path, line, root)}: figure {label.group(1)!r} has no fig-alt=\"...\" "
                                    "(alt text describing the figure, in the edition's language)")
    if problems:
        raise BookError("\n".join(problems))


BIB_ENTRY = re.compile(r"^\s*@(?P<type>\w+)\s*\{\s*(?P<key>[^,\s]+)\s*,", re.MULTILINE)


def bibliography_files(root: Path, config: dict) -> list[Path]:
    """The ``bibliography:`` of ``_quarto.yml`` (a path or a list), resolved from the project root."""
    value = (config or {}).get("bibliography")
    names = [value] if isinstance(value, str) else [str(v) for v in value or []]
    return [root / name for name in names]


def bibliography(root: Path, config: dict) -> dict[str, tuple[Path, int]] | None:
    """``{key: (file, line)}`` of every entry of the book's BibTeX files; ``None`` when it has none."""
    files = bibliography_files(root, config)
    if not files:
        return None
    keys: dict[str, tuple[Path, int]] = {}
    for path in files:
        if not path.is_file():
            raise BookError(f"{where(root / '_quarto.yml', root=root)}: bibliography {where(path, root=root)} "
                            "does not exist")
        text = path.read_text(encoding="utf-8")
        for match in BIB_ENTRY.finditer(text):
            if match.group("type").lower() in ("comment", "preamble", "string"):
                continue
            line = text.count("\n", 0, match.start("key")) + 1
            key = match.group("key")
            if key in keys:
                raise BookError(f"{where(path, line, root)}: entry {key!r} is already defined at "
                                f"{where(*keys[key], root)}")
            keys[key] = (path, line)
    return keys


def check_citations(docs: list[Document], entries: dict | None, root: Path) -> None:
    """Every ``[@key]`` is an entry of the bibliography.

    Quarto's crossref filter hands every citation without a crossref prefix
    to citeproc untouched (``src/resources/filters/crossref/refs.lua``:
    ``return citeEl``); pandoc's citeproc then warns
    ``[WARNING] Citeproc: citation key not found``, prints **key?** in the
    page, and the render still succeeds. Here an unknown key fails the build.
    """
    problems = []
    for doc in docs:
        for citation in doc.citations:
            if entries is None:
                problems.append(f"{where(doc.path, citation.line, root)}: [@{citation.name}] is a citation, but "
                                "_quarto.yml names no bibliography (bibliography: references.bib)")
            elif citation.name != "*" and citation.name not in entries:
                close = difflib.get_close_matches(citation.name, sorted(entries), n=1)
                hint = f" (did you mean @{close[0]}?)" if close else ""
                problems.append(f"{where(doc.path, citation.line, root)}: @{citation.name} is no entry of "
                                f"{', '.join(sorted({where(p, root=root) for p, _ in entries.values()}))}{hint}")
    if problems:
        raise BookError("\n".join(problems))


# ---- figure text ----------------------------------------------------------------------------

def png_width(data: bytes) -> int | None:
    """The width in pixels of a PNG, read from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big")


def figure_text(doc: Document, nb, book_dpi: float) -> list[dict]:
    """What the kernel's hook saw of every figure a ``fig-`` cell shows, with its size in the column.

    One dict per figure: the label and line of its cell, the smallest text
    (points, as drawn), the figure's dpi and the width in pixels the page
    shows it at (the PNG's, or the ``width`` of its metadata, as for retina),
    and ``on_page``, the size in points that text has once the figure is
    scaled to the column (``plots.text_on_page``).
    """
    from text2image.book.execute import FIGURE_TEXT

    found = []
    for cell, node in zip(doc.cells, nb.cells):
        if cell.kind != "code" or not (cell.label or "").startswith("fig-"):
            continue
        for output in node.get("outputs", []):
            data = output.get("data") or {}
            info = data.get(FIGURE_TEXT)
            if not info or "image/png" not in data or info.get("smallest_pt") is None:
                continue
            raw = data["image/png"]
            png = base64.b64decode("".join(raw) if isinstance(raw, list) else raw)
            width = ((output.get("metadata") or {}).get("image/png") or {}).get("width") or png_width(png)
            from text2image import plots  # matplotlib: only once a figure is there to judge

            on_page = plots.text_on_page(info["smallest_pt"], info["dpi"], width, book_dpi)
            found.append({"label": cell.label, "line": cell.line, "width_px": width, "on_page": on_page, **info})
    return found


def check_figure_text(doc: Document, nb, root: Path, book_dpi: float) -> None:
    """No figure's text shows under ``plots.MIN_TEXT_PT`` once the figure is scaled to the column.

    The page shows a figure at its own width up to the column's (``plots.COLUMN_PX``)
    and shrinks a wider one to it, text included (Quarto's ``img-fluid``:
    ``max-width: 100%``; the preview's CSS does the same). One line per
    figure that fails, each naming the smallest text and what to change.
    """
    from text2image import plots

    problems = []
    for item in figure_text(doc, nb, book_dpi):
        if item["on_page"] + 1e-6 < plots.MIN_TEXT_PT:
            shrunk = f", {item['width_px']} px wide in a {plots.COLUMN_PX} px column" \
                if item["width_px"] and item["width_px"] > plots.COLUMN_PX else ""
            problems.append(
                f"{where(doc.path, item['line'], root)}: figure {item['label']!r}: its smallest text "
                f"({item['smallest_text']!r}, {item['smallest_pt']:g} pt at {item['dpi']:g} dpi{shrunk}) shows at "
                f"{item['on_page']:.1f} pt, under the book's {plots.MIN_TEXT_PT:g} pt: make the figure narrower "
                f"or that text larger (plots.py)")
    if problems:
        raise BookError("\n".join(problems))


def check_inline_text(doc: Document, nb, root: Path) -> None:
    """No inline value reaches the page as anything but the string it stands for.

    Quarto writes a value with no ``text/markdown`` form from its ``text/plain``
    repr with the quotes stripped (:mod:`.inline`), so a ``str`` holding a
    narrow no-break space, a newline or a backslash shows its escape
    (``3\\u202f072``). The runner's preview shows the same escape; this check
    fails the render on it, in every profile, rather than publish it. One line
    per expression, naming its file and line.
    """
    problems = []
    for cell, node in zip(doc.cells, nb.cells):
        if cell.kind != "markdown" or not cell.inline:
            continue
        results = inline.results(node)
        for item in cell.inline:
            data = (results.get(item.expr) or {}).get("data") or {}
            if "text/plain" not in data or any(m in data for m in inline.HTML_PRIORITY[:-1]):
                continue  # Markdown, HTML or an image: shown as the value says
            plain = data["text/plain"]
            plain = "".join(plain) if isinstance(plain, list) else str(plain)
            if len(plain) < 2 or plain[0] != plain[-1] or plain[0] not in "'\"":
                continue  # not a str's repr
            try:
                value = ast.literal_eval(plain)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, str) and value != plain[1:-1]:
                problems.append(
                    f"{where(doc.path, item.line, root)}: inline `{{python}} {item.expr}` is a str that Quarto "
                    f"shows through its repr, as {plain[1:-1]}: return text2image.lang.Text or "
                    f"IPython.display.Markdown")
    if problems:
        raise BookError("\n".join(problems))
