"""Run one chapter in its own Jupyter kernel, cell by cell, as Quarto's Jupyter engine does.

Quarto starts a ``python3`` kernel in the chapter's folder, runs the code cells
in order (``#|`` lines stripped so that cell magics work) and, for each
Markdown cell, evaluates its inline expressions `` `{python} expr` `` right
after the code cells before it (``inline``). We do the same with nbclient, so
the notebook we keep is the one Quarto would keep.

The kernel's environment is the one Quarto gives it: the project's
``_environment`` files (``src/quarto-core/dotenv.ts``: ``_environment.local``
first, then ``_environment-<profile>`` with the first active profile first,
then ``_environment``; a variable is set only where it is not set already),
which is how the book turns progress bars off in chapters and only there.

The kernel is the interpreter running this code: jupyter_client rewrites a
kernelspec's ``python`` to ``sys.executable``, so a venv runs its own kernel.

Three things the runner adds, none of which changes what a cell computes:

- threads: every kernel runs torch and the BLAS libraries with ``threads()``
  threads (1 unless ``TEXT2IMAGE_THREADS`` says otherwise), so that the two
  editions' kernels do not oversubscribe two cores and a figure does not
  depend on the machine's core count (a reduction split over more threads
  sums in another order);
- figure text: a hook records the smallest text each matplotlib figure is
  drawn with and shows it beside the PNG (``FIGURE_TEXT``), which
  ``checks.figure_text`` holds against ``plots.MIN_TEXT_PT``;
- stopping: ``RUNNING`` knows every live kernel, so that Ctrl-C in the main
  thread interrupts them all (then kills those that do not stop), and a
  stopped chapter raises ``Interrupted`` rather than passing for done.

Shutting a kernel down does not interrupt it first: jupyter_client's
``_async_shutdown_kernel`` (``manager.py``) sends SIGINT before the shutdown
request, and a kernel that gets it between two messages logs
``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` into the build
log (ipykernel ``kernelbase.py`` ``dispatch_shell``). The kernel is idle when
the runner shuts it down, and the shutdown request travels on the control
channel, which ipykernel serves even while a cell runs: the interrupt is not
needed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from text2image.book import inline
from text2image.book.errors import BookError, Interrupted, strip_ansi, where
from text2image.book.qmd import Document

# Seconds one cell may run: the cpu profile may train a missing checkpoint on a laptop.
CELL_TIMEOUT = {"smoke": 300, "cpu": 3600, "gpu": 7200}

# Quarto's defaults for HTML figures (7 x 5 inches, png), overridden by _quarto.yml's format.html.fig-*.
# Then the figure-text hook: Text.draw records the smallest visible text of its figure (Figure.draw
# starts the record afresh), and a display formatter shows the record beside the figure's PNG, so the
# sizes travel with the very image the page shows (in the notebook, frozen or not).
SETUP = """\
def __text2image_setup(width, height, dpi, fmt, mime):
    try:
        import functools
        import matplotlib.pyplot as plt
        from matplotlib.figure import Figure
        from matplotlib.text import Text
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    plt.rcParams['figure.figsize'] = (width, height)
    plt.rcParams['figure.dpi'] = dpi
    plt.rcParams['savefig.dpi'] = dpi
    set_matplotlib_formats(fmt)

    def root(artist):
        figure = artist.get_figure(root=True) if hasattr(artist, 'get_figure') else artist.figure
        while figure is not None and getattr(figure, 'figure', figure) is not figure:
            figure = figure.figure
        return figure

    def record(text):
        figure = root(text)
        content = text.get_text()
        if figure is None or not text.get_visible() or not content.strip() or text.get_alpha() == 0:
            return
        size = float(text.get_fontsize())
        smallest = figure.__dict__.get('_text2image_smallest')
        if smallest is None or size < smallest[0]:
            figure._text2image_smallest = (size, ' '.join(content.split())[:40])

    text_draw, figure_draw = Text.draw, Figure.draw

    @functools.wraps(text_draw)
    def draw_text(self, renderer, *args, **kwargs):
        record(self)
        return text_draw(self, renderer, *args, **kwargs)

    @functools.wraps(figure_draw)
    def draw_figure(self, renderer, *args, **kwargs):
        self._text2image_smallest = None
        return figure_draw(self, renderer, *args, **kwargs)

    Text.draw, Figure.draw = draw_text, draw_figure

    from IPython import get_ipython
    from IPython.core.formatters import JSONFormatter
    from traitlets import Unicode

    class FigureText(JSONFormatter):
        format_type = Unicode(mime)

    def describe(figure):
        if '_text2image_smallest' not in figure.__dict__:
            figure.draw_without_rendering()  # shown in no image format that draws it
        smallest = figure._text2image_smallest
        width, height = figure.get_size_inches()
        return {'dpi': float(figure.dpi), 'width_in': float(width), 'height_in': float(height),
                'smallest_pt': None if smallest is None else smallest[0],
                'smallest_text': None if smallest is None else smallest[1]}

    formatters = get_ipython().display_formatter.formatters
    formatters[mime] = FigureText(parent=get_ipython().display_formatter)  # last: after the image is drawn
    formatters[mime].for_type(Figure, describe)

