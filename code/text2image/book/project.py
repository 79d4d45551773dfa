"""The book's chapter lists, read from ``_quarto-fr.yml`` and ``_quarto-en.yml``.

Those two files are what ``quarto render --profile fr|en`` reads, so they are
the single source of truth: the runner never globs for chapters. A chapter that
exists in one language only (a list entry or a file without its twin) is an
error, because the two editions must stay the same book.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from text2image.book.errors import BookError, where

LANGS = ("fr", "en")


@dataclass(frozen=True)
class Chapter:
    """One chapter file of one edition."""

    lang: str
    name: str  # file name without .qmd: the key that pairs fr and en
    path: Path  # absolute
    entry: str  # as written in the chapter list, e.g. book/fr/index.qmd

    @property
    def folder(self) -> Path:
        """Where Quarto runs the chapter's kernel (the .qmd's own folder)."""
        return self.path.parent


@dataclass
class Edition:
    """One language of the book: its config and its chapters in reading order."""

    lang: str
    config_path: Path
    config: dict
    chapters: list[Chapter] = field(default_factory=list)

    @property
    def title(self) -> str:
        return str((self.config.get("book") or {}).get("title") or "")

    def chapter(self, name: str) -> Chapter:
        for chapter in self.chapters:
            if chapter.name == name:
                return chapter
        raise KeyError(name)


@dataclass
class Project:
    root: Path
    config: dict  # _quarto.yml
    editions: dict[str, Edition]

    @property
    def names(self) -> list[str]:
        """Chapter names in reading order (identical in both editions, checked on load)."""
        return [c.name for c in self.editions[LANGS[0]].chapters]

    def fig_options(self) -> dict:
        """The ``format.html`` figure options of ``_quarto.yml`` (fig-dpi, fig-width, ...)."""
        html = ((self.config.get("format") or {}).get("html") or {})
        return {k: v for k, v in html.items() if str(k).startswith("fig-")} if isinstance(html, dict) else {}


def _read_yaml(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise BookError(f"{where(path, root=root)}: file not found (the book needs it)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise BookError(f"{where(path, line, root)}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BookError(f"{where(path, root=root)}: expected a YAML mapping at the top")
    return data


def _line_of(path: Path, text: str) -> int | None:
    """The first line of ``path`` that mentions ``text`` (to point at a list entry)."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return number
    return None


def _entries(items, config_path: Path, root: Path) -> list[str]:
    """Flatten ``book.chapters`` (strings, and ``part:`` groups with their own ``chapters``)."""
    out: list[str] = []
    for item in items or []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and ("chapters" in item or "part" in item):
            part = item.get("part")
            if isinstance(part, str) and part.endswith(".qmd"):
                out.append(part)
            out.extend(_entries(item.get("chapters"), config_path, root))
        elif isinstance(item, dict) and "href" in item:
            out.append(str(item["href"]))
        else:
            raise BookError(f"{where(config_path, root=root)}: cannot read chapter entry {item!r}")
    return out


def _edition(root: Path, lang: str) -> Edition:
    config_path = root / f"_quarto-{lang}.yml"
    config = _read_yaml(config_path, root)
    book = config.get("book") or {}
    entries = _entries(book.get("chapters"), config_path, root) + _entries(book.get("appendices"), config_path, root)
    if not entries:
        raise BookError(f"{where(config_path, root=root)}: no book.chapters list")
    edition = Edition(lang, config_path, config)
    seen: set[str] = set()
    for entry in entries:
        line = _line_of(config_path, entry)
        if not entry.endswith(".qmd"):
            raise BookError(f"{where(config_path, line, root)}: chapter {entry!r} is not a .qmd file")
        path = (root / entry).resolve()
        if not path.is_file():
            raise BookError(f"{where(config_path, line, root)}: chapter {entry} does not exist")
        name = path.stem
        if name in seen:
            raise BookError(f"{where(config_path, line, root)}: chapter name {name!r} is listed twice")
        seen.add(name)
        edition.chapters.append(Chapter(lang, name, path, entry))
    return edition


def load(root: Path) -> Project:
    """Read ``_quarto.yml`` and both language profiles; check the editions have the same chapters."""
    root = Path(root).resolve()
    config = _read_yaml(root / "_quarto.yml", root)
    editions = {lang: _edition(root, lang) for lang in LANGS}
    fr, en = (editions[lang] for lang in LANGS)
    names = {lang: [c.name for c in editions[lang].chapters] for lang in LANGS}
    for this, other in ((fr, en), (en, fr)):
        for chapter in this.chapters:
            if chapter.name not in names[other.lang]:
                twin = other.chapters[0].folder / chapter.path.name if other.chapters else chapter.path.name
                raise BookError(
                    f"{where(chapter.path, root=root)}: chapter {chapter.name!r} is in the {this.lang} edition only "
                    f"({where(this.config_path, _line_of(this.config_path, chapter.entry), root)} lists it, "
                    f"{other.config_path.name} does not); add {where(twin, root=root)} to "
                    f"{other.config_path.name} or remove it from {this.config_path.name}"
                )
    if names["fr"] != names["en"]:
        raise BookError(
            f"{fr.config_path.name} and {en.config_path.name} list the chapters in different orders: "
            f"{names['fr']} vs {names['en']}"
        )
    # A chapter file with no twin in the other language's folder (listed or not) is half a chapter.
    folders = {lang: {c.folder for c in editions[lang].chapters} for lang in LANGS}
    for lang, other in (("fr", "en"), ("en", "fr")):
        other_names = {p.stem for folder in folders[other] for p in folder.glob("*.qmd")}
        for folder in sorted(folders[lang]):
            for path in sorted(folder.glob("*.qmd")):
                if path.stem not in other_names:
                    raise BookError(
                        f"{where(path, root=root)}: this chapter exists in the {lang} edition only "
                        f"(no {path.name} in the {other} folder); write its twin or remove it"
                    )
    return Project(root, config, editions)
