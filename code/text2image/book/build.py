"""``python -m text2image book``: check, execute and render the book, in that order.

1. Read the chapter lists (``_quarto-fr.yml``, ``_quarto-en.yml``; a root
   home page or Quarto's error) and parse every chapter of both editions as
   that edition's render sees it; check labels, references, fr/en parity,
   ``.gitignore`` and the freeze of the shared home page. All of this happens
   before any kernel starts, so bad input fails in seconds.
2. Execute each requested chapter in its own kernel, unless the render's
   ``freeze`` allows reusing its stored result; check its figures; keep the
   executed notebook; write figures.
3. Render: ``quarto render`` when Quarto is installed (``quarto``), else a
   static HTML preview.

The project root is a parameter (default: ``paths.repo_root()``), so the tests
run the same code on tiny throwaway books.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from text2image import paths, profiles
from text2image.book import checks, figures, freeze, preview, project, qmd, quarto
from text2image.book.errors import BookError, where
from text2image.book.execute import CELL_TIMEOUT, execute, kernel_env


@dataclass
class ChapterRun:
    lang: str
    name: str
    status: str  # executed or frozen
    seconds: float


@dataclass
class Report:
    profile: str
    runs: list[ChapterRun] = field(default_factory=list)
    render_seconds: float = 0.0
    total_seconds: float = 0.0


def preview_dir(root: Path, profile: str) -> Path:
    """Where the static preview goes: ``build/smoke/preview`` for smoke (ignored), else ``_book/preview``."""
    return root / "build" / "smoke" / "preview" if profile == "smoke" else root / "_book" / "preview"


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _select(names: list[str], wanted: Iterable[str] | None) -> list[str]:
    if not wanted:
        return names
    chosen = []
    for item in wanted:
        name = Path(item).stem  # accept foundations, foundations.qmd, book/fr/foundations.qmd
        if name not in names:
            raise BookError(f"no chapter named {item!r}; the chapters are: {', '.join(names)}")
        chosen.append(name)
    return [n for n in names if n in chosen]


def static_checks(proj: project.Project, profile: str = profiles.DEFAULT) -> dict[str, list[qmd.Document]]:
    """Parse every chapter of both editions (with the edition's profiles active) and run the checks needing no kernel."""
    docs = {lang: [qmd.parse(c.path, proj.root, profiles=proj.active_profiles(lang, profile))
                   for c in proj.editions[lang].chapters] for lang in project.LANGS}
    checks.check_gitignore(proj.root)
    for lang in project.LANGS:
        checks.check_shared_freeze(docs[lang][0], {p: freeze.mode(proj.render_config(lang, p), docs[lang][0].front_matter)
                                                    for p in profiles.PROFILES}, proj.root)
    for lang in project.LANGS:
        checks.check_labels(lang, docs[lang], proj.root)
    for lang in project.LANGS:
        checks.check_references(lang, docs[lang], proj.root)
    for fr, en in zip(docs["fr"], docs["en"]):
        checks.check_parity(fr, en, proj.root)
        checks.check_french_typography(fr, proj.root)
    return docs


def run(profile: str, langs: Iterable[str] = ("fr", "en"), chapters: Iterable[str] | None = None,
        force: bool = False, render: bool = True, root: Path | str | None = None,
        out: TextIO | None = None, jobs: int = 2) -> Report:
    """Do the work of ``build`` and return what ran; raises ``BookError`` on the first problem."""
    out = out or sys.stdout
    started = time.perf_counter()
    root = Path(root).resolve() if root else paths.repo_root()
    profile = profiles.check(profile)
    langs = [lang for lang in project.LANGS if lang in set(langs or project.LANGS)]
    proj = project.load(root)
    docs = static_checks(proj, profile)
    selected = _select(proj.names, chapters)
    inputs = freeze.inputs_digest(root)
    report = Report(profile)
    keys = {(lang, chapter.name): freeze.chapter_key(chapter.path.read_text(encoding="utf-8"), profile, lang, inputs)
            for lang in langs for chapter in proj.editions[lang].chapters}
    failed = threading.Event()

    def run_edition(lang: str) -> list[ChapterRun]:
        """The selected chapters of one edition, in order; stops early once the other edition failed."""
        edition, runs = proj.editions[lang], []
        env = kernel_env(root, profile, lang, proj.active_profiles(lang, profile))
        config = proj.render_config(lang, profile)
        for chapter, doc in zip(edition.chapters, docs[lang]):
            if chapter.name not in selected or failed.is_set():
                continue
            key = keys[(lang, chapter.name)]
            t0 = time.perf_counter()
            reuse = freeze.mode(config, doc.front_matter)
            nb = None if force or reuse is False else \
                freeze.load(root, profile, lang, chapter.name, key if reuse == "auto" else None)
            status = "frozen"
            try:
                if nb is None:
                    status = "executed"
                    nb = execute(doc, qmd.to_notebook(doc), cwd=chapter.folder, env=env, root=root,
                                 timeout=CELL_TIMEOUT[profile], fig_options=proj.fig_options())
                    pngs = checks.figures(doc, nb, root)  # before saving: a bad chapter is not frozen
                    freeze.save(root, profile, lang, chapter.name, key, nb, time.perf_counter() - t0)
                else:
                    pngs = checks.figures(doc, nb, root)
            except BaseException:
                failed.set()
                raise
            figures.write(root, profile, lang, pngs)  # only now: the whole chapter succeeded
            seconds = time.perf_counter() - t0
            runs.append(ChapterRun(lang, chapter.name, status, seconds))
            _say(out, f"{lang}  {chapter.name:<24} {status:<9} {seconds:7.1f} s")
        return runs

    # The editions are independent (own kernels, figures and freeze files): on two cores,
    # running them side by side nearly halves the time, and every result stays the same.
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(langs)))) as pool:
        futures = [pool.submit(run_edition, lang) for lang in langs]
        for future in futures:
            report.runs.extend(future.result())
    if render:
        t0 = time.perf_counter()
        _render(proj, docs, langs, profile, keys, out)
        report.render_seconds = time.perf_counter() - t0
    report.total_seconds = time.perf_counter() - started
    return report


