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

Ctrl-C stops it within seconds: the main thread interrupts every kernel
(``execute.RUNNING``), kills those still alive a few seconds later, freezes
and writes nothing of a chapter that did not finish, and ``build`` prints one
line and exits with 130 (the traceback only with ``--debug`` or
``TEXT2IMAGE_DEBUG=1``). Timings are reported with the number of threads each
kernel ran with (``execute.threads``).

The project root is a parameter (default: ``paths.repo_root()``), so the tests
run the same code on tiny throwaway books.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from text2image import paths, profiles
from text2image.book import checks, figures, freeze, preview, project, qmd, quarto
from text2image.book.errors import BookError, Interrupted, where
from text2image.book.execute import CELL_TIMEOUT, RUNNING, execute, kernel_env, threads as kernel_threads

DEBUG = "TEXT2IMAGE_DEBUG"  # set to 1 for the traceback of an error or an interrupt
STOP_GRACE = 5.0  # seconds the interrupted kernels get before they are killed


@dataclass
class ChapterRun:
    lang: str
    name: str
    status: str  # executed or frozen
    seconds: float
    threads: int = 1


@dataclass
class Report:
    profile: str
    runs: list[ChapterRun] = field(default_factory=list)
    render_seconds: float = 0.0
    total_seconds: float = 0.0
    threads: int = 1  # per kernel
    kernels: int = 1  # at once


