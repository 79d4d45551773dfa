"""Read a Quarto chapter (``.qmd``) the way Quarto's Jupyter engine does.

A chapter is YAML front matter, Markdown, and ```` ```{python} ```` cells whose
first lines may be ``#| key: value`` options (a YAML block). We keep what the
later steps need and nothing else: the cells with their options and their line
in the file (every error message points at a line), the cross-reference labels
the chapter defines, the references it makes, the section headings, and the
inline expressions `` `{python} expr` `` to evaluate in the kernel.

``to_notebook`` builds the nbformat v4 notebook Quarto would build: a raw cell
for the front matter, Markdown cells, and code cells that keep their ``#|``
lines (Quarto strips them only while executing).

``profile_view`` reproduces Quarto's conditional content for profiles
(``.content-visible``/``.content-hidden`` with ``when-profile``/``unless-profile``,
``src/resources/filters/quarto-pre/content-hidden.lua``): the home page is one
file for both editions, each seeing its own preface. Hidden lines are blanked,
not removed, so every line number stays the file's. ``partition_title``
reproduces how Quarto reads a chapter's title and numbering from the raw file
(``src/core/pandoc/pandoc-partition.ts``, ``book-shared.ts`` ``isNumberedChapter``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from text2image.book.errors import BookError, where

# Cell options Quarto knows for Jupyter cells (a typo such as ``fig_cap`` must not pass silently).
KNOWN_OPTIONS = frozenset(
    """
    label echo eval output include warning error message code-fold code-summary code-overflow
    code-line-numbers code-annotations code-copy classes column panel tags id output-location
    fig-cap fig-subcap fig-alt fig-align fig-width fig-height fig-dpi fig-format fig-pos fig-env
    fig-scap fig-link fig-column fig-cap-location tbl-cap tbl-subcap tbl-colwidths tbl-column
    tbl-cap-location cap-location lst-label lst-cap layout layout-ncol layout-nrow layout-align
    layout-valign html-table-processing renderings cache file filename
    """.split()
)
# Fenced cells that Quarto renders without a kernel (diagrams): plain Markdown for us.
DIAGRAMS = frozenset({"mermaid", "dot"})
XREF_KINDS = ("fig", "tbl", "sec")

EXEC_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})[ \t]*\{(?P<lang>[A-Za-z][\w-]*)(?P<attrs>[^}]*)\}[ \t]*$")
FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
OPTION_LINE = re.compile(r"^#\s*\| ?")
# Quarto's own pattern for inline expressions (jupyter-inline.ts), for the python kernel.
INLINE = re.compile(r"(?P<pre>^|[^`])`\{python\}[ \t](?P<expr>[^`]+)`", re.MULTILINE)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
LABEL_DEF = re.compile(r"\{#(?P<name>(?:fig|tbl|sec)-[^\s}]*)")
REFERENCE = re.compile(r"(?<![\w@.\\/])@(?P<name>(?:fig|tbl|sec)-[\w-]*\w)")
# Pandoc citations (``[@key]``, ``@key``, ``[-@key]``): a key starts with a letter, digit or _, and
# may hold internal punctuation :.#$%&-+?<>~/ (pandoc's manual, "Citation syntax"); ``@{...}`` too.
CITATION = re.compile(r"(?<![\w@.\\/`])@(?:\{(?P<braced>[^}\s]+)\}|(?P<key>\w(?:[\w]|[:.#$%&\-+?<>~/](?=\w))*))")
# The prefixes that make ``@x-...`` a cross-reference, not a citation (Quarto's refs.lua validRefTypes).
CROSSREF_PREFIXES = frozenset("fig tbl lst eq sec thm lem cor prp cnj def exm exr sol rem".split())
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)(?P<title>[^)]*)\)(?P<attrs>\{[^}]*\})?")
HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"'](?P<src>[^\"']+)[\"']", re.IGNORECASE)
CALLOUT = re.compile(r"^ {0,3}:{3,}\s*(?:\{[^}]*?\.callout-(?P<kind>[\w-]+)[^}]*\}|callout-(?P<bare>[\w-]+))\s*$")
DIV_OPEN = re.compile(r"^ {0,3}(?P<colons>:{3,})\s*\{(?P<attrs>[^}]*)\}\s*$")
DIV_CLOSE = re.compile(r"^ {0,3}:{3,}\s*$")
CONDITION = re.compile(r"(?P<key>when|unless)-profile\s*=\s*[\"']?(?P<value>[^\"'\s}]+)")
# pandoc-partition.ts: fences of up to 3 spaces' indent; a heading is any line starting with #s and a space.
PARTITION_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
PARTITION_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")
PANDOC_TITLE = re.compile(r"^#{1,}\s(?:(.*)\s)?\{(.*)\}$")
HEADING = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<text>.*?)[ \t]*(?:\{(?P<attrs>[^{}]*)\})?[ \t]*$")


@dataclass
class Inline:
    """One `` `{python} expr` ``: where it sits in its Markdown cell and in the file."""

    expr: str
    line: int
    start: int  # span of the whole `...` in the cell source
    end: int


@dataclass
class Heading:
    level: int
    text: str
    ident: str | None
    classes: list[str]
    line: int
    offset: int  # line index inside the Markdown cell

    @property
    def numbered(self) -> bool:
        return "unnumbered" not in self.classes


@dataclass
class Cell:
    kind: str  # "code", "markdown" or "raw" (front matter)
    source: str  # code cells: with their #| lines, as Quarto keeps them
    line: int  # first line in the .qmd (code: the ```{python} line)
    end: int  # last line in the .qmd (code: the closing fence)
    options: dict = field(default_factory=dict)
    option_count: int = 0  # number of #| lines
    inline: list[Inline] = field(default_factory=list)
    headings: list[Heading] = field(default_factory=list)
    fenced_lines: frozenset = frozenset()  # Markdown line indexes inside non-executable fences

    @property
    def code(self) -> str:
        """The code without its ``#|`` option lines: what runs, and what fr and en must share."""
        return "\n".join(self.source.splitlines()[self.option_count:]).strip("\n")

    @property
    def label(self) -> str | None:
        value = self.options.get("label")
        return None if value is None else str(value)

    def option(self, name: str, default=True):
        return self.options.get(name, default)


