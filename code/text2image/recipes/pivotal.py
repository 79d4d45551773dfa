"""Recipes of the pivotal-tuning chapter: the concept star learned as a word (textual inversion) on a shipped pipeline.

:func:`textual_inversion` loads the base pipeline (``ldm-unet`` by default,
trained first if missing, as every recipe's base), learns ``<star>`` on the
concept's six training images (:func:`text2image.methods.textual_inversion.invert`)
and returns the pipeline holding the word with the :class:`~text2image.methods.textual_inversion.Inversion`.
The result is cached next to the base's weights, in
``<base checkpoint>/inversions/<key>/`` (``learned_embeds.safetensors``, the
file diffusers' loader reads, and ``history.json``), the key a digest of the
base's weights and of the settings: a retrained base learns the word again,
and a sweep over learning rates (the source's way to walk further from the
initial word: "distance ~ steps x lr") keeps one folder a setting. A base
that is not a saved checkpoint (under :func:`text2image.recipes.untrained`)
is never cached next to.

Settings per profile (:data:`CONFIG`): the source's (diffusers' README) lr
5e-4 and about 3,000 steps for ``cpu`` and ``gpu``; ``smoke`` a few steps at a
larger rate, to move at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from text2image import checkpoints, paths, profiles
from text2image.methods import textual_inversion as TI
from text2image.pipelines import latent as P
from text2image.recipes import checkpoint_folder
from text2image.recipes import latent as R
from text2image.world import concept

BASE = R.BASE  # "ldm-unet"
CONFIG = {
    "smoke": dict(steps=8, lr=2e-2, log_every=2),
    "cpu": dict(steps=3000, lr=TI.LR, log_every=100),
    "gpu": dict(steps=3000, lr=TI.LR, log_every=100),
}
SEED = 2_417  # the batches, noises and time steps of the inversion
CACHE_VERSION = "1"  # of what an inversion folder holds: bump to learn every word again
INVERSIONS = "inversions"
HISTORY = "history.json"


def settings(profile: str | None = None, steps: int | None = None, lr: float | None = None,
             seed: int = SEED, initializer: str = TI.INITIALIZER) -> dict:
    """The profile's settings, with ``steps`` and ``lr`` when given."""
    config = dict(CONFIG[profiles.check(profile) if profile else profiles.current()])
    config.update({k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None})
    return {**config, "seed": int(seed), "initializer": initializer, "placeholder": TI.PLACEHOLDER,
            "examples": [concept.TRAINING_SEED, 6]}


def inversion_folder(name: str, profile: str, config: dict) -> Path | None:
    """Where the word learned with ``config`` on ``name`` is cached (``None``: a base with no saved weights)."""
    base = checkpoint_folder(name, profile)
    digest = checkpoints.weights_digest(base) if base.is_dir() else "none"
    if digest == "none":
        return None
    key = hashlib.sha256(json.dumps([CACHE_VERSION, digest, config], sort_keys=True).encode()).hexdigest()[:12]
    if paths.writable(base):
        return base / INVERSIONS / key
    return paths.cache_dir("results") / f"{base.name}-{INVERSIONS}" / key


def _learn(pipe: P.LatentDiffusionPipeline, config: dict) -> TI.Inversion:
    seed = concept.TRAINING_SEED
    examples = concept.training_examples(config["examples"][1], seed)
    return TI.invert(pipe, examples, config["placeholder"], config["initializer"], steps=config["steps"],
                     lr=config["lr"], log_every=config["log_every"], seed=config["seed"])


def _cached(pipe: P.LatentDiffusionPipeline, folder: Path, config: dict) -> TI.Inversion:
    token = TI.load(pipe, folder)
    tokenizer, weight = pipe.tokenizer, pipe.text_encoder.get_input_embeddings().weight
    token_id = tokenizer.convert_tokens_to_ids(token)
    _, metadata = TI.read(folder)
    return TI.Inversion(token, token_id, config["initializer"],
                        weight[tokenizer.convert_tokens_to_ids(config["initializer"])].detach().cpu().float().clone(),
                        weight[token_id].detach().cpu().float().clone(),
                        json.loads((folder / HISTORY).read_text()), metadata[TI.BASE_KEY],
                        json.loads(metadata["settings"]))


def textual_inversion(name: str = BASE, steps: int | None = None, lr: float | None = None,
                      profile: str | None = None, seed: int = SEED,
                      initializer: str = TI.INITIALIZER) -> tuple[P.LatentDiffusionPipeline, TI.Inversion]:
    """The pipeline ``name`` with ``<star>`` learned (``steps`` at ``lr``, the profile's by default), and the
    inversion: loaded from its cache folder when it was learned before on these weights, else learned and cached."""
    profile = profiles.check(profile) if profile else profiles.current()
    config = settings(profile, steps, lr, seed, initializer)
    pipe, manifest = R.model(name, profile)
    # a freshly built base (recipes.untrained) is not the saved one whose folder the key would name
    folder = None if manifest.get("untrained") else inversion_folder(name, profile, config)
    if folder is not None:
        paths.recover_dir(folder)
        if (folder / HISTORY).is_file():
            return pipe, _cached(pipe, folder, config)
    inversion = _learn(pipe, config)
    if folder is not None:
        temp = paths.new_dir(folder)
        inversion.save(temp)
        (temp / HISTORY).write_text(json.dumps(inversion.history, indent=1) + "\n")
        paths.swap_dir(temp, folder)
    return pipe, inversion


@torch.no_grad()
def samples(name: str = BASE, prompts: int = 8, profile: str | None = None, seed: int = 0,
            **kwargs) -> tuple[list[str], "object"]:
    """``prompts`` concept prompts ("a small blue <star> above a red circle") and their images with the word
    learned by :func:`textual_inversion` (``kwargs``: its settings)."""
    pipe, inversion = textual_inversion(name, profile=profile, **kwargs)
    texts = [p.text(inversion.token) for p in concept.relation_prompts(prompts, seed)]
    sampling = R.default_sampling(profile)
    return texts, TI.sample(pipe, texts, seed, sampling, inversion.token)