"""
SETUP_CALL = "__text2image_setup({width!r}, {height!r}, {dpi!r}, {fmt!r}, {mime!r})\ndel __text2image_setup\n"
FIGURE_TEXT = "application/vnd.text2image.figure-text+json"  # what the hook shows beside a figure's PNG

THREADS = "TEXT2IMAGE_THREADS"
# What torch (its intra-op pool reads OMP_NUM_THREADS), NumPy's BLAS and numexpr read at start-up.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


def threads(environ=None) -> int:
    """Threads per chapter kernel: ``TEXT2IMAGE_THREADS``, else 1 (the same figures on every machine)."""
    value = (os.environ if environ is None else environ).get(THREADS, "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise BookError(f"{THREADS}={value!r} is not a number of threads (a whole number, at least 1)")
    return int(value)


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (quotes stripped, ``#`` comments and blank lines skipped), as dotenv reads them."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key] = value
    return values


def quarto_environment(root: Path, profiles: list[str]) -> dict[str, str]:
    """The variables Quarto's ``_environment`` files give a render with ``profiles`` active, by priority."""
    files = [root / "_environment.local", *(root / f"_environment-{p}" for p in profiles), root / "_environment"]
    values: dict[str, str] = {}
    for path in files:
        if path.is_file():
            for key, value in read_dotenv(path).items():
                values.setdefault(key, value)
    return values


def kernel_env(root: Path, profile: str, lang: str, profiles: list[str] | None = None,
               threads: int = 1) -> dict[str, str]:
    """The kernel's environment: Quarto's ``_environment`` files, the edition's profile and language, no randomness.

    ``PYTHONHASHSEED`` fixes set/dict orders, ``MPLCONFIGDIR`` keeps a user's
    matplotlibrc out of the book, ``SOURCE_DATE_EPOCH`` fixes dates matplotlib
    writes into PDF/SVG. PNGs from the inline backend carry no date. The
    thread variables are pinned to ``threads``, whatever the caller's
    environment says (``OMP_NUM_THREADS`` of a shell included).
    """
    env = dict(os.environ)
    for key, value in quarto_environment(root, profiles or [lang, profile]).items():
        env.setdefault(key, value)
    env.update({name: str(threads) for name in (*THREAD_VARIABLES, THREADS)})
    env.update(
        TEXT2IMAGE_PROFILE=profile,
        TEXT2IMAGE_LANG=lang,
        TEXT2IMAGE_ROOT=str(root),
        PYTHONHASHSEED="0",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        MPLCONFIGDIR=str(root / "build" / ".matplotlib"),
        SOURCE_DATE_EPOCH="0",
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # silences a debugger warning on frozen modules
    )
    (root / "build" / ".matplotlib").mkdir(parents=True, exist_ok=True)
    return env


