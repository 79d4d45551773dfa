"""Shipped checkpoints: safetensors weights plus a manifest, loaded safely.

A checkpoint is a folder ``data/checkpoints/<name>/`` holding the weights
(``save_pretrained`` where the class has it, else ``model.safetensors`` and
``config.json``) and ``manifest.json`` (recipe, steps, wall time, hardware,
data seed, code commit, final metrics). Weights are only ever read from
safetensors: a pickle file is refused, never executed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from text2image import paths

MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and how to retrain."""


def retrain_hint(name: str) -> str:
    return f"retrain it with: python -m text2image train {name}"


def checkpoint_dir(name: str) -> Path:
    return paths.checkpoints_dir() / name


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


def save(model: torch.nn.Module, folder: str | Path, manifest: dict[str, Any], half: bool = True) -> Path:
    """Write weights (fp16 by default, to keep shipped files small) and the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = copy.deepcopy(model).to("cpu")
    if half:
        stored = stored.half()
    if hasattr(stored, "save_pretrained"):
        stored.save_pretrained(folder, safe_serialization=True)
    else:
        save_file({k: v.contiguous() for k, v in stored.state_dict().items()}, str(folder / "model.safetensors"))
    full = {"code_commit": code_commit(), "hardware": hardware(), "torch": torch.__version__, **manifest}
    (folder / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
    return folder


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: no manifest; {retrain_hint(Path(folder).name)}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: manifest is not valid JSON ({error}); {retrain_hint(Path(folder).name)}")


def _check_folder(folder: Path) -> Path:
    """Find the safetensors file, refusing pickles; the error says what to do."""
    name = folder.name
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint here; {retrain_hint(name)}")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise CheckpointError(
                f"{folder / pickles[0]}: pickle files are never loaded (they can run arbitrary code); "
                f"only safetensors weights are accepted; {retrain_hint(name)}"
            )
        raise CheckpointError(f"{folder}: no .safetensors weights; {retrain_hint(name)}")
    for path in weights:
        try:
            with open(path, "rb") as handle:
                header = handle.read(8)
            if len(header) < 8:
                raise SafetensorError("file shorter than its header")
            load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path}: corrupt or truncated weights ({error}); {retrain_hint(name)}")
    return weights[0]


def load(cls: type[torch.nn.Module], folder: str | Path, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """Load a checkpoint as float32, from safetensors only.

    ``cls`` is a diffusers/transformers class with ``from_pretrained``; for a plain
    ``nn.Module`` pass an instance built from the recipe as ``model``.
    """
    folder = Path(folder)
    weights = _check_folder(folder)
    try:
        if model is None:
            loaded = cls.from_pretrained(folder, use_safetensors=True, torch_dtype=torch.float32)
        else:
            state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
            model.load_state_dict(state, strict=True)
            loaded = model
    except (RuntimeError, ValueError, KeyError, OSError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{weights}: does not fit {getattr(cls, '__name__', cls)} as configured ({first}); {retrain_hint(folder.name)}"
        ) from error
    return loaded.float().eval()


def weights_digest(folder: str | Path) -> str:
    """A short digest of a checkpoint's safetensors files ("none" when there are none)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return "none"
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_result(folder: str | Path, filename: str, key: Any, compute) -> Any:
    """``compute()``, cached as JSON in a checkpoint folder and reused while ``key`` and the weights are unchanged.

    Heavy evaluations of a shipped model (a chapter's tables) run once; the file
    travels with the weights it was computed from, and a retrained model (new
    weights, new digest) recomputes it.
    """
    folder = Path(folder)
    full_key = hashlib.sha256(json.dumps([weights_digest(folder), key], default=str).encode()).hexdigest()[:16]
    path = folder / filename
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == full_key:
            return stored["result"]
    result = compute()
    if folder.is_dir():
        paths.write_text_atomic(path, json.dumps({"key": full_key, "result": result}, default=str) + "\n")
    return result
