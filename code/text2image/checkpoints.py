"""Checkpoints: safetensors weights plus a manifest, checked before they are trusted.

A checkpoint is a folder (``data/checkpoints/<name>/`` for the shipped ones)
holding the model files (``save_pretrained`` where the class has it, else
``model.safetensors`` and ``config.json``; for a ``diffusers.DiffusionPipeline``,
a *pipeline folder*: ``model_index.json`` and one subfolder per component,
every file of which is a model file), ``manifest.json`` (recipe, steps,
wall time, hardware, data seed, code commit, final metrics, and the sha256 of
every model file under ``files``) and the training logs.

Loading checks, in this order, and stops at the first problem with one line
naming the file and how to restore it (``git checkout data/checkpoints/<name>``
for a shipped one) before suggesting a retrain: a pickle file is refused,
never executed; the manifest must exist and fit :data:`MANIFEST_SCHEMA`; every
file it records must be there with the recorded digest (flipped bytes in the
weights would otherwise load silently and reach the figures); no model file
may be there unrecorded. :func:`stamp` records the digests of checkpoints
saved before manifests carried them, without retraining.

Saving is crash-safe: the new folder is written beside the old one, fsynced,
and swapped in (:func:`text2image.paths.swap_dir`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from text2image import paths, profiles

MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
DIGEST_FIELD = "files"  # manifest field: model file name -> sha256
STAMP_COMMAND = "python -m text2image checkpoints stamp"

_HEX64 = "^[0-9a-f]{64}$"
_NUMBER = {"type": "number"}
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "profile", "recipe", "steps", "train_seconds", "samples_per_second", "data_seed",
                 "device", "parameters", "metrics", "code_commit", "hardware", "torch", DIGEST_FIELD],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "profile": {"enum": list(profiles.PROFILES)},
        "recipe": {"type": "object", "required": ["steps", "batch_size", "lr", "seed"],
                   "properties": {"steps": {"type": "integer", "minimum": 0},
                                  "batch_size": {"type": "integer", "minimum": 1},
                                  "lr": _NUMBER, "seed": {"type": "integer"}, "extra": {"type": "object"}}},
        "steps": {"type": "integer", "minimum": 0},
        "train_seconds": {"type": "number", "minimum": 0},
        "wall_seconds_this_session": {"type": "number", "minimum": 0},
        "samples_per_second": {"type": "number", "minimum": 0},
        "data_seed": {"type": "integer"},
        "device": {"type": "string"},
        "parameters": {"type": "integer", "minimum": 0},
        "metrics": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "code_commit": {"type": "string"},
        "hardware": {"type": "string"},
        "torch": {"type": "string"},
        # a file of the folder, or of a component's subfolder of a pipeline folder ("unet/config.json")
        DIGEST_FIELD: {"type": "object", "minProperties": 1, "additionalProperties": False,
                       "patternProperties": {r"^(?:[^/\\]+/)?[^/\\]+$": {"type": "string", "pattern": _HEX64}}},
        "base": {"type": "object", "required": ["name", "weights"],
                 "properties": {"name": {"type": "string"}, "weights": {"type": "string"}}},
    },
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and how to restore or retrain it."""


# ----------------------------------------------------------------------------- names and hints

def checkpoint_dir(name: str) -> Path:
    """The shipped folder of ``name``."""
    return paths.checkpoints_dir() / name


def shipped_name(folder: str | Path) -> str | None:
    """``name`` when ``folder`` is the shipped ``data/checkpoints/<name>`` (``vq-sweep/k16`` included), else None."""
    try:
        return Path(folder).resolve().relative_to(paths.checkpoints_dir().resolve()).as_posix()
    except (ValueError, FileNotFoundError):
        return None


def _name(folder: Path) -> str:
    return shipped_name(folder) or folder.name


def retrain_hint(name: str) -> str:
    return f"retrain it with: python -m text2image train {name}"


def fix_hint(folder: str | Path, name: str | None = None) -> str:
    """How to get a good checkpoint back: ``git checkout`` for a shipped one, then a retrain."""
    folder = Path(folder)
    shipped = shipped_name(folder)
    if shipped:
        return (f"restore it with: git checkout {paths.checkpoints_dir().relative_to(paths.repo_root()).as_posix()}"
                f"/{shipped} (or {retrain_hint(name or shipped)})")
    return retrain_hint(name or folder.name)


# ----------------------------------------------------------------------------- facts of a run

def code_commit() -> str:
    """The git commit of the code that produced a checkpoint ("unknown" outside a clone)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.repo_root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError, FileNotFoundError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


# ----------------------------------------------------------------------------- digests

def file_digest(path: str | Path) -> str:
    """The sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PIPELINE_INDEX = "model_index.json"  # what makes a folder a diffusers pipeline folder


