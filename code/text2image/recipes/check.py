"""A check of the recipes nobody here can train: every ``gpu`` recipe, at full size, on the CPU.

``python -m text2image check gpu-recipes [NAME ...]`` builds each recipe's
``gpu`` model, runs one training step with the gpu batch, one evaluation and
one save/load round trip (the exported model, through the same
``checkpoints.save`` / ``checkpoints.load`` as a real run), in a temporary
folder. A shape or config error in a recipe that only a GPU machine would
train is caught on any machine. The bases of follow-ups (``clip`` under the
CLIP fine-tunes, ``vae`` under ``vae-long``, ``percept`` under ``vqgan``) are
built untrained (:func:`text2image.recipes.untrained`), and every cache the
check writes (run states, the DALL·E recipes' image tokens) goes to a
temporary ``TEXT2IMAGE_CACHE``: nothing is read from or written to the
checkpoint folders.

The one evaluation is the recipe's own ``eval_fn`` with the gpu profile's
sizes, except for the number of evaluation images, which is cut to
``EVAL_IMAGES`` (the full gpu evaluation of 2,048 images per model would take
most of the time and check nothing more about the recipe); likewise the
DALL·E recipes tokenise ``TOKENISED`` training examples instead of their
million (the latent-diffusion recipes encode as many), and the pixel-space and
latent generators judge ``SAMPLED`` validation prompts drawn in two sampling
steps (:func:`small_data`).

The command checks all of them (21 recipes before the latent-diffusion chapter added 4, about 13 minutes on 2 busy cores:
most of it is one full gpu batch through each model). The test suite checks
one recipe per :func:`signature` (model class, network sizes, adversarial or
not), which a test keeps complete: :data:`CI_SUBSET` with the gpu batch, and
:data:`CI_SMALL_BATCH` (the DALL·E transformers and the pixel-space generators) at full size with a batch of
:data:`CI_BATCH`. The recipes it leaves out differ from one it checks only by
steps, learning rate, data or codebook size.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import torch

from text2image import checkpoints, paths, recipes
from text2image.train import Trainer

PROFILE = "gpu"
EVAL_IMAGES = 64  # images (or captions) of the one evaluation
TOKENISED = 512   # training examples the DALL·E recipes tokenise (two gpu batches)
SAMPLED = 4       # prompts whose sampled image the DALL·E evaluation judges
# One recipe per signature, the quicker one where several share it (see the module's docstring).
CI_SUBSET = ("percept", "ae", "vae", "vqvae", "vqgan", "dvae", "vq-sweep/k4096", "clip-relation-twins")
# ... and these at full size but with a batch of CI_BATCH: one step of their 44M-parameter transformers at the
# gpu batch of 256 takes 165 s (dalle) and 46 s (dalle-mini) on 2 busy cores; shapes do not depend on the batch.
# The four pixel-space generators (plain modules, each its own signature) likewise: their 28M-parameter UNet
# and generator at the gpu batch of 256 would take minutes a step here.
# The latent-diffusion pipelines (a 42M-parameter UNet, a 43M-parameter DiT at the gpu size) likewise.
CI_SMALL_BATCH = ("dalle", "dalle-mini", "gan", "gan-sn", "ddpm", "flow-matching", "ldm-unet", "ldm-dit")
CI_BATCH = 8


def signature(name: str) -> tuple:
    """What decides whether a gpu recipe builds and runs: its model class, its network sizes, its losses
    (dead-code restarts are left out: they do not depend on the profile, and the smoke tests run them)."""
    recipe = recipes.get(name)
    extra = recipe.config(PROFILE).extra
    model = recipe.model_class.__name__ if recipe.model_class else f"{name} (plain module)"
    return (model, tuple(extra.get("channels", ())), extra.get("groups"), bool(extra.get("gan")),
            extra.get("denoiser"))


@dataclass
class Result:
    name: str
    parameters: int
    loss: float
    metrics: dict
    seconds: float


@contextlib.contextmanager
def small_data(n: int = EVAL_IMAGES) -> Iterator[None]:
    """Cut the gpu profile's evaluation sets to ``n`` items, and what the DALL·E recipes tokenise and sample,
    while the check runs (the recipes' tables are put back after)."""
    import importlib

    saved: list[tuple[dict, str, object]] = []

    def cut(table, key, value):
        if isinstance(table, dict) and key in table:
            saved.append((table, key, table[key]))
            table[key] = value

    for module, names in (("autoencoders", ("EVAL_IMAGES",)), ("clip", ("EVAL_SIZE",)),
                          ("dalle", ("VAL_EXAMPLES",))):
        try:
            loaded = importlib.import_module(f"text2image.recipes.{module}")
        except ImportError:
            continue
        for name in names:
            cut(getattr(loaded, name, None), PROFILE, n)
    dalle = importlib.import_module("text2image.recipes.dalle") if "dalle" in recipes.load_all() else None
    if dalle is not None:
        cut(dalle.EVAL_PROMPTS, PROFILE, SAMPLED)
        for configs in dalle.CONFIGS.values():
            cut(configs[PROFILE].extra, "examples", TOKENISED)
    generative = importlib.import_module("text2image.recipes.generative") if "ddpm" in recipes.load_all() else None
    if generative is not None:  # validation prompts, images of the val loss, and two sampling steps
        cut(generative.VAL_PROMPTS, PROFILE, SAMPLED)
        cut(generative.VAL_LOSS_IMAGES, PROFILE, n)
        cut(generative.EVAL_SAMPLING, PROFILE, generative.EVAL_SAMPLING[PROFILE].but(steps=2))
    latent = importlib.import_module("text2image.recipes.latent") if "ldm-unet" in recipes.load_all() else None
    if latent is not None:  # the encoded examples, the val loss's latents, and two sampling steps
        cut(latent.VAL_LOSS_IMAGES, PROFILE, n)
        cut(latent.EVAL_SAMPLING, PROFILE, latent.EVAL_SAMPLING[PROFILE].but(steps=2))
        for configs in latent.CONFIGS.values():
            cut(configs[PROFILE].extra, "examples", TOKENISED)
    tokencompose = importlib.import_module("text2image.recipes.tokencompose") if "tc-both" in recipes.load_all() \
        else None
    if tokencompose is not None:  # the encoded examples with their masks, and the validation examples
        cut(tokencompose.VAL_GROUNDING, PROFILE, n)
        for configs in tokencompose.CONFIGS.values():
            cut(configs[PROFILE].extra, "examples", TOKENISED)
    try:
        yield
    finally:
        for table, key, value in reversed(saved):
            table[key] = value


@contextlib.contextmanager
def _temporary_cache(folder: Path) -> Iterator[None]:
    before = os.environ.get(paths.CACHE_ENV)
    os.environ[paths.CACHE_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(paths.CACHE_ENV, None)
        else:
            os.environ[paths.CACHE_ENV] = before


def _same_outputs(a, b) -> bool:
    """Do two models (or two pipelines, network by network) hold the same weights (up to the fp16 of saved
    checkpoints)?"""
    if not isinstance(a, torch.nn.Module):  # a pipeline: each of its networks
        ca, cb = getattr(a, "components", {}), getattr(b, "components", {})
        nets = [k for k, v in ca.items() if isinstance(v, torch.nn.Module)]
        return bool(nets) and all(isinstance(cb.get(k), torch.nn.Module) and _same_outputs(ca[k], cb[k]) for k in nets)
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-2, rtol=1e-2) for k in sa)


