"""Where the project's files live: repository root, figures, data, build outputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def repo_root() -> Path:
    """The directory holding ``_quarto.yml``.

    ``TEXT2IMAGE_ROOT`` wins; otherwise we walk up from this file (editable
    install) and then from the working directory (a chapter runs in ``book/<lang>``).
    """
    if env := os.environ.get("TEXT2IMAGE_ROOT"):
        return Path(env).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "_quarto.yml").is_file():
                return folder
    raise FileNotFoundError(
        "cannot find the book's root (a folder with _quarto.yml); set TEXT2IMAGE_ROOT"
    )


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def data_dir() -> Path:
    return repo_root() / "data"


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def build_dir() -> Path:
    return repo_root() / "build"


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader (another kernel) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temp, path)
