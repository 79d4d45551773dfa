"""Where a render leaves its figures, written so that a failed render never damages them.

The ``cpu`` and ``gpu`` profiles write the book's committed figures,
``figures/<lang>/<label>.png``; ``smoke`` writes ``build/smoke/figures/<lang>/``
(ignored by git), so that running the tests never touches the book. Figures
are written only after the whole chapter succeeded, each through a temporary
file and a rename: an interrupted or failed render leaves the last good ones.
"""

from __future__ import annotations

from pathlib import Path

from text2image.book.freeze import write_atomic


def figure_dir(root: Path, profile: str, lang: str) -> Path:
    if profile == "smoke":
        return root / "build" / "smoke" / "figures" / lang
    return root / "figures" / lang


def write(root: Path, profile: str, lang: str, pngs: dict[str, bytes]) -> int:
    """Write ``{label: png}``; return how many files changed."""
    folder = figure_dir(root, profile, lang)
    return sum(write_atomic(folder / f"{label}.png", data) for label, data in pngs.items())
