"""Recipes: how each model of the book is built, trained and judged, per profile.

This package holds the registry and :func:`load_or_train`, and one module per
chapter (``autoencoders``, ``clip``, ...) with its sizes, steps and batches per
profile and the task (loss, batch, evaluation) of each model. It may import
everything below it (world, models, pipelines, methods) and ``evaluate``.

A recipe module registers a :class:`Recipe`; :func:`load_or_train` is what a
chapter calls. Each profile has its own home for checkpoints: ``cpu`` the
shipped ``data/checkpoints/<name>/``, ``gpu`` the ``trained`` cache
(``data/trained/gpu/<name>/`` in a writable clone), ``smoke`` the throwaway
``build/smoke/checkpoints/<name>/`` (see :mod:`text2image.paths` for where the
caches go when the checkout is read-only).

Loading never trains over a checkpoint that is there: a checkpoint folder
that is incomplete, changed or made by another recipe is an error naming the
file and how to restore it. Only a checkpoint that is missing altogether is
trained on demand (with a progress bar); replacing shipped weights takes an
explicit ``python -m text2image train <name>``. One lock per run folder: a
second ``train`` of the same recipe and profile stops with one line (or waits,
``wait=True``), and two chapter kernels that need the same missing model train
it once.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from filelock import FileLock, Timeout

from text2image import checkpoints, paths, profiles
from text2image.train import EVAL_JSON, LOG_CSV, TrainConfig, Trainer, is_main_process

REGISTRY: dict[str, "Recipe"] = {}
# Modules whose import registers recipes (each model chapter adds its own).
RECIPE_MODULES: tuple[str, ...] = ("text2image.recipes.autoencoders", "text2image.recipes.clip", "text2image.recipes.dalle",
                                   "text2image.recipes.generative", "text2image.recipes.latent",
                                   "text2image.recipes.tokencompose")


class UnknownRecipe(LookupError):
    """A recipe name nobody registered."""


class RunLocked(RuntimeError):
    """Another process is training the same recipe and profile."""


# Inside :func:`untrained`, load_or_train builds models instead of loading or training them.
_UNTRAINED: contextvars.ContextVar[bool] = contextvars.ContextVar("untrained", default=False)


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
    ``trainer``: the loop, a subclass of :class:`~text2image.train.Trainer` for a
    model that is not trained by one loss and one optimiser step (the GANs'
    alternating steps); by default the Trainer itself. ``export_takes_profile``:
    ``export(model, profile)`` rather than ``export(model)``, for what is shipped
    with other models of the profile (a latent-diffusion pipeline holds the
    profile's VAE and text encoder beside the denoiser it trained).
    """

    name: str
    build: Callable[[str], torch.nn.Module]
    task: Callable[[torch.nn.Module, str], tuple[Callable, Callable, Callable | None]]
    configs: dict[str, TrainConfig]
    model_class: type | None = None
    data_seed: int = 0
    export: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    base: str | None = None
    trainer: type[Trainer] | None = None
    export_takes_profile: bool = False

    def config(self, profile: str) -> TrainConfig:
        return profiles.pick(self.configs, profile)

    def exported(self, model: torch.nn.Module, profile: str):
        """What is shipped of ``model``, trained (or built) for ``profile``."""
        if self.export is None:
            return model
        return self.export(model, profile) if self.export_takes_profile else self.export(model)

    def parameters(self, shipped) -> int:
        """The parameters of what is shipped (a pipeline's: those of its networks, all of them)."""
        modules = [shipped] if isinstance(shipped, torch.nn.Module) else [
            m for m in getattr(shipped, "components", {}).values() if isinstance(m, torch.nn.Module)]
        return sum(p.numel() for m in modules for p in m.parameters())


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


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _trained_home(name: str, profile: str) -> Path:
    return paths.cache_dir("trained") / profile / name