@dataclass
class CellFailure:
    line: int
    end: int
    label: str | None
    traceback: str


def _describe(doc: Document, index: int, root: Path) -> str:
    cell = doc.cells[index]
    name = f"cell {cell.label!r}" if cell.label else "the cell"
    return f"{where(doc.path, cell.line, root)}: {name} (lines {cell.line}-{cell.end})"


def _error_text(node, exc: Exception | None = None) -> str:
    for output in node.get("outputs", []):
        if output.get("output_type") == "error":
            return strip_ansi("\n".join(output.get("traceback", [])) or f"{output.get('ename')}: {output.get('evalue')}")
    return strip_ansi(str(exc)) if exc else "unknown error"


class Kernels:
    """The chapter kernels alive now, so that the main thread can stop them all on Ctrl-C.

    Kernels run in their own session (jupyter_client's ``launch_kernel``
    starts them with ``start_new_session``), so a Ctrl-C in the terminal
    reaches the runner only; ``interrupt`` passes it on as SIGINT (a running
    cell raises ``KeyboardInterrupt``), ``kill`` ends a kernel that ignores it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._managers: list = []
        self.stopping = threading.Event()

    def add(self, manager) -> None:
        with self._lock:
            self._managers.append(manager)
        if self.stopping.is_set():  # started while the build was being stopped
            self._signal(manager, signal.SIGKILL)

    def remove(self, manager) -> None:
        with self._lock:
            if manager in self._managers:
                self._managers.remove(manager)

    @staticmethod
    def pids(managers) -> list[int]:
        found = []
        for manager in managers:
            process = getattr(getattr(manager, "provisioner", None), "process", None)
            if process is not None and process.poll() is None:
                found.append(process.pid)
        return found

    def _signal(self, manager, number: int) -> None:
        for pid in self.pids([manager]):
            try:
                os.killpg(pid, number)  # the kernel and whatever it started (its own session)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, number)
                except ProcessLookupError:
                    pass

    def live(self) -> list[int]:
        with self._lock:
            return self.pids(self._managers)

    def interrupt(self) -> None:
        self.stopping.set()
        with self._lock:
            managers = list(self._managers)
        for manager in managers:
            self._signal(manager, signal.SIGINT)

    def kill(self) -> None:
        self.stopping.set()
        with self._lock:
            managers = list(self._managers)
        for manager in managers:
            self._signal(manager, signal.SIGKILL)

    def reset(self) -> None:
        self.stopping.clear()


RUNNING = Kernels()


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        """jupyter_client's manager, less the SIGINT it sends a kernel before shutting it down (see above)."""

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def _kernel_log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = strip_ansi(path.read_text(errors="replace")).strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def execute(doc: Document, nb: nbformat.NotebookNode, *, cwd: Path, env: dict[str, str], timeout: int,
            root: Path, fig_options: dict | None = None,
            progress: Callable[[str], None] | None = None) -> nbformat.NotebookNode:
    """Execute ``nb`` (built from ``doc``) in a fresh kernel; return it with its outputs.

    A failing cell raises ``BookError`` naming the chapter, the cell (label or
    lines) and the Python traceback without terminal colours; a chapter
    stopped by ``RUNNING.interrupt`` raises ``Interrupted``, whatever state its
    cells were left in. What the kernel process itself writes to stderr
    (ipykernel's own log, not cell output) is kept apart: passed on to
    ``sys.stderr`` when the chapter ran, added to the error when the kernel
    died, dropped when the chapter failed otherwise or was stopped.
    """
    from nbclient import NotebookClient

    if not any(c.kind == "code" or c.inline for c in doc.cells):
        return nb  # nothing to run: Quarto too renders such a page without a kernel (its markdown engine)
    if RUNNING.stopping.is_set():
        raise Interrupted(doc.path)
    fig = {"fig-width": 7, "fig-height": 5, "fig-dpi": 96, "fig-format": "png", **(fig_options or {})}
    # The kernel is killed once the last cell has replied ("immediate"), not asked to exit: every
    # output has arrived and every file a cell wrote is closed, and a graceful exit only waits for
    # the interpreter to tear down torch and transformers (1.2-3 s per chapter, measured).
    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=120, kernel_name="python3", allow_errors=False,
        record_timing=False, resources={"metadata": {"path": str(cwd)}},
        kernel_manager_class=_kernel_manager_class(), shutdown_kernel="immediate",
    )
    # Local IPC sockets rather than TCP: nothing listens on the network, and ipykernel stays quiet.
    sockets = Path(tempfile.mkdtemp(prefix="t2i-kernel-"))
    client.km = client.create_kernel_manager()
    client.km.transport = "ipc"
    client.km.ip = str(sockets / "k")
    log_path = sockets / "kernel.log"
    manager = client.km
    RUNNING.add(manager)
    try:
        with open(log_path, "wb") as log:
            with client.setup_kernel(env=env, cwd=str(cwd), stderr=log):
                _run_cells(client, doc, nb, root, timeout, fig, progress)
        if RUNNING.stopping.is_set():
            raise Interrupted(doc.path)
        kept = _kernel_log_tail(log_path, lines=50)  # a chapter that ran: whatever ipykernel said is news
        if kept:
            print(kept, file=sys.stderr, flush=True)
    except Interrupted:
        raise
    except BaseException as error:
        if RUNNING.stopping.is_set():
            raise Interrupted(doc.path) from None
        # A failed chapter: its error says what went wrong; the kernel's own log is only the noise of
        # its shutdown (sockets closed under a running cell), except when the kernel died.
        tail = _kernel_log_tail(log_path)
        if isinstance(error, BookError) and "killed the kernel" in str(error) and tail:
            raise BookError(f"{error}; the kernel's last words:\n{tail}") from None
        raise
    finally:
        RUNNING.remove(manager)
        shutil.rmtree(sockets, ignore_errors=True)
    nb.metadata["language_info"] = {"name": "python", "version": ".".join(map(str, sys.version_info[:3]))}
    return nb