def _render(proj: project.Project, docs, langs: list[str], profile: str, keys, out: TextIO) -> None:
    if shutil.which("quarto"):
        status = quarto.render(proj.root, profile, langs, out)
        if status != 0:
            raise BookError(f"quarto render failed (exit {status}) for the {profile} profile")
        return
    target = preview_dir(proj.root, profile)
    _say(out, f"quarto not found: writing a static HTML preview instead, in {where(target, root=proj.root)}/ "
              f"(open {where(target / langs[0] / (proj.names[0] + '.html'), root=proj.root)})")
    for lang in langs:
        t0 = time.perf_counter()
        notebooks, executed = [], []
        for chapter, doc in zip(proj.editions[lang].chapters, docs[lang]):
            nb = freeze.load(proj.root, profile, lang, chapter.name, keys[(lang, chapter.name)])
            executed.append(nb is not None)
            notebooks.append(nb if nb is not None else qmd.to_notebook(doc))
        config = proj.render_config(lang, profile)
        cache_key = "|".join([profile, lang, freeze.inputs_digest(proj.root), json.dumps(config, sort_keys=True,
                                                                                       default=str)]
                             + [f"{n}:{keys[(lang, n)]}:{ran}" for n, ran in zip(proj.names, executed)])
        wrote = preview.write_edition(lang, docs[lang], notebooks, executed, config,
                                      target / lang, cache_key, [c.text for c in proj.editions[lang].chapters],
                                      proj.root)
        _say(out, f"{lang}  preview{'':<19} {'written' if wrote else 'unchanged':<9} {time.perf_counter() - t0:7.1f} s")
    preview.write_root_index(target, proj.names[0])


def build(profile: str | None = None, langs: Iterable[str] = ("fr", "en"), chapters: Iterable[str] | None = None,
          force: bool = False, render: bool = True, root: Path | str | None = None) -> int:
    """Entry point of ``python -m text2image book``; returns the exit status (0 when all went well)."""
    try:
        profile = profiles.check(profile) if profile else profiles.current()
    except profiles.ProfileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        report = run(profile, langs, chapters, force, render, root)
    except BookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    executed = sum(r.status == "executed" for r in report.runs)
    print(f"book ({profile}): {executed} chapter(s) executed, {len(report.runs) - executed} frozen, "
          f"{report.total_seconds:.1f} s", flush=True)
    return 0