def locate(name: str, profile: str) -> Path | None:
    """The folder holding ``name``'s checkpoint for ``profile`` (whole or not), or None when there is none.

    Reads only: a shipped checkpoint is found without any write access.
    """
    profile = profiles.check(profile)
    if profile == "cpu" and _has_files(checkpoints.checkpoint_dir(name)):
        return checkpoints.checkpoint_dir(name)
    try:
        folder = paths.cache_dir("smoke") / "checkpoints" / name if profile == "smoke" else _trained_home(name, profile)
    except paths.NothingWritable:
        return None
    return folder if _has_files(folder) else None


def target_folder(name: str, profile: str) -> Path:
    """Where training ``name`` for ``profile`` writes its checkpoint: the shipped folder for ``cpu`` when
    it can be written, else the profile's cache."""
    profile = profiles.check(profile)
    if profile == "smoke":
        return paths.cache_dir("smoke") / "checkpoints" / name
    if profile == "cpu" and paths.writable(checkpoints.checkpoint_dir(name)):
        return checkpoints.checkpoint_dir(name)
    return _trained_home(name, profile)


def checkpoint_folder(name: str, profile: str) -> Path:
    """The folder of ``name``'s checkpoint for ``profile``: where it is, else where training will write it."""
    return locate(name, profile) or target_folder(name, profile)


def run_folder(name: str, profile: str) -> Path:
    """Where a training run keeps its resumable state and logs (a cache, git-ignored)."""
    if profile == "smoke":
        return paths.cache_dir("smoke") / "runs" / name
    return paths.cache_dir("runs") / f"{name}-{profile}"


