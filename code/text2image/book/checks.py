"""What must hold before and after a chapter runs, each failure said in one message.

Static checks (labels, references, fr/en parity) run on every chapter before any
kernel starts, so a typo fails in a second rather than after an hour of
training. The output check runs after execution: a ``fig-`` cell must draw
exactly one image, the one the book's ``figures/`` folder keeps.
"""

from __future__ import annotations

import base64
import difflib
import re
from pathlib import Path

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
# A plain space where French typography wants a no-break one: before ; : ! ? » and after «.
FRENCH_SPACE = re.compile(r"(?<=\S) (?=[;:!?»])|(?<=«) ")


def check_french_typography(doc: Document, root: Path) -> None:
    """In French prose and captions, the space before ; : ! ? » and after « must not break (U+00A0 or U+202F)."""
    from text2image.book.qmd import mask

    for cell in doc.cells:
        if cell.kind == "code":
            _check_french_captions(doc, cell, root)
            continue
        if cell.kind != "markdown":
            continue
        text = MATH.sub(lambda m: " " * len(m.group()), mask(cell.source, fenced=cell.fenced_lines))
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
    """The two editions of a chapter share code cells (``#|`` lines aside) and labels, in order."""
    both = f"{where(fr.path, root=root)} and {where(en.path, root=root)}"
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
