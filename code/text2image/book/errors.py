"""The runner's exceptions: a problem the author must fix, said in one message; a build stopped by Ctrl-C."""

from __future__ import annotations

import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class BookError(Exception):
    """Bad input or a failed chapter. The message names the file (and line) to look at."""


class Interrupted(Exception):
    """The build was stopped (Ctrl-C) while this chapter ran: nothing of it is kept."""

    def __init__(self, path: Path | str):
        super().__init__(str(path))
        self.path = Path(path)


def where(path: Path | str, line: int | None = None, root: Path | None = None) -> str:
    """``book/fr/x.qmd:12``: the clickable location form editors and terminals understand."""
    path = Path(path)
    if root is not None:
        try:
            path = path.resolve().relative_to(Path(root).resolve())
        except ValueError:
            pass
    return f"{path}:{line}" if line else str(path)


def strip_ansi(text: str) -> str:
    """Tracebacks and streams without terminal colours (Quarto strips them too: ``colors.stripColor``)."""
    return ANSI.sub("", text)
