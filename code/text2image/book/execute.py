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
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from text2image.book import inline
from text2image.book.errors import BookError, strip_ansi, where
from text2image.book.qmd import Document

# Seconds one cell may run: the cpu profile may train a missing checkpoint on a laptop.
CELL_TIMEOUT = {"smoke": 300, "cpu": 3600, "gpu": 7200}

# Quarto's defaults for HTML figures (7 x 5 inches, png), overridden by _quarto.yml's format.html.fig-*.
SETUP = """\
def __text2image_setup(width, height, dpi, fmt):
    try:
        import matplotlib.pyplot as plt
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    plt.rcParams['figure.figsize'] = (width, height)
    plt.rcParams['figure.dpi'] = dpi
    plt.rcParams['savefig.dpi'] = dpi
    set_matplotlib_formats(fmt)
__text2image_setup({width!r}, {height!r}, {dpi!r}, {fmt!r})
del __text2image_setup
"""

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


def kernel_env(root: Path, profile: str, lang: str, profiles: list[str] | None = None) -> dict[str, str]:
    """The kernel's environment: Quarto's ``_environment`` files, the edition's profile and language, no randomness.

    ``PYTHONHASHSEED`` fixes set/dict orders, ``MPLCONFIGDIR`` keeps a user's
    matplotlibrc out of the book, ``SOURCE_DATE_EPOCH`` fixes dates matplotlib
    writes into PDF/SVG. PNGs from the inline backend carry no date.
    """
    env = dict(os.environ)
    for key, value in quarto_environment(root, profiles or [lang, profile]).items():
        env.setdefault(key, value)
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


def execute(doc: Document, nb: nbformat.NotebookNode, *, cwd: Path, env: dict[str, str], timeout: int,
            root: Path, fig_options: dict | None = None,
            progress: Callable[[str], None] | None = None) -> nbformat.NotebookNode:
    """Execute ``nb`` (built from ``doc``) in a fresh kernel; return it with its outputs.

    A failing cell raises ``BookError`` naming the chapter, the cell (label or
    lines) and the Python traceback without terminal colours.
    """
    from nbclient import NotebookClient

    if not any(c.kind == "code" or c.inline for c in doc.cells):
        return nb  # nothing to run: Quarto too renders such a page without a kernel (its markdown engine)
    fig = {"fig-width": 7, "fig-height": 5, "fig-dpi": 96, "fig-format": "png", **(fig_options or {})}
    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=120, kernel_name="python3", allow_errors=False,
        record_timing=False, resources={"metadata": {"path": str(cwd)}},
    )
    # Local IPC sockets rather than TCP: nothing listens on the network, and ipykernel stays quiet.
    sockets = tempfile.mkdtemp(prefix="t2i-kernel-")
    client.km = client.create_kernel_manager()
    client.km.transport = "ipc"
    client.km.ip = os.path.join(sockets, "k")
    try:
        with client.setup_kernel(env=env, cwd=str(cwd)):
            _run_cells(client, doc, nb, root, timeout, fig, progress)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    nb.metadata["language_info"] = {"name": "python", "version": ".".join(map(str, sys.version_info[:3]))}
    return nb


def _run_cells(client, doc: Document, nb, root: Path, timeout: int, fig: dict, progress) -> None:
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    setup = SETUP.format(width=fig["fig-width"], height=fig["fig-height"], dpi=fig["fig-dpi"],
                         fmt="png" if fig["fig-format"] in ("retina", "png") else fig["fig-format"])
    reply = client.wait_for_reply(client.kc.execute(setup, silent=True, store_history=False))
    if not reply or reply["content"].get("status") != "ok":
        raise BookError(f"{where(doc.path, root=root)}: the kernel setup failed: {reply and reply['content']}")
    count = 0
    for index, (cell, node) in enumerate(zip(doc.cells, nb.cells)):
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
