"""Numbers and words of an edition: chapters, sections, figures and tables, as a Quarto book writes them.

Chapters are numbered in list order, the home page included, skipping those
whose raw title is ``{.unnumbered}`` (``book-config.ts`` ``bookRenderItems``
with ``book-shared.ts`` ``isNumberedChapter``: a home page without
``.unnumbered`` becomes chapter 1 and shifts every other one); sections are
``<chapter>.<n>``; figures and tables are numbered per chapter (``Figure 2.1``),
or plainly (``Figure 1``) in an unnumbered chapter.

The words are Quarto's: ``crossref-<kind>-title`` / ``-prefix`` from its
language file for ``lang`` (``src/resources/language/_language.yml`` and
``_language-fr.yml``, copied below), overridden by the ``language:`` key of
the edition's configuration; a reference is prefix, no-break space, number
(``filters/crossref/refs.lua``), a reference to a chapter uses the ``ch``
prefix; a caption is title, no-break space, number, then ``crossref:
title-delim`` (default ``:``) and a space (``filters/crossref/format.lua``
``titlePrefix``). Quarto's French file says "Table": the book sets
"Tableau" in ``_quarto-fr.yml``, and the preview shows whichever Quarto would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from text2image.book.qmd import Document

from text2image.book.qmd import partition_title

# Quarto's built-in language files (the keys the preview uses), by the edition's ``lang``.
QUARTO_LANGUAGE = {
    "fr": {"crossref-fig-title": "Figure", "crossref-tbl-title": "Table", "crossref-sec-prefix": "Section",
           "crossref-ch-prefix": "Chapitre"},
    "en": {"crossref-fig-title": "Figure", "crossref-tbl-title": "Table", "crossref-sec-prefix": "Section",
           "crossref-ch-prefix": "Chapter"},
}
NBSP = "\u00a0"


def language(config: dict | None, lang: str) -> dict[str, str]:
    """Quarto's words for ``lang``, overridden by the configuration's ``language:`` key (flat or per language)."""
    words = dict(QUARTO_LANGUAGE[lang])
    given = (config or {}).get("language")
    if isinstance(given, dict):
        words.update({k: str(v) for k, v in given.items() if isinstance(v, (str, int, float))})
        if isinstance(given.get(lang), dict):
            words.update({k: str(v) for k, v in given[lang].items()})
    return words


def words(config: dict | None, lang: str) -> dict[str, str]:
    """Reference words per kind: ``fig``/``tbl`` (prefix, else title), ``sec`` and ``chapter``."""
    table = language(config, lang)
    out = {}
    for kind in ("fig", "tbl"):
        out[kind] = table.get(f"crossref-{kind}-prefix") or table[f"crossref-{kind}-title"]
    out["sec"] = table["crossref-sec-prefix"]
    out["chapter"] = table["crossref-ch-prefix"]
    out["fig-title"], out["tbl-title"] = table["crossref-fig-title"], table["crossref-tbl-title"]
    return out


def caption_separator(config: dict | None) -> str:
    """What follows the number in a caption: ``crossref: title-delim`` (Quarto's default ``:``) and a space."""
    delim = ((config or {}).get("crossref") or {}).get("title-delim", ":")
    return f"{delim} "


@dataclass
class Target:
    label: str
    kind: str  # fig, tbl, sec, chapter
    chapter: str  # chapter name (file stem): the page it lives on
    number: str | None  # None: unnumbered


@dataclass
class ChapterOutline:
    name: str
    title: str  # the text Quarto's sidebar shows (list text, else title, else the page's file name)
    number: int | None
    headings: dict[tuple[int, int], str | None] = field(default_factory=dict)  # (cell, line offset) -> number


@dataclass
class Outline:
    lang: str
    chapters: list[ChapterOutline]
    targets: dict[str, Target]
    words: dict[str, str] = field(default_factory=dict)
    separator: str = ": "

    def text(self, label: str, bare: bool = False) -> str:
        """The link text for ``@label`` (``bare`` for ``[-@label]``: the number alone)."""
        target = self.targets[label]
        if bare and target.number:
            return target.number
        word = self.words[target.kind]
        return f"{word}{NBSP}{target.number}" if target.number else word

    def caption(self, label: str) -> str:
        """``Tableau 2.1`` as a caption starts: the kind's title and the number."""
        target = self.targets[label]
        word = self.words[f"{target.kind}-title"]
        return f"{word}{NBSP}{target.number}" if target.number else word


def nav_text(doc: Document, entry_text: str | None = None) -> str:
    """The sidebar text: the list's ``text``, else the raw title, else the output file's name (``resolveItem``)."""
    if entry_text:
        return entry_text
    title, _ = partition_title(doc.raw) if doc.raw else (doc.title, [])
    return title or f"{doc.path.stem}.html"


def outline(lang: str, docs: list[Document], config: dict | None = None,
            texts: list[str | None] | None = None) -> Outline:
    chapters: list[ChapterOutline] = []
    targets: dict[str, Target] = {}
    number = 0
    for position, doc in enumerate(docs):
        name = doc.path.stem
        _, classes = partition_title(doc.raw) if doc.raw else (None, [])
        numbered = "unnumbered" not in classes
        if numbered:
            number += 1
        text = nav_text(doc, (texts or [None] * len(docs))[position])
        info = ChapterOutline(name, text, number if numbered else None)
        chapters.append(info)
        counters = [0] * 6
        heading_numbers: dict[str, str | None] = {}
        seen_h1 = False
        for index, cell in enumerate(doc.cells):
            for heading in cell.headings:
                value: str | None
                if heading.level == 1 and not seen_h1:
                    seen_h1 = True
                    value = str(number) if numbered else None
                    kind = "chapter"
                else:
                    depth = max(heading.level, 2) - 2
                    if numbered and heading.numbered:
                        counters[depth] += 1
                        for deeper in range(depth + 1, 6):
                            counters[deeper] = 0
                        value = ".".join([str(number)] + [str(c) for c in counters[: depth + 1]])
                    else:
                        value = None
                    kind = "sec"
                info.headings[(index, heading.offset)] = value
                if heading.ident:
                    heading_numbers[heading.ident] = value
                    if heading.ident.startswith("sec-"):
                        targets[heading.ident] = Target(heading.ident, kind, name, value)
        counts = {"fig": 0, "tbl": 0}
        for label in doc.labels:
            if label.kind in counts:
                counts[label.kind] += 1
                value = f"{number}.{counts[label.kind]}" if numbered else str(counts[label.kind])
                targets[label.name] = Target(label.name, label.kind, name, value)
            elif label.kind == "sec" and label.name not in targets:
                targets[label.name] = Target(label.name, "sec", name, heading_numbers.get(label.name))
    return Outline(lang, chapters, targets, words(config, lang), caption_separator(config))
