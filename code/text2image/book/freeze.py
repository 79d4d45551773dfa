"""Skip chapters whose inputs did not change, when and as the Quarto configuration says.

Whether a chapter may be skipped is Quarto's ``execute: freeze`` of the render
(``project.Project.render_config``: ``_quarto.yml`` and the active profiles,
then the chapter's front matter), read as Quarto reads it
(``src/command/render/render-files.ts``, ``freeze.ts``): absent or ``false``,
always execute and never reuse a stored result; ``auto``, reuse it while the
source is unchanged; ``true``, reuse whatever is stored. The book sets
``auto`` for cpu and ``false`` for smoke and gpu, so a smoke or gpu render
never reads (nor, here, overwrites) what cpu stored.

Two differences are on purpose and only ever make the runner execute more:
Quarto's key is the md5 of the source file alone, ours also hashes the
profile, the language, every ``.py`` file of the package,
``requirements.lock``, every file of the shipped checkpoints (their weights
through their digest, ``weights_key``), ``_quarto.yml`` and the
``_environment`` files, and the number of threads of the kernels; and
each profile keeps its own store, ``build/<profile>/<lang>/`` (Quarto has one
``_freeze/`` for every profile, hence the ``false`` above). Where Quarto's
file-only key would show one edition's outputs in the other (the home page is
one file for both), ``checks.check_shared_freeze`` fails the build instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import nbformat

FORMAT = 1  # bump when the stored notebook's layout changes


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def package_root(root: Path) -> Path:
    """The package the kernel imports: ``<root>/code/text2image``, else the installed one."""
    local = root / "code" / "text2image"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[1]


def inputs_digest(root: Path) -> str:
    """One hash of everything besides the chapter that decides its outputs."""
    package = package_root(root)
    parts: list = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" not in path.parts:
            parts += [path.relative_to(package).as_posix(), path.read_bytes()]
    for name in ("requirements.lock", "_quarto.yml"):
        file = root / name
        parts += [name, file.read_bytes() if file.is_file() else b""]
    for file in sorted(root.glob("_environment*")):  # the kernels' environment (progress bars, profile)
        parts += [file.name, file.read_bytes()]
    checkpoints = root / "data" / "checkpoints"
    files = checkpoint_inputs(checkpoints)
    for path in files:
        if path.suffix != WEIGHTS:
            parts += [path.relative_to(root).as_posix(), path.read_bytes()]  # manifests, configs, logs
    for folder in sorted({path.parent for path in files if path.suffix == WEIGHTS}):
        parts += [folder.relative_to(root).as_posix(), weights_key(folder)]
    return _digest(parts)


def _is_cache(folder: Path) -> bool:
    ignore = folder / ".gitignore"
    return ignore.is_file() and "*" in ignore.read_text().split()


def checkpoint_inputs(checkpoints: Path) -> list[Path]:
    """The files of the checkpoints that a chapter reads, sorted: not the hidden ones (a training's
    ``.<name>.new`` folder, which may vanish while this walks, as a swap puts it in place) nor a folder that
    git-ignores all it holds (a cache rebuilt from the weights, such as ``vae-long/latents``)."""
    found = []
    for top, folders, names in os.walk(checkpoints):  # os.walk skips a folder that vanished meanwhile
        folders[:] = sorted(f for f in folders if not f.startswith(".") and not _is_cache(Path(top) / f))
        found += [Path(top) / n for n in names if not n.startswith(".")]
    return sorted(p for p in found if p.is_file())


WEIGHTS = ".safetensors"


def weights_key(folder: Path) -> str:
    """What the freeze key knows of a checkpoint's weights: their digest, so that a flipped byte re-executes.

    One function on purpose: the day manifests carry the digest of their
    weights, this reads it from there instead (a one-line change).
    """
    from text2image import checkpoints

    return checkpoints.weights_digest(folder)


def mode(config: dict, front_matter: dict | None = None):
    """The render's ``freeze``: ``False``, ``"auto"`` or ``True`` (the chapter's front matter wins)."""
    value = ((config or {}).get("execute") or {}).get("freeze", False)
    for source in (front_matter or {}, (front_matter or {}).get("execute") or {}):
        if isinstance(source, dict) and "freeze" in source:
            value = source["freeze"]
    if isinstance(value, str):
        value = {"auto": "auto", "true": True, "false": False}.get(value.strip().lower(), False)
    return value if value in (True, "auto") else False


def chapter_key(text: str, profile: str, lang: str, inputs: str, threads: int = 1) -> str:
    """The chapter's key: its text, profile, language, the other inputs, and its kernel's thread count."""
    return _digest([FORMAT, profile, lang, inputs, text, threads])


def store_dir(root: Path, profile: str, lang: str) -> Path:
    return root / "build" / profile / lang


def _paths(root: Path, profile: str, lang: str, name: str) -> tuple[Path, Path]:
    folder = store_dir(root, profile, lang)
    return folder / f"{name}.ipynb", folder / f"{name}.json"


def load(root: Path, profile: str, lang: str, name: str, key: str | None = None):
    """The stored executed notebook, or ``None`` (missing, or stored under another key)."""
    nb_path, key_path = _paths(root, profile, lang, name)
    if not (nb_path.is_file() and key_path.is_file()):
        return None
    try:
        info = json.loads(key_path.read_text())
    except ValueError:
        return None
    if key is not None and info.get("key") != key:
        return None
    return nbformat.read(nb_path, as_version=4)


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` via a temporary file and a rename; skip when unchanged.

    A reader (or a crash) never sees half a file, and an unchanged file keeps
    its timestamp, so git and make stay quiet. Returns whether it wrote.
    """
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def save(root: Path, profile: str, lang: str, name: str, key: str, nb, seconds: float, threads: int = 1) -> None:
    """Keep the executed notebook, then its key (the key last: it marks the run complete)."""
    nb_path, key_path = _paths(root, profile, lang, name)
    write_atomic(nb_path, nbformat.writes(nb).encode())
    write_atomic(key_path, json.dumps({"key": key, "seconds": round(seconds, 2), "threads": threads},
                                      indent=1).encode())
