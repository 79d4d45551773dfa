"""Run one chapter in its own Jupyter kernel, cell by cell, as Quarto's Jupyter engine does.

Quarto starts a ``python3`` kernel in the chapter's folder, runs the code cells
in order (``#|`` lines stripped so that cell magics work) and, for each
Markdown cell, evaluates its inline expressions `` `{python} expr` `` right
after the code cells before it, with the kernel's ``user_expressions``. We do
the same with nbclient, so the notebook we keep is the one Quarto would keep.

The kernel is the interpreter running this code: jupyter_client rewrites a
kernelspec's ``python`` to ``sys.executable``, so a venv runs its own kernel.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from text2image.book.errors import BookError, where
from text2image.book.qmd import Document

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

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

# An inline expression's text is str() of its value, or its Markdown for objects that have one
# (IPython's Markdown, our markdown tables); the lambda keeps the kernel's namespace clean.
INLINE_WRAPPER = (
    "(lambda __v: (lambda __r: str(__v) if __r is None else str(__r[0] if isinstance(__r, tuple) else __r))"
    "(getattr(__v, '_repr_markdown_', lambda: None)()))(({expr}\n))"
)


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def kernel_env(root: Path, profile: str, lang: str) -> dict[str, str]:
    """The kernel's environment: the edition's profile and language, and no source of randomness.

    ``PYTHONHASHSEED`` fixes set/dict orders, ``MPLCONFIGDIR`` keeps a user's
    matplotlibrc out of the book, ``SOURCE_DATE_EPOCH`` fixes dates matplotlib
    writes into PDF/SVG. PNGs from the inline backend carry no date.
    """
    env = dict(os.environ)
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


def _evaluate_inline(client, doc: Document, index: int, node, root: Path) -> None:
    """Evaluate a Markdown cell's inline expressions now, in the kernel, and keep their text."""
    cell = doc.cells[index]
    if not cell.inline:
        return
    expressions = {str(k): INLINE_WRAPPER.format(expr=item.expr) for k, item in enumerate(cell.inline)}
    msg_id = client.kc.execute("", silent=True, store_history=False, user_expressions=expressions)
    reply = client.wait_for_reply(msg_id)
    if reply is None:
        raise BookError(f"{where(doc.path, cell.line, root)}: the kernel did not answer the inline expressions")
    results = reply["content"].get("user_expressions", {})
    values = []
    for key, item in enumerate(cell.inline):
        result = results.get(str(key), {})
        if result.get("status") != "ok":
            trace = strip_ansi("\n".join(result.get("traceback", [])))
            raise BookError(
                f"{where(doc.path, item.line, root)}: inline expression `{{python}} {item.expr}` failed: "
                f"{result.get('ename')}: {result.get('evalue')}" + (f"\n{trace}" if trace else "")
            )
        values.append({"expression": item.expr, "text": ast.literal_eval(result["data"]["text/plain"])})
    node.metadata["text2image"]["inline"] = values


def execute(doc: Document, nb: nbformat.NotebookNode, *, cwd: Path, env: dict[str, str], timeout: int,
            root: Path, fig_options: dict | None = None,
            progress: Callable[[str], None] | None = None) -> nbformat.NotebookNode:
    """Execute ``nb`` (built from ``doc``) in a fresh kernel; return it with its outputs.

    A failing cell raises ``BookError`` naming the chapter, the cell (label or
    lines) and the Python traceback without terminal colours.
    """
    from nbclient import NotebookClient

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
            _evaluate_inline(client, doc, index, node, root)
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