@dataclass
class Label:
    name: str
    kind: str  # fig, tbl, sec, or "" for a plain cell label
    line: int
    cell: int  # index of the defining cell
    origin: str  # "cell" (a #| label) or "markdown" ({#...})


@dataclass
class Reference:
    name: str
    line: int


@dataclass
class Document:
    path: Path
    front_matter: dict
    cells: list[Cell]
    labels: list[Label]
    references: list[Reference]
    raw: str = ""  # the file as written (Quarto reads titles and numbering from it)
    citations: list[Reference] = field(default_factory=list)  # [@key] and @key, crossrefs excluded
    callouts: list[Reference] = field(default_factory=list)  # ::: {.callout-<kind>}: name is the kind

    def inline_expressions(self) -> list[Inline]:
        """Every `` `{python} expr` `` of the chapter, in reading order."""
        return [item for cell in self.cells for item in cell.inline]

    @property
    def title(self) -> str:
        """The chapter title: front matter ``title``, else the first level-1 heading."""
        if self.front_matter.get("title"):
            return str(self.front_matter["title"])
        for heading in self.headings():
            if heading.level == 1:
                return heading.text
        return self.path.stem

    def headings(self) -> list[Heading]:
        return [h for cell in self.cells for h in cell.headings]

    def code_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "code"]


def _conditional(attrs: str, active: set[str]) -> bool | None:
    """Whether a div with ``attrs`` shows for the ``active`` profiles (``None``: not a profile condition)."""
    classes = set(re.findall(r"\.([\w-]+)", attrs))
    kinds = classes & {"content-visible", "content-hidden"}
    conditions = CONDITION.findall(attrs)
    if not kinds or not conditions:
        return None
    met = all((value in active) == (key == "when") for key, value in conditions)
    return met if "content-visible" in kinds else not met


