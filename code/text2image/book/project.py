"""The book's chapter lists and configuration, read the way ``quarto render --profile <lang>,<compute>`` reads them.

``_quarto-fr.yml`` and ``_quarto-en.yml`` are what Quarto reads, so they are the
single source of truth: the runner never globs for chapters. A chapter that
exists in one language only (a list entry or a file without its twin) is an
error, because the two editions must stay the same book.

Quarto rules reproduced here (quarto-dev/quarto-cli):

- the home page: ``src/project/types/book/book-config.ts`` ``bookRenderItems``
  takes the first entry whose path, relative to the project root, starts with
  ``index.`` (``book-shared.ts`` ``isBookIndexPage``), moves it to the front,
  and fails with "Book contents must include a home page (e.g. index.md)"
  when there is none: ``book/fr/index.qmd`` does not count;
- an entry is a path or ``{href|file, text}``; ``text`` is the sidebar text
  (``website-navigation.ts`` ``resolveItem``);
- the configuration of a render: ``_quarto.yml``, then each active profile's
  ``_quarto-<name>.yml`` merged in reverse order so that the first profile
  named wins (``src/project/project-profile.ts`` ``mergeProfiles``), then
  ``_quarto.yml.local``; mappings merge key by key and lists are concatenated
  without duplicates (``src/core/config.ts`` ``mergeArrayCustomizer``); a
  profile group with no member named gets its first member
  (``--profile fr`` is ``fr,cpu``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from text2image.book.errors import BookError, where

LANGS = ("fr", "en")
HOME = "index"  # Quarto's home page: index.* at the project root
HOME_MISSING = "Book contents must include a home page (e.g. index.md)"  # Quarto's message, verbatim


@dataclass(frozen=True)
class Chapter:
    """One chapter file of one edition (the home page is one file shared by both)."""

    lang: str
    name: str  # file name without .qmd: the key that pairs fr and en
    path: Path  # absolute
    entry: str  # as written in the chapter list, e.g. book/fr/clip.qmd
    text: str | None = None  # the sidebar text given in the list, if any

    @property
    def folder(self) -> Path:
        """Where Quarto runs the chapter's kernel (the .qmd's own folder)."""
        return self.path.parent

    @property
    def home(self) -> bool:
        return self.name == HOME and self.entry.startswith(f"{HOME}.")


@dataclass
class Edition:
    """One language of the book: its profile file and its chapters in reading order (home page first)."""

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

    def active_profiles(self, lang: str, profile: str) -> list[str]:
        """The profiles of ``quarto render --profile <lang>,<profile>``, completed from ``profile.group``."""
        active = [lang, profile]
        for group in _groups(self.config):
            if not any(name in active for name in group):
                active.append(group[0])
        return active

    def render_config(self, lang: str, profile: str) -> dict:
        """The merged configuration Quarto renders the ``lang`` edition with, under ``profile``."""
        merged = {k: v for k, v in self.config.items() if k != "profile"}
        for name in reversed(self.active_profiles(lang, profile)):
            merged = merge(merged, profile_file(self.root, name))
        local = self.root / "_quarto.yml.local"
        if local.is_file():
            merged = merge(merged, _read_yaml(local, self.root))
        return merged

    def fig_options(self) -> dict:
        """The ``format.html`` figure options of ``_quarto.yml`` (fig-dpi, fig-width, ...)."""
        html = ((self.config.get("format") or {}).get("html") or {})
        return {k: v for k, v in html.items() if str(k).startswith("fig-")} if isinstance(html, dict) else {}


def merge(base, over):
    """Quarto's ``mergeConfigs``: mappings key by key, lists concatenated without duplicates, else ``over``."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    if isinstance(base, list) or isinstance(over, list):
        if base is None:
            return copy.deepcopy(over)
        if over is None:
            return copy.deepcopy(base)
        combined, seen = [], []
        for item in (base if isinstance(base, list) else [base]) + (over if isinstance(over, list) else [over]):
            if item not in seen:
                seen.append(item)
                combined.append(copy.deepcopy(item))
        return combined
    return copy.deepcopy(over)


def _groups(config: dict) -> list[list[str]]:
    group = (config.get("profile") or {}).get("group") if isinstance(config.get("profile"), dict) else None
    if isinstance(group, list) and group and all(isinstance(g, str) for g in group):
        return [group]
    if isinstance(group, list) and all(isinstance(g, list) for g in group):
        return [list(map(str, g)) for g in group if g]
    return []


def profile_file(root: Path, name: str) -> dict:
    """``_quarto-<name>.yml`` (or ``.yaml``), empty when the profile has no file."""
    for ext in (".yml", ".yaml"):
        path = root / f"_quarto-{name}{ext}"
        if path.is_file():
            return _read_yaml(path, root)
    return {}


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


def _entries(items, config_path: Path, root: Path) -> list[tuple[str, str | None]]:
    """Flatten ``book.chapters`` into ``(path, text)``: strings, ``{href|file, text}``, ``part:`` groups."""
    out: list[tuple[str, str | None]] = []
    for item in items or []:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, dict) and ("chapters" in item or "part" in item):
            part = item.get("part")
            if isinstance(part, str) and part.endswith(".qmd"):
                out.append((part, None))
            out.extend(_entries(item.get("chapters"), config_path, root))
        elif isinstance(item, dict) and ("href" in item or "file" in item):
            text = item.get("text")
            out.append((str(item.get("href") or item.get("file")), None if text is None else str(text)))
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
    home = next((i for i, (entry, _) in enumerate(entries) if entry.startswith(f"{HOME}.")), None)
    if home is None:
        raise BookError(
            f"{where(config_path, root=root)}: {HOME_MISSING} (Quarto's error: the chapter list needs a file "
            f"named index.* at the project root, as its home page; book/{lang}/index.qmd does not count)"
        )
    entries.insert(0, entries.pop(home))  # Quarto puts the home page first, wherever it is listed
    edition = Edition(lang, config_path, config)
    seen: set[str] = set()
    for entry, text in entries:
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
        edition.chapters.append(Chapter(lang, name, path, entry, text))
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
                twin = other.chapters[-1].folder / chapter.path.name
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
    # The root holds the one home page of both editions; files starting with _ are partials (Quarto skips them).
    folders = {lang: {c.folder for c in editions[lang].chapters if not c.home} for lang in LANGS}
    for lang, other in (("fr", "en"), ("en", "fr")):
        other_names = {p.stem for folder in folders[other] for p in folder.glob("*.qmd")}
        for folder in sorted(folders[lang]):
            for path in sorted(folder.glob("*.qmd")):
                if path.stem not in other_names and not path.name.startswith("_"):
                    raise BookError(
                        f"{where(path, root=root)}: this chapter exists in the {lang} edition only "
                        f"(no {path.name} in the {other} folder); write its twin or remove it"
                    )
    return Project(root, config, editions)