def _run_cells(client, doc: Document, nb, root: Path, timeout: int, fig: dict, progress) -> None:
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    setup = SETUP + SETUP_CALL.format(width=fig["fig-width"], height=fig["fig-height"], dpi=fig["fig-dpi"],
                         fmt="png" if fig["fig-format"] in ("retina", "png") else fig["fig-format"],
                         mime=FIGURE_TEXT)
    reply = client.wait_for_reply(client.kc.execute(setup, silent=True, store_history=False))
    if not reply or reply["content"].get("status") != "ok":
        raise BookError(f"{where(doc.path, root=root)}: the kernel setup failed: {reply and reply['content']}")
    count = 0
    for index, (cell, node) in enumerate(zip(doc.cells, nb.cells)):
        if RUNNING.stopping.is_set():
            raise Interrupted(doc.path)
        if cell.kind == "markdown":
            inline.evaluate(client, doc, index, node, root)
            continue
        if cell.kind != "code" or cell.option("eval") is False:
            continue
        count += 1
        allow = bool(cell.options.get("error", False))
        source = node.source
        node.source = cell.code  # run without the #| lines, as Quarto does
        if allow:
            node.metadata.setdefault("tags", []).append("raises-exception")
        started = time.perf_counter()
        try:
            client.execute_cell(node, index, execution_count=count)
        except CellTimeoutError:
            raise BookError(f"{_describe(doc, index, root)} ran past the {timeout} s cell timeout") from None
        except DeadKernelError as error:
            raise BookError(f"{_describe(doc, index, root)} killed the kernel ({error}); out of memory?") from None
        except CellExecutionError as error:
            raise BookError(f"{_describe(doc, index, root)} failed:\n{_error_text(node, error)}") from None
        finally:
            node.source = source
            if allow:
                node.metadata["tags"].remove("raises-exception")
                if not node.metadata["tags"]:
                    del node.metadata["tags"]
        node.execution_count = count
        if progress:
            progress(f"{cell.label or 'line %d' % cell.line} {time.perf_counter() - started:.1f} s")