def check_recipe(name: str, folder: Path, batch_size: int | None = None) -> Result:
    """One step, one evaluation and a save/load round trip of ``name``'s gpu recipe, in ``folder``
    (with the gpu batch, unless ``batch_size``)."""
    started = time.perf_counter()
    recipe = recipes.get(name)
    with recipes.untrained():
        gpu = recipe.config(PROFILE)
        full_batch = gpu.batch_size
        if batch_size:  # in place: the tasks read this very config (through the registry or their own table)
            gpu.batch_size = batch_size
        try:
            model = recipe.build(PROFILE)
            loss_fn, batch_fn, eval_fn = recipe.task(model, PROFILE)
            config = replace(gpu, steps=1, checkpoint_every=1, eval_every=0, log_every=1)
            trainer = (recipe.trainer or Trainer)(model, loss_fn, batch_fn, config, folder / "run", eval_fn=eval_fn,
                                                  device="cpu", description=f"check {name}")
            metrics = trainer.fit(progress=False)
        finally:
            gpu.batch_size = full_batch
    loss = float(next(iter(_log_rows(folder / "run")), {}).get("loss", float("nan")))
    if not torch.isfinite(torch.tensor(loss)):
        raise FloatingPointError(f"{name}: the gpu recipe's first loss is {loss}")
    with recipes.untrained():  # what is shipped with the model (a pipeline's VAE and text encoder) untrained too
        shipped = recipe.exported(trainer.model, PROFILE)
    manifest = {"name": name, "profile": PROFILE, "recipe": recipes.as_json(config), "steps": 1,
                "train_seconds": round(trainer.seconds, 3), "samples_per_second": 0.0, "data_seed": recipe.data_seed,
                "device": "cpu", "parameters": recipe.parameters(shipped), "metrics": metrics}
    saved = checkpoints.save(shipped, folder / "checkpoint", manifest)
    loaded = checkpoints.load(recipe.model_class or torch.nn.Module, saved, model=recipes.template(recipe, PROFILE))
    if not _same_outputs(shipped, loaded):
        raise checkpoints.CheckpointError(f"{name}: the gpu model does not come back the same from its checkpoint")
    return Result(name, manifest["parameters"], loss, metrics, time.perf_counter() - started)


def _log_rows(run_dir: Path) -> list[dict]:
    from text2image.train import read_log

    return read_log(run_dir)


def run(names: Sequence[str] | None = None, report=print, batch_size: int | None = None) -> list[Result]:
    """Check ``names`` (default: every registered recipe); raises on the first recipe that fails."""
    names = list(names) if names else sorted(recipes.load_all())
    results = []
    with tempfile.TemporaryDirectory(prefix="t2i-gpu-check-") as temp, \
            _temporary_cache(Path(temp) / "cache"), small_data():
        for name in names:
            recipes.get(name)
            result = check_recipe(name, Path(temp) / name.replace("/", "_"), batch_size)
            results.append(result)
            report(f"{name}: ok ({result.parameters:,} parameters, first loss {result.loss:.4g}, "
                   f"{result.seconds:.1f} s)")
    return results


def main(names: Sequence[str] | None = None, batch_size: int | None = None) -> int:
    started = time.perf_counter()
    results = run(names, batch_size=batch_size)
    print(f"{len(results)} gpu recipes checked in {time.perf_counter() - started:.0f} s")
    return 0