def threads_text(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


def preview_dir(root: Path, profile: str) -> Path:
    """Where the static preview goes: ``build/smoke/preview`` for smoke (ignored), else ``_book/preview``."""
    return root / "build" / "smoke" / "preview" if profile == "smoke" else root / "_book" / "preview"


_SAY = threading.Lock()  # kernels run in threads; print writes a line and its newline in two calls


def _say(out: TextIO, text: str) -> None:
    with _SAY:
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


def parse_editions(proj: project.Project, profile: str = profiles.DEFAULT) -> dict[str, list[qmd.Document]]:
    """Every chapter of both editions, parsed as that edition's render sees it (its profiles active)."""
    return {lang: [qmd.parse(c.path, proj.root, profiles=proj.active_profiles(lang, profile))
                   for c in proj.editions[lang].chapters] for lang in project.LANGS}


def static_checks(proj: project.Project, profile: str = profiles.DEFAULT) -> dict[str, list[qmd.Document]]:
    """Parse every chapter of both editions and run the checks needing no kernel; all problems in one error.

    A parse error stops at once (nothing after it can be read); every other
    check runs to the end, and the ``BookError`` lists each problem found on
    its own line, so that one build tells an author everything to fix.
    """
    docs = parse_editions(proj, profile)
    problems: list[str] = []

    def attempt(check, *args) -> None:
        try:
            check(*args)
        except BookError as error:
            problems.extend(line for line in str(error).splitlines() if line.strip())

    attempt(checks.check_gitignore, proj.root)
    for lang in project.LANGS:
        attempt(checks.check_shared_freeze, docs[lang][0],
                {p: freeze.mode(proj.render_config(lang, p), docs[lang][0].front_matter) for p in profiles.PROFILES},
                proj.root)
    for lang in project.LANGS:
        attempt(checks.check_labels, lang, docs[lang], proj.root)
    for lang in project.LANGS:
        attempt(checks.check_references, lang, docs[lang], proj.root)
    for lang in project.LANGS:
        for doc in docs[lang]:
            attempt(checks.check_images, doc, proj.root)
            attempt(checks.check_alt_text, doc, proj.root)
            attempt(checks.check_placeholders, doc, proj.root)
    for lang in project.LANGS:
        attempt(lambda: checks.check_citations(
            docs[lang], checks.bibliography(proj.root, proj.render_config(lang, profile)), proj.root))
    for fr, en in zip(docs["fr"], docs["en"]):
        attempt(checks.check_parity, fr, en, proj.root)
        attempt(checks.check_french_typography, fr, proj.root)
    if problems:
        raise BookError("\n".join(dict.fromkeys(problems)))  # a shared page (the home) may say a thing twice
    return docs


def run(profile: str, langs: Iterable[str] = ("fr", "en"), chapters: Iterable[str] | None = None,
        force: bool = False, render: bool = True, root: Path | str | None = None,
        out: TextIO | None = None, jobs: int = 2) -> Report:
    """Do the work of ``build`` and return what ran; raises ``BookError`` on the first problem.

    Raises ``Interrupted`` when Ctrl-C (``KeyboardInterrupt`` in the main
    thread) stopped the chapters that were running: those are neither frozen
    nor written, the ones that finished before are kept.
    """
    out = out or sys.stdout
    started = time.perf_counter()
    root = Path(root).resolve() if root else paths.repo_root()
    profile = profiles.check(profile)
    langs = [lang for lang in project.LANGS if lang in set(langs or project.LANGS)]
    proj = project.load(root)
    docs = static_checks(proj, profile)
    selected = _select(proj.names, chapters)
    count = kernel_threads()
    inputs = freeze.inputs_digest(root)
    report = Report(profile, threads=count, kernels=max(1, min(jobs, len(langs))))
    keys = {(lang, chapter.name): freeze.chapter_key(chapter.path.read_text(encoding="utf-8"), profile, lang,
                                                     inputs, count)
            for lang in langs for chapter in proj.editions[lang].chapters}
    fig_options = proj.fig_options()
    failed = threading.Event()

    def run_edition(lang: str) -> list[ChapterRun]:
        """The selected chapters of one edition, in order; stops early once the other edition failed."""
        edition, runs = proj.editions[lang], []
        env = kernel_env(root, profile, lang, proj.active_profiles(lang, profile), threads=count)
        config = proj.render_config(lang, profile)
        for chapter, doc in zip(edition.chapters, docs[lang]):
            if chapter.name not in selected or failed.is_set():
                continue
            if RUNNING.stopping.is_set():
                break  # Ctrl-C: the main thread says so
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
                                 timeout=CELL_TIMEOUT[profile], fig_options=fig_options)
                    pngs = _checked_outputs(doc, nb, root, fig_options)  # before saving: a bad chapter is not frozen
                    if RUNNING.stopping.is_set():
                        raise Interrupted(chapter.path)
                    freeze.save(root, profile, lang, chapter.name, key, nb, time.perf_counter() - t0, count)
                else:
                    pngs = _checked_outputs(doc, nb, root, fig_options)
            except BaseException:
                failed.set()
                raise
            figures.write(root, profile, lang, pngs)  # only now: the whole chapter succeeded
            seconds = time.perf_counter() - t0
            runs.append(ChapterRun(lang, chapter.name, status, seconds, count))
            _say(out, f"{lang}  {chapter.name:<24} {status:<9} {seconds:7.1f} s  ({threads_text(count)})")
        return runs

    # The editions are independent (own kernels, figures and freeze files): on two cores,
    # running them side by side nearly halves the time, and every result stays the same.
    for runs in _in_threads(run_edition, langs, report.kernels):
        report.runs.extend(runs)
    if render:
        t0 = time.perf_counter()
        _render(proj, docs, langs, profile, keys, out, inputs)
        report.render_seconds = time.perf_counter() - t0
    report.total_seconds = time.perf_counter() - started
    return report


def _checked_outputs(doc, nb, root: Path, fig_options: dict) -> dict[str, bytes]:
    pngs = checks.figures(doc, nb, root)
    checks.check_figure_text(doc, nb, root, fig_options.get("fig-dpi", 96))
    checks.check_inline_text(doc, nb, root)
    return pngs