def profile_view(text: str, profiles) -> str:
    """``text`` as Quarto shows it with ``profiles`` active: hidden conditional divs blanked, line for line."""
    active = set(profiles)
    lines = text.split("\n")
    stack: list[bool | None] = []  # per open div: shown (True/False), or None for an ordinary div
    fence: str | None = None
    for index, line in enumerate(lines):
        hidden = any(shown is False for shown in stack)
        if fence is not None:
            if re.fullmatch(r"[ \t]*" + re.escape(fence[0]) + "{%d,}[ \t]*" % len(fence), line):
                fence = None
        elif (opened := FENCE_OPEN.match(line)) and not line.lstrip().startswith(":"):
            fence = opened.group("fence")
        elif (div := DIV_OPEN.match(line)):
            shown = _conditional(div.group("attrs"), active)
            stack.append(shown)
            if shown is not None:  # the condition's own fence lines are not content
                lines[index] = ""
                continue
        elif DIV_CLOSE.match(line) and stack:
            shown = stack.pop()
            if shown is not None:
                lines[index] = ""
                continue
        if hidden:
            lines[index] = ""
    return "\n".join(lines)


def partition_title(text: str) -> tuple[str | None, list[str]]:
    """The title Quarto reads from a chapter's raw text, and its classes: YAML ``title``, else the first heading.

    ``isNumberedChapter`` numbers a book chapter unless these classes hold
    ``unnumbered`` (``{-}`` counts, ``pandoc-attr.ts``). Includes and
    conditional content are not expanded: the Jupyter engine partitions the
    file as written, so the first heading of the raw file decides.
    """
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        close = next((j for j in range(1, len(lines)) if lines[j].strip() in ("---", "...")), None)
        if close is not None:
            try:
                front = yaml.safe_load("\n".join(lines[1:close])) or {}
            except yaml.YAMLError:
                front = {}
            if isinstance(front, dict) and isinstance(front.get("title"), str):
                return _pandoc_title(front["title"])
            lines = lines[close + 1:]
    fence = None
    previous: list[str] = []
    for line in lines:
        if fence:
            close = PARTITION_FENCE_CLOSE.match(line)
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                fence = None
            continue
        opened = PARTITION_FENCE_OPEN.match(line)
        if opened:
            fence = opened.group(1)
            continue
        if re.match(r"^#{1,}\s", line):
            return _pandoc_title(line)
        if (re.match(r"^=+\s*$", line) or re.match(r"^-+\s*$", line)) and previous and previous[-1]:
            return previous[-1], []
        previous.append(line)
    return None, []


def _pandoc_title(title: str) -> tuple[str, list[str]]:
    title = title.strip()
    match = PANDOC_TITLE.match(title)
    if match:
        return (match.group(1) or "").strip(), _attrs(match.group(2))[1]
    return re.sub(r"^#{1,}\s*", "", title).strip(), []


def _yaml_error_line(error: yaml.YAMLError, first_line: int) -> int:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return first_line + (mark.line if mark else 0)


def mask(text: str, code_spans: bool = True, fenced: frozenset = frozenset()) -> str:
    """``text`` with comments, fenced lines and (optionally) code spans blanked, same line/column layout.

    References and labels written inside code are examples, not references;
    blanking instead of deleting keeps every offset valid for error messages.
    """
    text = COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    lines = text.split("\n")
    for index in fenced:
        if index < len(lines):
            lines[index] = " " * len(lines[index])
    if code_spans:
        lines = [CODE_SPAN.sub(lambda m: " " * len(m.group()), line) for line in lines]
    return "\n".join(lines)


def _attrs(text: str | None) -> tuple[str | None, list[str]]:
    ident, classes = None, []
    for token in (text or "").split():
        if token.startswith("#"):
            ident = token[1:]
        elif token.startswith("."):
            classes.append(token[1:])
        elif token == "-":
            classes.append("unnumbered")  # pandoc-attr.ts: {-} is {.unnumbered}
    return ident, classes


def _markdown_cell(lines: list[str], first_line: int, fenced: set[int]) -> Cell | None:
    """A Markdown cell from raw lines, leading and trailing blank lines dropped."""
    start, stop = 0, len(lines)
    while start < stop and not lines[start].strip():
        start += 1
    while stop > start and not lines[stop - 1].strip():
        stop -= 1
    if start == stop:
        return None
    body = lines[start:stop]
    kept_fenced = frozenset(i - start for i in fenced if start <= i < stop)
    source = "\n".join(body)
    cell = Cell("markdown", source, first_line + start, first_line + stop - 1, fenced_lines=kept_fenced)
    visible = mask(source, code_spans=False, fenced=kept_fenced)
    for match in INLINE.finditer(visible):
        begin = match.start() + len(match.group("pre"))
        line = first_line + start + visible.count("\n", 0, begin)
        cell.inline.append(Inline(match.group("expr").strip(), line, begin, match.end()))
    for offset, text in enumerate(body):
        if offset in kept_fenced:
            continue
        match = HEADING.match(text)
        if match:
            ident, classes = _attrs(match.group("attrs"))
            cell.headings.append(Heading(len(match.group("hashes")), match.group("text").strip(), ident, classes,
                                         first_line + start + offset, offset))
    return cell


