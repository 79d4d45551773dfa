"""Numbers of an edition: chapters, sections, figures and tables, as a Quarto book numbers them.

Chapters are numbered in list order, skipping those whose title is
``{.unnumbered}``; sections are ``<chapter>.<n>``; figures and tables are
numbered per chapter (``Figure 2.1``), or plainly (``Figure 1``) in an
unnumbered chapter. The preview uses these numbers for headings, captions and
the text of every ``@fig-``/``@tbl-``/``@sec-`` link.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from text2image.book.qmd import Document

WORDS = {
    "fr": {"fig": "Figure", "tbl": "Tableau", "sec": "Section", "chapter": "Chapitre"},
    "en": {"fig": "Figure", "tbl": "Table", "sec": "Section", "chapter": "Chapter"},
}
NBSP = "\u00a0"


def caption_separator(lang: str) -> str:
    """``Figure 2.1 : texte`` in French typography, ``Figure 2.1: text`` in English."""
    return f"{NBSP}: " if lang == "fr" else ": "


@dataclass
class Target:
    label: str
    kind: str  # fig, tbl, sec, chapter
    chapter: str  # chapter name (file stem): the page it lives on
    number: str | None  # None: unnumbered


@dataclass
class ChapterOutline:
    name: str
    title: str
    number: int | None
    headings: dict[tuple[int, int], str | None] = field(default_factory=dict)  # (cell, line offset) -> number


@dataclass
class Outline:
    lang: str
    chapters: list[ChapterOutline]
    targets: dict[str, Target]

    def text(self, label: str, bare: bool = False) -> str:
        """The link text for ``@label`` (``bare`` for ``[-@label]``: the number alone)."""
        target = self.targets[label]
        if bare and target.number:
            return target.number
        word = WORDS[self.lang][target.kind]
        return f"{word}{NBSP}{target.number}" if target.number else word


def outline(lang: str, docs: list[Document]) -> Outline:
    chapters: list[ChapterOutline] = []
    targets: dict[str, Target] = {}
    number = 0
    for doc in docs:
        name = doc.path.stem
        headings = doc.headings()
        h1 = next((h for h in headings if h.level == 1), None)
        numbered = (h1.numbered if h1 else True) and doc.front_matter.get("number-sections", True) is not False
        if numbered:
            number += 1
        info = ChapterOutline(name, doc.title, number if numbered else None)
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
    return Outline(lang, chapters, targets)