def is_pipeline_folder(folder: str | Path) -> bool:
    return (Path(folder) / PIPELINE_INDEX).is_file()


def pipeline_components(folder: str | Path) -> list[str]:
    """The components a pipeline folder's ``model_index.json`` names (those saved: not ``[null, null]``)."""
    try:
        index = json.loads((Path(folder) / PIPELINE_INDEX).read_text())
    except (ValueError, OSError):
        return []
    return sorted(k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0])


def model_files(folder: str | Path) -> list[Path]:
    """The files that make the model: its safetensors weights and its configs (not manifest, logs or caches);
    for a pipeline folder, ``model_index.json`` and every file of the components' subfolders."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if is_pipeline_folder(folder):
        found = [folder / PIPELINE_INDEX]
        for component in pipeline_components(folder):
            sub = folder / component
            if sub.is_dir():
                found += [p for p in sub.iterdir() if p.is_file()]
        return sorted(found)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and (p.suffix == ".safetensors" or p.name.endswith("config.json")))


def _key(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()


def digests(folder: str | Path) -> dict[str, str]:
    """``{file name: sha256}`` of the model files of ``folder`` as they are now (``component/file`` inside a
    pipeline folder)."""
    folder = Path(folder)
    return {_key(folder, p): file_digest(p) for p in model_files(folder)}


def _weight_files(folder: Path) -> list[Path]:
    if is_pipeline_folder(folder):
        return [p for p in model_files(folder) if p.suffix == ".safetensors"]
    return sorted(folder.glob("*.safetensors"))


def weights_digest(folder: str | Path) -> str:
    """A short digest of a checkpoint's safetensors files ("none" when there are none).

    What a follow-up records of its base, and what cached results are keyed by. A pipeline folder's are
    its components' weights, in the order of their paths.
    """
    files = _weight_files(Path(folder))
    if not files:
        return "none"
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def recorded_digests(root: str | Path) -> dict[Path, str]:
    """``{file path: sha256}`` for every model file that a manifest under ``root`` records.

    Cheap (it reads manifests, not weights): what the chapter runner's freeze
    key can use for the weights instead of their sizes. A file whose bytes no
    longer match is caught when it is loaded.
    """
    found: dict[Path, str] = {}
    for manifest in sorted(Path(root).rglob(MANIFEST)):
        try:
            recorded = json.loads(manifest.read_text()).get(DIGEST_FIELD)
        except (ValueError, AttributeError, OSError):
            continue
        if isinstance(recorded, dict):
            found.update({manifest.parent / name: str(sha) for name, sha in recorded.items()})
    return found


# ----------------------------------------------------------------------------- saving

@contextlib.contextmanager
def _quiet():
    """No "Loading weights" / "Writing model shards" / "Loading pipeline components" bars from the hub
    libraries: a few small local files need none, and chapter outputs must not show them."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    diffusers_was_enabled = diffusers_logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
        if diffusers_was_enabled:
            diffusers_logging.enable_progress_bar()