def _code_cell(path: Path, body: list[str], fence_line: int, close_line: int, root) -> Cell:
    option_lines = []
    for text in body:
        match = OPTION_LINE.match(text)
        if not match:
            break
        # Quarto strips spaces after a trailing colon before parsing.
        option_lines.append(re.sub(r":\s+$", ":", text[match.end():]))
    options: dict = {}
    if option_lines:
        try:
            options = yaml.safe_load("\n".join(option_lines))
        except yaml.YAMLError as error:
            line = _yaml_error_line(error, fence_line + 1)
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise BookError(f"{where(path, line, root)}: the #| option block of this cell is not YAML ({problem})") from None
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise BookError(
                f"{where(path, fence_line + 1, root)}: the #| option block of this cell is not YAML key: value pairs"
            )
    for offset, key in enumerate(options):
        if key not in KNOWN_OPTIONS:
            line = next((fence_line + 1 + i for i, t in enumerate(option_lines) if t.strip().startswith(f"{key}:")),
                        fence_line + 1 + offset)
            hint = f" (did you mean {str(key).replace('_', '-')!r}?)" if "_" in str(key) else ""
            raise BookError(f"{where(path, line, root)}: unknown cell option {key!r}{hint}")
    return Cell("code", "\n".join(body), fence_line, close_line, options, len(option_lines))


def parse(path: Path | str, root: Path | None = None, text: str | None = None, profiles=None) -> Document:
    """Parse one chapter (as seen with ``profiles`` active). Every problem raises ``BookError`` naming file and line."""
    path = Path(path)
    if text is None:
        text = path.read_text(encoding="utf-8")
    raw = text
    if profiles is not None:
        text = profile_view(text, profiles)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cells: list[Cell] = []
    front: dict = {}
    i = 0
    if lines and lines[0].strip() == "---":
        close = next((j for j in range(1, len(lines)) if lines[j].strip() in ("---", "...")), None)
        if close is None:
            raise BookError(f"{where(path, 1, root)}: the front matter (---) is never closed")
        try:
            front = yaml.safe_load("\n".join(lines[1:close])) or {}
        except yaml.YAMLError as error:
            raise BookError(f"{where(path, _yaml_error_line(error, 2), root)}: the front matter is not YAML") from None
        if not isinstance(front, dict):
            raise BookError(f"{where(path, 2, root)}: the front matter is not a YAML mapping")
        cells.append(Cell("raw", "\n".join(lines[: close + 1]), 1, close + 1))
        i = close + 1

    buffer: list[str] = []
    buffer_start = i + 1
    fenced: set[int] = set()
    fence: str | None = None
    fence_line = 0

    def flush(next_line: int):
        nonlocal buffer, buffer_start, fenced
        cell = _markdown_cell(buffer, buffer_start, fenced)
        if cell:
            cells.append(cell)
        buffer, fenced, buffer_start = [], set(), next_line

    while i < len(lines):
        text_line = lines[i]
        if fence is not None:  # inside a non-executable fence: nothing is a cell
            fenced.add(len(buffer))
            buffer.append(text_line)
            stripped = text_line.strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                fence = None
            i += 1
            continue
        opened = EXEC_OPEN.match(text_line)
        if opened and opened.group("lang") not in DIAGRAMS:
            lang = opened.group("lang")
            if lang != "python":
                raise BookError(f"{where(path, i + 1, root)}: {{{lang}}} cells are not supported; this book runs python only")
            ticks = len(opened.group("ticks"))
            close = next((j for j in range(i + 1, len(lines))
                          if re.fullmatch(r"[ \t]*`{%d,}[ \t]*" % ticks, lines[j])), None)
            if close is None:
                raise BookError(f"{where(path, i + 1, root)}: this ```{{python}} cell is never closed (no ``` line after it)")
            flush(close + 2)
            cells.append(_code_cell(path, lines[i + 1: close], i + 1, close + 1, root))
            i = close + 1
            buffer_start = i + 1
            continue
        plain = FENCE_OPEN.match(text_line)
        if plain:
            fence, fence_line = plain.group("fence"), i + 1
            fenced.add(len(buffer))
        buffer.append(text_line)
        i += 1
    if fence is not None:
        raise BookError(f"{where(path, fence_line, root)}: this {fence} block is never closed")
    flush(len(lines) + 1)

    labels, references = _labels_and_references(path, cells, root)
    citations, callouts = _citations_and_callouts(cells)
    return Document(path, front, cells, labels, references, raw, citations, callouts)