def _in_threads(function, items: list, workers: int) -> list:
    """``[function(item) for item in items]``, ``workers`` at a time, each in a daemon thread; Ctrl-C stops them.

    Daemon threads, so that a thread stuck in a dead kernel's socket never
    keeps the process alive. On ``KeyboardInterrupt`` the kernels are
    interrupted, killed after ``STOP_GRACE`` seconds (at once on a second
    Ctrl-C), the threads given a few more seconds, then ``Interrupted``
    names the chapters that were running. The main thread waits by polling
    what the workers report, never in ``Thread.join``: a ``KeyboardInterrupt``
    raised inside ``join`` marks a still running thread as stopped
    (CPython's ``_wait_for_tstate_lock`` releases the lock the thread holds).
    """
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    pending = list(enumerate(items))
    lock = threading.Lock()
    count = max(1, min(workers, len(items)))
    finished: list[int] = []

    def worker() -> None:
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    index, item = pending.pop(0)
                try:
                    results[index] = function(item)
                except BaseException as error:  # noqa: BLE001 - handed to the main thread
                    errors[index] = error
        finally:
            with lock:
                finished.append(1)

    def running() -> bool:
        with lock:
            return len(finished) < count

    RUNNING.reset()
    for n in range(count):
        threading.Thread(target=worker, daemon=True, name=f"t2i-edition-{n}").start()
    try:
        while running():
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(running)
        stopped = [str(errors[i].path) for i in sorted(errors) if isinstance(errors[i], Interrupted)]
        raise Interrupted(", ".join(stopped)) from None
    finally:
        RUNNING.reset()
    for index in sorted(errors):
        if not isinstance(errors[index], Interrupted):
            raise errors[index]
    for index in sorted(errors):
        raise errors[index]
    return [results[index] for index in range(len(items))]


def _stop(running) -> None:
    """Interrupt every kernel, kill them after ``STOP_GRACE`` s (at once on a second Ctrl-C), wait for the threads."""
    RUNNING.interrupt()
    deadline = time.monotonic() + STOP_GRACE
    killed = False
    while running():
        try:
            if time.monotonic() > deadline:
                if killed:
                    return  # daemon threads: they die with the process
                RUNNING.kill()
                killed, deadline = True, time.monotonic() + STOP_GRACE
            time.sleep(0.1)
        except KeyboardInterrupt:
            RUNNING.kill()
            killed, deadline = True, time.monotonic() + STOP_GRACE


def _render(proj: project.Project, docs, langs: list[str], profile: str, keys, out: TextIO, inputs: str) -> None:
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
        cache_key = "|".join([profile, lang, inputs, json.dumps(config, sort_keys=True, default=str)]
                             + [f"{n}:{keys[(lang, n)]}:{ran}" for n, ran in zip(proj.names, executed)])
        wrote = preview.write_edition(lang, docs[lang], notebooks, executed, config,
                                      target / lang, cache_key, [c.text for c in proj.editions[lang].chapters],
                                      proj.root, checks.bibliography_files(proj.root, config))
        _say(out, f"{lang}  preview{'':<19} {'written' if wrote else 'unchanged':<9} {time.perf_counter() - t0:7.1f} s")
    preview.write_root_index(target, proj.names[0])


def build(profile: str | None = None, langs: Iterable[str] = ("fr", "en"), chapters: Iterable[str] | None = None,
          force: bool = False, render: bool = True, root: Path | str | None = None, debug: bool = False) -> int:
    """Entry point of ``python -m text2image book``; returns the exit status (0 when all went well).

    Errors and Ctrl-C are one line on stderr (exit 1 and 130); ``debug`` or
    ``TEXT2IMAGE_DEBUG=1`` adds the traceback.
    """
    debug = debug or os.environ.get(DEBUG, "").strip() not in ("", "0")
    try:
        profile = profiles.check(profile) if profile else profiles.current()
    except profiles.ProfileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        report = run(profile, langs, chapters, force, render, root)
    except BookError as error:
        if debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as error:
        if debug:
            traceback.print_exc()
        stopped = str(error).split(", ") if isinstance(error, Interrupted) and str(error) else []
        base = Path(root).resolve() if root else paths.repo_root()
        names = ", ".join(where(path, root=base) for path in stopped)
        print("interrupted: " + (f"stopped {names}; " if names else "")
              + "nothing of an unfinished chapter was frozen or written", file=sys.stderr, flush=True)
        return 130
    executed = sum(r.status == "executed" for r in report.runs)
    print(f"book ({profile}): {executed} chapter(s) executed, {len(report.runs) - executed} frozen, "
          f"{report.total_seconds:.1f} s, {threads_text(report.threads)} per kernel", flush=True)
    return 0