def save(model: torch.nn.Module, folder: str | Path, manifest: dict[str, Any], half: bool = True,
         extra_files: Iterable[str | Path] = ()) -> Path:
    """Write weights (fp16 by default, to keep shipped files small), the manifest with their digests, and
    ``extra_files`` (the training logs), as one folder swapped in place of the old one."""
    folder = Path(folder)
    paths.recover_dir(folder)
    temp = paths.new_dir(folder)
    try:
        stored = copy.deepcopy(model).to("cpu")
        if half:
            if _is_pipeline(stored):  # each network, not ``pipe.to(float16)``, which warns for nothing
                for component in stored.components.values():
                    if isinstance(component, torch.nn.Module):
                        component.half()
            else:
                stored = stored.half()
        if hasattr(stored, "save_pretrained"):
            with _quiet():
                stored.save_pretrained(temp, safe_serialization=True)
        else:
            save_file({k: v.contiguous() for k, v in stored.state_dict().items()}, str(temp / "model.safetensors"))
        for extra in extra_files:
            if Path(extra).is_file():
                shutil.copyfile(extra, temp / Path(extra).name)
        full = {"code_commit": code_commit(), "hardware": hardware(), "torch": torch.__version__, **manifest,
                DIGEST_FIELD: digests(temp)}
        (temp / MANIFEST).write_text(_dumps(full))
        paths.swap_dir(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return folder


def _dumps(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"


def stamp(folder: str | Path, force: bool = False) -> bool:
    """Record the digests of ``folder``'s model files in its manifest; returns whether the manifest changed.

    Idempotent. It never touches the weights; a digest already recorded that
    no longer matches is an error (the file changed: restore it) unless
    ``force`` (the weights were replaced on purpose, e.g. retrained by older code).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    manifest = _read_json(path, folder)
    now = digests(folder)
    if not any(name.endswith(".safetensors") for name in now):
        raise CheckpointError(f"{folder}: no .safetensors weights to stamp; {fix_hint(folder)}")
    before = manifest.get(DIGEST_FIELD)
    if isinstance(before, dict) and before and not force:
        for name, sha in before.items():
            if now.get(name) != sha:
                raise CheckpointError(
                    f"{folder / name}: {'missing' if name not in now else 'changed'} since its digest was recorded; "
                    f"{fix_hint(folder)}; or pass --force if it was replaced on purpose")
    if before == now:
        return False
    manifest[DIGEST_FIELD] = now
    paths.write_text_atomic(path, _dumps(manifest))
    return True


def shipped_folders(root: str | Path | None = None) -> list[Path]:
    """Every checkpoint folder (one with a manifest or weights) under ``root`` (default: the shipped ones).

    A folder inside a checkpoint is not one: the image tokens the DALL·E recipes
    cache in ``vqvae-long/tokens/`` are safetensors files of that checkpoint's.
    """
    root = Path(root) if root else paths.checkpoints_dir()
    if not root.is_dir():
        return []
    found = {p.parent for p in root.rglob(MANIFEST)} | {p.parent for p in root.rglob("*.safetensors")}
    manifests = {p.parent for p in root.rglob(MANIFEST)}
    return sorted(f for f in found if not any(parent in manifests for parent in f.parents))


def training_seconds(names=None, root: str | Path | None = None) -> dict[str, float]:
    """``name -> train_seconds`` of shipped checkpoints, read from their manifests (``vq-sweep/k16`` included):
    every one under ``root`` (default: the shipped ones), or the checkpoints ``names``."""
    root = Path(root) if root else paths.checkpoints_dir()
    folders = shipped_folders(root) if names is None else [root / name for name in names]
    return {folder.relative_to(root).as_posix(): float(read_manifest(folder)["train_seconds"])
            for folder in folders}


# ----------------------------------------------------------------------------- reading and checking

def _read_json(path: Path, folder: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{folder}: incomplete checkpoint, {MANIFEST} is missing; {fix_hint(folder)}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: manifest is not valid JSON ({error}); {fix_hint(folder)}") from None


def _field(error) -> str:
    """The dotted path of the field a schema error is about ("the manifest" for the top)."""
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = next((m for m in error.validator_value if m not in error.instance), "?")
        return f"field '{where + '.' if where else ''}{missing}' is missing"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return f"field '{where}' has an unexpected entry ({error.message})"
    if not where:
        kind = type(error.instance).__name__
        return f"the manifest is a JSON {'array' if kind == 'list' else kind}, not an object"
    value = json.dumps(error.instance, default=str)
    value = value if len(value) <= 40 else value[:37] + "..."
    if error.validator == "enum":
        return f"field '{where}' is {value}, not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "type":
        return f"field '{where}' is {value}, not of type {error.validator_value}"
    return f"field '{where}' is {value} ({error.message})"


def validate(manifest: Any, path: str | Path) -> dict[str, Any]:
    """``manifest`` if it fits :data:`MANIFEST_SCHEMA`, else one error naming the file and the field."""
    import jsonschema

    path = Path(path)
    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest),
                                             key=jsonschema.exceptions.relevance)
    if error is not None:
        hint = fix_hint(path.parent)
        if error.validator == "required" and DIGEST_FIELD in error.validator_value \
                and DIGEST_FIELD not in manifest and all(k in manifest for k in error.validator_value if k != DIGEST_FIELD):
            hint = f"record them with: {STAMP_COMMAND} {_name(path.parent)} (or {hint})"
        raise CheckpointError(f"{path}: {_field(error)}; {hint}")
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of ``folder``, checked against the schema."""
    folder = Path(folder)
    return validate(_read_json(folder / MANIFEST, folder), folder / MANIFEST)


def _is_pipeline(obj) -> bool:
    from diffusers import DiffusionPipeline

    return isinstance(obj, DiffusionPipeline) or (isinstance(obj, type) and issubclass(obj, DiffusionPipeline))


def _refuse_pickles(folder: Path) -> None:
    if is_pipeline_folder(folder):
        for component in pipeline_components(folder):
            if (folder / component).is_dir():
                _refuse_pickles(folder / component)
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not any(folder.glob("*.safetensors")):
        raise CheckpointError(
            f"{folder / pickles[0]}: pickle files are never loaded (they can run arbitrary code); "
            f"only safetensors weights are accepted; {fix_hint(folder)}")


def verify(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete, unchanged checkpoint; else one error naming what is wrong and how to fix it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint here; {retrain_hint(_name(folder))}")
    _refuse_pickles(folder)
    manifest = read_manifest(folder)
    recorded = manifest[DIGEST_FIELD]
    missing = [name for name in recorded if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: incomplete checkpoint, {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} missing; {fix_hint(folder, manifest['name'])}")
    for name, sha in recorded.items():
        found = file_digest(folder / name)
        if found != sha:
            raise CheckpointError(
                f"{folder / name}: corrupt or changed since it was saved (sha256 {found[:12]}, "
                f"the manifest records {sha[:12]}); {fix_hint(folder, manifest['name'])}")
    strangers = [_key(folder, p) for p in model_files(folder) if _key(folder, p) not in recorded]
    if strangers:
        raise CheckpointError(f"{folder / strangers[0]}: a model file the manifest does not record; remove it, or "
                              f"{fix_hint(folder, manifest['name'])}")
    return manifest


def load(cls: type[torch.nn.Module], folder: str | Path, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """Load a verified checkpoint as float32, from safetensors only and from this folder only (never the hub).

    ``cls`` is a diffusers/transformers class with ``from_pretrained`` (a ``DiffusionPipeline`` subclass
    for a pipeline folder); for a plain ``nn.Module`` pass an instance built from the recipe as ``model``.
    """
    folder = Path(folder)
    manifest = verify(folder)
    weights = next(folder / n for n in sorted(manifest[DIGEST_FIELD]) if n.endswith(".safetensors"))
    try:
        if _is_pipeline(cls):
            with _quiet():
                # diffusers pipelines take ``dtype`` (``torch_dtype`` is deprecated there); fp16 files come back fp32
                return cls.from_pretrained(folder, use_safetensors=True, dtype=torch.float32, local_files_only=True)
        if model is None:
            with _quiet():
                loaded = cls.from_pretrained(folder, use_safetensors=True, torch_dtype=torch.float32,
                                             local_files_only=True)
        else:
            state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
            model.load_state_dict(state, strict=True)
            loaded = model
    except SafetensorError as error:
        raise CheckpointError(f"{weights}: corrupt or truncated weights ({error}); {fix_hint(folder)}") from error
    except (RuntimeError, ValueError, KeyError, OSError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{weights}: does not fit {getattr(cls, '__name__', cls)} as configured ({first}); "
            f"{retrain_hint(manifest['name'])}"
        ) from error
    return loaded.float().eval()


# ----------------------------------------------------------------------------- results cached next to weights

def _overflow(folder: Path, filename: str) -> Path:
    """Where, inside the ``results`` cache, a result goes when ``folder`` cannot be written (a read-only checkout)."""
    return Path(f"{folder.name}-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]}") / filename


def _stored(path: Path, key: str) -> tuple[bool, Any]:
    try:
        stored = json.loads(path.read_text()) if path.is_file() else None
    except (ValueError, OSError):
        stored = None
    if isinstance(stored, dict) and stored.get("key") == key:
        return True, stored["result"]
    return False, None


def result_name(kind: str, key: Any) -> str:
    """``<kind>-<12 hex digits>.json``: the file name of a cached measurement, one per settings ``key``."""
    return f"{kind}-{hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]}.json"


def cached_result(folder: str | Path, filename: str, key: Any, compute) -> Any:
    """``compute()``, cached as JSON in a checkpoint folder and reused while ``key`` and the weights are unchanged.

    Heavy evaluations of a shipped model (a chapter's tables) run once; the file
    travels with the weights it was computed from, and a retrained model (new
    weights, new digest) recomputes it. When the folder cannot be written (a
    read-only checkout) the result goes to the ``results`` cache instead.
    """
    folder = Path(folder)
    full_key = hashlib.sha256(json.dumps([weights_digest(folder), key], default=str).encode()).hexdigest()[:16]
    found, result = _stored(folder / filename, full_key)
    if found:
        return result
    elsewhere = None  # a read-only folder keeps its results in the cache
    if folder.is_dir() and not paths.writable(folder):
        elsewhere = paths.cache_dir("results") / _overflow(folder, filename)
    if elsewhere is not None:
        found, result = _stored(elsewhere, full_key)
        if found:
            return result
    result = compute()
    if folder.is_dir():
        paths.write_text_atomic(elsewhere or folder / filename,
                                json.dumps({"key": full_key, "result": result}, default=str) + "\n")
    return result