@contextlib.contextmanager
def run_lock(name: str, profile: str, wait: bool = False, device: str | None = None) -> Iterator[None]:
    """Hold the lock of ``name``'s run folder; if another process holds it, stop with one line, or wait."""
    if not is_main_process(device):  # the processes of one accelerate launch share the first one's lock
        yield
        return
    path = run_folder(name, profile).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise RunLocked(f"{name} ({profile}) is being trained by another process (lock {path}); "
                            f"wait for it to finish, or rerun with --wait") from None
        print(f"{name} ({profile}): another process is training it; waiting for it to finish", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def train(name: str, profile: str | None = None, progress: bool = True, device: str | None = None,
          wait: bool = False) -> Path:
    """Train ``name`` with the recipe of ``profile`` (resuming an interrupted run) and save the checkpoint.

    The explicit command: it replaces the checkpoint in the profile's home, the shipped one for ``cpu``.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    recipe = get(name)
    with run_lock(name, profile, wait=wait, device=device):
        return _train(recipe, profile, progress, device)


def _train(recipe: Recipe, profile: str, progress: bool, device: str | None) -> Path:
    name = recipe.name
    config = recipe.config(profile)
    model = recipe.build(profile)
    loss_fn, batch_fn, eval_fn = recipe.task(model, profile)
    run_dir = run_folder(name, profile)
    trainer = (recipe.trainer or Trainer)(model, loss_fn, batch_fn, config, run_dir, eval_fn=eval_fn, device=device,
                                          description=f"{name} ({profile})")
    started = time.perf_counter()
    metrics = trainer.fit(progress=progress)
    folder = target_folder(name, profile)
    if not trainer.is_main:  # one process writes the checkpoint
        trainer.accelerator.wait_for_everyone()
        return folder
    shipped = recipe.exported(trainer.model, profile)
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
        "processes": trainer.processes,
        "parameters": recipe.parameters(shipped),
        "metrics": metrics,
    }
    if recipe.base:
        base_weights = checkpoints.weights_digest(checkpoint_folder(recipe.base, profile))
        manifest["base"] = {"name": recipe.base, "weights": base_weights}
    # the logs ship with the weights: chapters plot the training curves
    checkpoints.save(shipped, folder, manifest, extra_files=[run_dir / LOG_CSV, run_dir / EVAL_JSON])
    trainer.accelerator.wait_for_everyone()
    return folder


def _check(recipe: Recipe, folder: Path, profile: str) -> dict:
    """The manifest of a checkpoint that is whole, unchanged, made by the code's recipe for ``profile``, and
    whose base (if any) is whole and unchanged since; else one error naming the file to blame."""
    name = recipe.name
    manifest = checkpoints.verify(folder)
    path = folder / checkpoints.MANIFEST
    if manifest["name"] != name:
        raise checkpoints.CheckpointError(f"{path}: field 'name' is {manifest['name']!r}, not {name!r}; "
                                          f"{checkpoints.fix_hint(folder, name)}")
    if manifest["profile"] != profile:
        raise checkpoints.CheckpointError(
            f"{path}: field 'profile' is {manifest['profile']!r}, but this folder holds the {profile} "
            f"checkpoint; {checkpoints.fix_hint(folder, name)}")
    if manifest["recipe"] != as_json(recipe.config(profile)):
        raise checkpoints.CheckpointError(
            f"{path}: made with another recipe than the code's {profile} recipe; "
            f"{checkpoints.retrain_hint(name)} --profile {profile}")
    base = manifest.get("base")
    if base:
        base_folder = locate(base["name"], profile)
        if base_folder is None:
            raise checkpoints.CheckpointError(
                f"{path}: trained on from {base['name']}, whose checkpoint is missing; "
                f"{checkpoints.fix_hint(checkpoint_folder(base['name'], profile), base['name'])}")
        checkpoints.verify(base_folder)  # a damaged base is blamed itself, not the model that goes on from it
        now = checkpoints.weights_digest(base_folder)
        if now != base["weights"]:
            raise checkpoints.CheckpointError(
                f"{path}: trained on from {base['name']} (weights {base['weights']}), "
                f"but that checkpoint has changed since (weights {now}); "
                f"{checkpoints.retrain_hint(name)} --profile {profile}")
    return manifest


def _usable(recipe: Recipe, profile: str) -> tuple[Path | None, dict | None]:
    """``(folder, manifest)`` of a checkpoint to load, or ``(None, None)`` when one must be trained.

    Only a missing checkpoint is trained, except in ``smoke``, whose throwaway
    checkpoints are retrained whenever they no longer fit.
    """
    folder = locate(recipe.name, profile)
    if folder is None:
        return None, None
    if profile != "smoke":
        return folder, _check(recipe, folder, profile)
    try:
        return folder, _check(recipe, folder, profile)
    except checkpoints.CheckpointError:
        return None, None


@contextlib.contextmanager
def untrained() -> Iterator[None]:
    """Within this block :func:`load_or_train` returns freshly built (exported) models and reads or trains
    nothing: what a check of the recipes needs for the bases of follow-ups."""
    token = _UNTRAINED.set(True)
    try:
        yield
    finally:
        _UNTRAINED.reset(token)


def load_or_train(name: str, profile: str | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """The model and its manifest: loaded from its profile's home, or trained first when it is missing there."""
    profile = profiles.check(profile) if profile else profiles.current()
    recipe = get(name)
    if _UNTRAINED.get():
        model = recipe.exported(recipe.build(profile), profile)
        return (model.eval() if isinstance(model, torch.nn.Module) else model), \
            {"name": name, "profile": profile, "untrained": True}
    folder, manifest = _usable(recipe, profile)
    if folder is None:
        # two kernels (the fr and en editions) never train the same model at once: the second waits,
        # then finds the first one's checkpoint
        with run_lock(name, profile, wait=True):
            folder, manifest = _usable(recipe, profile)
            if folder is None:
                print(f"{name}: no usable checkpoint for profile {profile} in {checkpoint_folder(name, profile)}; "
                      f"training it now", flush=True)
                folder = _train(recipe, profile, progress, None)
                manifest = _check(recipe, folder, profile)
    model = checkpoints.load(recipe.model_class or torch.nn.Module, folder, model=template(recipe, profile))
    return model, manifest


def template(recipe: Recipe, profile: str) -> torch.nn.Module | None:
    """What a plain-module checkpoint loads into: the recipe's fresh model, as exported (``None`` for a
    class that loads itself with ``from_pretrained``)."""
    if recipe.model_class is not None:
        return None
    return recipe.exported(recipe.build(profile), profile)
