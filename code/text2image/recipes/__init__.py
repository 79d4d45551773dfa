"""Recipes: how each model of the book is built, trained and judged, per profile.

This package holds the registry and :func:`load_or_train`, and one module per
chapter (``autoencoders``, ``clip``, ...) with its sizes, steps and batches per
profile and the task (loss, batch, evaluation) of each model. It may import
everything below it (world, models, pipelines, methods) and ``evaluate``.

A recipe module registers a :class:`Recipe`; :func:`load_or_train` is what a
chapter calls. In the ``cpu`` profile it loads the shipped checkpoint from
``data/checkpoints/<name>/`` and trains it (with a progress bar) only when it
is missing; ``gpu`` always retrains with the full recipe; ``smoke`` trains a
tiny version into the git-ignored ``build/smoke/`` so tests never touch the
shipped files. ``python -m text2image train <name> --profile gpu`` retrains.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock

from text2image import checkpoints, paths, profiles
from text2image.train import EVAL_JSON, LOG_CSV, TrainConfig, Trainer

REGISTRY: dict[str, "Recipe"] = {}
# Modules whose import registers recipes (each model chapter adds its own).
RECIPE_MODULES: tuple[str, ...] = ("text2image.recipes.autoencoders", "text2image.recipes.clip", "text2image.recipes.dalle")


class UnknownRecipe(LookupError):
    """A recipe name nobody registered."""


@dataclass
class Recipe:
    """Everything needed to (re)train one model of the book.

    ``build(profile)`` returns a fresh model; ``task(model, profile)`` returns
    ``(loss_fn, batch_fn, eval_fn)`` for :class:`~text2image.train.Trainer`;
    ``configs`` maps each profile to its :class:`TrainConfig`; ``model_class``
    loads the weights back (a class with ``from_pretrained``, or ``None`` for a
    plain module rebuilt by ``build``). ``export`` picks what is shipped from
    what was trained (e.g. the autoencoder inside a wrapper that also holds a
    GAN discriminator); by default the whole trained model. ``base`` names the
    recipe whose shipped weights this one goes on from: the manifest records
    their digest, and loading refuses a checkpoint whose base has changed since.
    """

    name: str
    build: Callable[[str], torch.nn.Module]
    task: Callable[[torch.nn.Module, str], tuple[Callable, Callable, Callable | None]]
    configs: dict[str, TrainConfig]
    model_class: type | None = None
    data_seed: int = 0
    export: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    base: str | None = None

    def config(self, profile: str) -> TrainConfig:
        return profiles.pick(self.configs, profile)


def register(recipe: Recipe) -> Recipe:
    if recipe.name in REGISTRY and REGISTRY[recipe.name] is not recipe:
        raise ValueError(f"two recipes are named {recipe.name!r}")
    profiles.pick(recipe.configs, "cpu")  # fails early if a profile is missing
    REGISTRY[recipe.name] = recipe
    return recipe


def load_all() -> dict[str, Recipe]:
    """Import every module that registers recipes, and return the registry."""
    for module in RECIPE_MODULES:
        importlib.import_module(module)
    return REGISTRY


def as_json(config: TrainConfig) -> dict[str, Any]:
    """The config as it reads back from a manifest (tuples become lists)."""
    return json.loads(json.dumps(asdict(config), default=str))


def get(name: str) -> Recipe:
    load_all()
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY)) or "none yet"
        raise UnknownRecipe(f"no recipe named {name!r}; known recipes: {known}")
    return REGISTRY[name]


def checkpoint_folder(name: str, profile: str) -> Path:
    """Shipped folder for cpu/gpu, a throwaway one for smoke."""
    if profile == "smoke":
        return paths.build_dir() / "smoke" / "checkpoints" / name
    return checkpoints.checkpoint_dir(name)


def run_folder(name: str, profile: str) -> Path:
    """Where a training run keeps its resumable state and logs (git-ignored)."""
    if profile == "smoke":
        return paths.build_dir() / "smoke" / "runs" / name
    return paths.data_dir() / "runs" / f"{name}-{profile}"


def train(name: str, profile: str | None = None, progress: bool = True, device: str | None = None) -> Path:
    """Train ``name`` with the recipe of ``profile`` (resuming an interrupted run) and save the checkpoint."""
    profile = profiles.check(profile) if profile else profiles.current()
    recipe = get(name)
    config = recipe.config(profile)
    model = recipe.build(profile)
    loss_fn, batch_fn, eval_fn = recipe.task(model, profile)
    run_dir = run_folder(name, profile)
    trainer = Trainer(model, loss_fn, batch_fn, config, run_dir, eval_fn=eval_fn, device=device,
                      description=f"{name} ({profile})")
    started = time.perf_counter()
    metrics = trainer.fit(progress=progress)
    shipped = recipe.export(trainer.model) if recipe.export else trainer.model
    manifest: dict[str, Any] = {
        "name": name,
        "profile": profile,
        "recipe": as_json(config),
        "steps": trainer.step,
        "train_seconds": round(trainer.seconds, 1),
        "wall_seconds_this_session": round(time.perf_counter() - started, 1),
        "samples_per_second": round(config.batch_size * trainer.step / max(trainer.seconds, 1e-9), 1),
        "data_seed": recipe.data_seed,
        "device": str(trainer.device),
        "parameters": sum(p.numel() for p in shipped.parameters()),
        "metrics": metrics,
    }
    if recipe.base:
        base_weights = checkpoints.weights_digest(checkpoint_folder(recipe.base, profile))
        manifest["base"] = {"name": recipe.base, "weights": base_weights}
    folder = checkpoints.save(shipped, checkpoint_folder(name, profile), manifest)
    for log in (LOG_CSV, EVAL_JSON):  # shipped with the weights: chapters plot the training curves
        if (run_dir / log).is_file():
            shutil.copyfile(run_dir / log, folder / log)
    return folder


def _stale_base(manifest: dict, profile: str) -> str | None:
    """The current weights digest of the base a checkpoint went on from, when it is no longer the recorded one."""
    base = manifest.get("base")
    if not base:
        return None
    now = checkpoints.weights_digest(checkpoint_folder(base["name"], profile))
    return now if now != base["weights"] else None


def load_or_train(name: str, profile: str | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """The model and its manifest: loaded when a checkpoint for this profile exists, else trained first.

    ``gpu`` retrains unless a checkpoint made by the gpu recipe is already there.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    recipe = get(name)
    folder = checkpoint_folder(name, profile)
    lock = run_folder(name, profile).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):  # two kernels (the fr and en editions) never train the same model at once
        fresh = not (folder / checkpoints.MANIFEST).is_file()
        if not fresh and profile == "gpu":
            fresh = checkpoints.read_manifest(folder).get("profile") != "gpu"
        if not fresh and profile == "smoke":  # throwaway models: retrain when the recipe or the base changed
            manifest = checkpoints.read_manifest(folder)
            fresh = manifest.get("recipe") != as_json(recipe.config(profile)) or _stale_base(manifest, profile)
        if fresh:
            print(f"{name}: no usable checkpoint for profile {profile} in {folder}; training it now")
            train(name, profile, progress=progress)
        manifest = checkpoints.read_manifest(folder)
    expected = as_json(recipe.config(profile))
    if profile != "smoke" and manifest.get("profile") == profile and manifest.get("recipe") != expected:
        raise checkpoints.CheckpointError(
            f"{folder / checkpoints.MANIFEST}: made with another recipe than the code's "
            f"{profile} recipe; {checkpoints.retrain_hint(name)} --profile {profile}"
        )
    stale = _stale_base(manifest, profile)
    if stale:
        base = manifest["base"]
        raise checkpoints.CheckpointError(
            f"{folder / checkpoints.MANIFEST}: trained on from {base['name']} (weights {base['weights']}), "
            f"but that checkpoint has changed since (weights {stale}); "
            f"{checkpoints.retrain_hint(name)} --profile {profile}")
    template = None if recipe.model_class is not None else recipe.build(profile)
    model = checkpoints.load(recipe.model_class or torch.nn.Module, folder, model=template)
    return model, manifest