def citation_keys(text: str) -> list[tuple[str, int]]:
    """``(key, offset)`` of every citation in ``text`` (already masked), cross-references left out."""
    found = []
    for match in CITATION.finditer(text):
        key = match.group("braced") or match.group("key")
        if key.split("-", 1)[0] in CROSSREF_PREFIXES and "-" in key:
            continue
        found.append((key, match.start()))
    return found


def _citations_and_callouts(cells: list[Cell]) -> tuple[list[Reference], list[Reference]]:
    citations: list[Reference] = []
    callouts: list[Reference] = []
    for cell in cells:
        if cell.kind == "code":
            for key in ("fig-cap", "tbl-cap", "fig-alt"):
                caption = cell.options.get(key)
                for text in caption if isinstance(caption, list) else [caption]:
                    if isinstance(text, str):
                        citations += [Reference(name, cell.line) for name, _ in citation_keys(mask(text))]
        elif cell.kind == "markdown":
            visible = mask(cell.source, fenced=cell.fenced_lines)
            for name, offset in citation_keys(visible):
                citations.append(Reference(name, cell.line + visible.count("\n", 0, offset)))
            for offset, line in enumerate(visible.split("\n")):
                match = CALLOUT.match(line)
                if match:
                    callouts.append(Reference(match.group("kind") or match.group("bare"), cell.line + offset))
    return citations, callouts


def _labels_and_references(path: Path, cells: list[Cell], root) -> tuple[list[Label], list[Reference]]:
    labels: list[Label] = []
    references: list[Reference] = []
    for index, cell in enumerate(cells):
        if cell.kind == "code":
            if cell.label is not None:
                line = next((cell.line + 1 + k for k, t in enumerate(cell.source.splitlines()[: cell.option_count])
                             if "label" in t), cell.line)
                kind = cell.label.split("-", 1)[0] if "-" in cell.label else ""
                labels.append(Label(cell.label, kind if kind in XREF_KINDS else "", line, index, "cell"))
            for key in ("fig-cap", "tbl-cap"):
                caption = cell.options.get(key)
                for text in caption if isinstance(caption, list) else [caption]:
                    if isinstance(text, str):
                        for match in REFERENCE.finditer(text):
                            references.append(Reference(match.group("name"), cell.line))
        elif cell.kind == "markdown":
            visible = mask(cell.source, fenced=cell.fenced_lines)
            for match in LABEL_DEF.finditer(visible):
                name = match.group("name")
                line = cell.line + visible.count("\n", 0, match.start())
                labels.append(Label(name, name.split("-", 1)[0], line, index, "markdown"))
            for match in REFERENCE.finditer(visible):
                line = cell.line + visible.count("\n", 0, match.start())
                references.append(Reference(match.group("name"), line))
    return labels, references


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def to_notebook(doc: Document) -> nbformat.NotebookNode:
    """The notebook Quarto would execute: same cells, ``#|`` lines kept, kernel ``python3``.

    Cell ids are fixed (``cell-<n>``) so that two runs of an unchanged chapter
    give the same notebook; each cell remembers its lines in the ``.qmd``.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for index, cell in enumerate(doc.cells):
        if cell.kind == "code":
            node = nbformat.v4.new_code_cell(cell.source)
        elif cell.kind == "markdown":
            node = nbformat.v4.new_markdown_cell(cell.source)
        else:
            node = nbformat.v4.new_raw_cell(cell.source)
        node.id = f"cell-{index}"
        node.metadata["text2image"] = {"line": cell.line, "end": cell.end}
        nb.cells.append(node)
    return nb
