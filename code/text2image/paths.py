"""Where the project's files live: what it reads (the checkout) and where it writes (a cache).

Reading needs nothing but the checkout. Everything the package writes (run
states, data caches, smoke checkpoints, models trained on demand, cached
measurements that cannot sit next to read-only weights) goes to a cache folder
of one *kind* (:func:`cache_dir`): ``TEXT2IMAGE_CACHE`` when set (so it can be
moved), else the checkout's own ignored folder for that kind when it is
writable (``data/runs``, ``data/world``, ``build/smoke``, ...; a clone keeps
its usual layout), else the platform's user cache. When none of them is
writable, :class:`NothingWritable` says so in one line.

Writes that must survive a crash go through :func:`write_bytes_durable`
(temporary file, fsync, atomic rename) and :func:`swap_dir` / :func:`recover_dir`
(a folder replaced as a whole, leftovers of a killed swap cleaned on the next start).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

CACHE_ENV = "TEXT2IMAGE_CACHE"
# The checkout's own folder for each kind of cache, used when it is writable.
INSIDE = {"runs": ("data", "runs"), "world": ("data", "world"), "smoke": ("build", "smoke"),
          "trained": ("data", "trained")}
KINDS = (*INSIDE, "results")  # results: measurements of weights in a folder nobody can write to


class NothingWritable(OSError):
    """No folder the package may write its caches to."""


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
    """The shipped checkpoints (read; written only by an explicit ``train``)."""
    return data_dir() / "checkpoints"


def build_dir() -> Path:
    return repo_root() / "build"


# ----------------------------------------------------------------------------- the cache

def writable(folder: Path) -> bool:
    """Can ``folder`` be created (if missing) and written? Tried for real, since root ignores mode bits."""
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            return False
        existing = existing.parent
    if not existing.is_dir():
        return False
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".t2i-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError:
        return False
    return True


def user_cache_root() -> Path:
    """The platform's user cache (``~/.cache/text2image`` on Linux), one folder per checkout."""
    from platformdirs import user_cache_dir

    try:
        root = repo_root()
        slug = f"{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    except FileNotFoundError:
        slug = "default"
    return Path(user_cache_dir("text2image", appauthor=False)) / slug


def cache_dir(kind: str) -> Path:
    """A writable folder for generated files of ``kind`` (see :data:`KINDS`); created on first use."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of: {', '.join(KINDS)}")
    if env := os.environ.get(CACHE_ENV, "").strip():
        folder = Path(env).expanduser().resolve() / kind
        if not writable(folder):
            raise NothingWritable(f"{CACHE_ENV}={env}: cannot write there; point it to a folder you can write")
        return folder
    tried = []
    if kind in INSIDE:
        inside = repo_root().joinpath(*INSIDE[kind])
        if writable(inside):
            return inside
        tried.append(inside)
    user = user_cache_root() / kind
    if writable(user):
        return user
    tried.append(user)
    raise NothingWritable(f"nowhere to write the {kind} cache ({' and '.join(map(str, tried))} are read-only); "
                          f"set {CACHE_ENV} to a folder you can write")


# ----------------------------------------------------------------------------- crash-safe writes

def _fsync_dir(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write through a temporary file, fsync, then an atomic rename: after a crash the file is old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader (another kernel) never sees half a file."""
    write_bytes_durable(Path(path), text.encode("utf-8"))


def new_dir(final: Path) -> Path:
    """An empty sibling folder to fill before :func:`swap_dir` puts it in place of ``final``."""
    final = Path(final)
    temp = final.with_name(f".{final.name}.new")
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir(parents=True)
    return temp


def _old(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def swap_dir(temp: Path, final: Path) -> None:
    """Put the filled folder ``temp`` in place of ``final`` (fsynced first); at every instant a crash
    leaves either the old folder or the new one, which :func:`recover_dir` finishes on the next start."""
    temp, final = Path(temp), Path(final)
    for path in temp.rglob("*"):
        if path.is_file():
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
    _fsync_dir(temp)
    old = _old(final)
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    temp.rename(final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(final: Path) -> None:
    """Finish or undo a swap that a crash interrupted, so that ``final`` is whole and no leftover remains."""
    final = Path(final)
    temp, old = final.with_name(f".{final.name}.new"), _old(final)
    if not final.exists() and old.exists():
        # killed between the two renames: the new folder was complete (it is filled before any rename)
        (temp if temp.exists() else old).rename(final)
    for leftover in (temp, old):
        if leftover.exists():
            shutil.rmtree(leftover)


def safetensors_file(path: str | Path, filename: str, what: str, writer: str,
                     error: type[Exception] = ValueError) -> Path:
    """The safetensors file ``path`` names (the file, or the folder holding ``filename``): a missing file names
    what writes it, any other format is refused (a pickle can run code)."""
    path = Path(path)
    file = path / filename if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no {what} here; {writer} writes {filename}")
    if file.suffix != ".safetensors":
        raise error(f"{file}: only safetensors {what}s are loaded (a pickle can run code)")
    return file


def check_made_for(file: Path, metadata: dict[str, str], key: str, found: str, part: str, made: str, redo: str,
                   error: type[Exception] = ValueError) -> None:
    """Refuse a file whose metadata ``key`` does not record ``found``, the digest of the ``part`` it is loaded
    into (or records none): a learned word or an adapter means nothing to another base model. ``made`` says
    how it was made ("learned", "trained"), ``redo`` how to make one for this model."""
    recorded = metadata.get(key)
    if recorded is None:
        raise error(f"{file}: records no base model, so nothing says it fits this one; pass check_base=False to "
                    f"load it anyway")
    if recorded != found:
        raise error(f"{file}: {made} on another base model ({part} {recorded}, this pipeline's is {found}); {redo}")


def read_safetensors(file: str | Path) -> tuple[dict, dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, as stored."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
