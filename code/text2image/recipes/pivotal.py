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

:func:`lora` is the next step, the generator tuned around that pivot: a LoRA of
rank 4 on the UNet's attention projections
(:func:`text2image.methods.lora.tune`) on the same six images captioned with
the learnt word, after :func:`textual_inversion`. It is cached next to the
base's weights too, in ``<base checkpoint>/loras/<key>/``
(``pytorch_lora_weights.safetensors``, the file diffusers'
``load_lora_weights`` reads, and ``history.json``), the key a digest of the
base's weights, of the inversion's key and of the LoRA's settings: a word
learnt again is tuned around again. Settings per profile (:data:`LORA_CONFIG`):
the text-to-image LoRA README's rate, 1e-4, and 500 steps for ``cpu`` and
``gpu`` (not yet measured against the chapter's question); ``smoke`` a few
steps at a larger rate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from text2image import checkpoints, paths, profiles
from text2image.methods import lora as LO
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
LORA_CONFIG = {
    "smoke": dict(steps=8, lr=1e-2, rank=LO.RANK, log_every=2),
    "cpu": dict(steps=500, lr=LO.LR, rank=LO.RANK, log_every=25),
    "gpu": dict(steps=500, lr=LO.LR, rank=LO.RANK, log_every=25),
}
LORA_SEED = 2_418  # the batches, noises and time steps of the LoRA, and its A's start
LORA_CACHE_VERSION = "1"  # of what a LoRA folder holds: bump to tune every adapter again
LORAS = "loras"


def settings(profile: str | None = None, steps: int | None = None, lr: float | None = None,
             seed: int = SEED, initializer: str = TI.INITIALIZER) -> dict:
    """The profile's settings, with ``steps`` and ``lr`` when given."""
    config = dict(CONFIG[profiles.check(profile) if profile else profiles.current()])
    config.update({k: v for k, v in (("steps", steps), ("lr", lr)) if v is not None})
    return {**config, "seed": int(seed), "initializer": initializer, "placeholder": TI.PLACEHOLDER,
            "examples": [concept.TRAINING_SEED, 6]}


def _cache_folder(name: str, profile: str, kind: str, version: str, rest: list) -> Path | None:
    """``<base>/<kind>/<key>`` (or the results cache for a read-only base), keyed by ``version``, the base's
    weights digest and ``rest``; ``None`` for a base with no saved weights."""
    base = checkpoint_folder(name, profile)
    digest = checkpoints.weights_digest(base) if base.is_dir() else "none"
    if digest == "none":
        return None
    key = hashlib.sha256(json.dumps([version, digest, *rest], sort_keys=True).encode()).hexdigest()[:12]
    if paths.writable(base):
        return base / kind / key
    return paths.cache_dir("results") / f"{base.name}-{kind}" / key


def _store(folder: Path, made) -> None:
    """Write ``made`` (an inversion or an adapter: its ``save`` and ``history``) into ``folder`` at once."""
    temp = paths.new_dir(folder)
    made.save(temp)
    (temp / HISTORY).write_text(json.dumps(made.history, indent=1) + "\n")
    paths.swap_dir(temp, folder)


def inversion_folder(name: str, profile: str, config: dict) -> Path | None:
    """Where the word learned with ``config`` on ``name`` is cached (``None``: a base with no saved weights)."""
    return _cache_folder(name, profile, INVERSIONS, CACHE_VERSION, [config])


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


def _pivot(name: str, profile: str, config: dict) -> tuple[P.LatentDiffusionPipeline, TI.Inversion, Path | None]:
    """The pipeline with the word, the inversion, and its cache folder (``None``: a base with no saved weights)."""
    pipe, manifest = R.model(name, profile)
    # a freshly built base (recipes.untrained) is not the saved one whose folder the key would name
    folder = None if manifest.get("untrained") else inversion_folder(name, profile, config)
    if folder is not None:
        paths.recover_dir(folder)
        if (folder / HISTORY).is_file():
            return pipe, _cached(pipe, folder, config), folder
    inversion = _learn(pipe, config)
    if folder is not None:
        _store(folder, inversion)
    return pipe, inversion, folder


def textual_inversion(name: str = BASE, steps: int | None = None, lr: float | None = None,
                      profile: str | None = None, seed: int = SEED,
                      initializer: str = TI.INITIALIZER) -> tuple[P.LatentDiffusionPipeline, TI.Inversion]:
    """The pipeline ``name`` with ``<star>`` learned (``steps`` at ``lr``, the profile's by default), and the
    inversion: loaded from its cache folder when it was learned before on these weights, else learned and cached."""
    profile = profiles.check(profile) if profile else profiles.current()
    pipe, inversion, _ = _pivot(name, profile, settings(profile, steps, lr, seed, initializer))
    return pipe, inversion


# ----------------------------------------------------------------------------- the LoRA around the pivot

def lora_settings(profile: str | None = None, steps: int | None = None, lr: float | None = None,
                  rank: int | None = None, seed: int = LORA_SEED) -> dict:
    """The profile's LoRA settings, with ``steps``, ``lr`` and ``rank`` when given (alpha is the rank)."""
    config = dict(LORA_CONFIG[profiles.check(profile) if profile else profiles.current()])
    config.update({k: v for k, v in (("steps", steps), ("lr", lr), ("rank", rank)) if v is not None})
    return {**config, "seed": int(seed), "targets": list(LO.TARGETS), "examples": [concept.TRAINING_SEED, 6]}


def lora_folder(name: str, profile: str, inversion: Path | None, config: dict) -> Path | None:
    """Where the LoRA tuned with ``config`` around the word cached in ``inversion`` is cached (``None``: a base
    with no saved weights, or a word that is not cached)."""
    if inversion is None:
        return None
    return _cache_folder(name, profile, LORAS, LORA_CACHE_VERSION, [inversion.name, config])


def _tune(pipe: P.LatentDiffusionPipeline, token: str, config: dict) -> LO.Adapter:
    examples = concept.training_examples(config["examples"][1], concept.TRAINING_SEED)
    return LO.tune(pipe, examples, token, steps=config["steps"], lr=config["lr"], rank=config["rank"],
                   targets=config["targets"], log_every=config["log_every"], seed=config["seed"])


def _cached_lora(pipe: P.LatentDiffusionPipeline, folder: Path, token: str) -> LO.Adapter:
    LO.load(pipe, folder)
    _, metadata = LO.read(folder)
    return LO.Adapter.from_unet(pipe.unet, LO.ADAPTER, token, json.loads((folder / HISTORY).read_text()),
                                metadata[LO.BASE_KEY], json.loads(metadata["settings"]))


def lora(name: str = BASE, steps: int | None = None, lr: float | None = None, rank: int | None = None,
         profile: str | None = None, seed: int = LORA_SEED,
         inversion: dict | None = None) -> tuple[P.LatentDiffusionPipeline, TI.Inversion, LO.Adapter]:
    """The pipeline ``name`` with ``<star>`` learned (:func:`textual_inversion`, ``inversion`` its settings) and
    a LoRA tuned around it (``steps`` at ``lr``, of ``rank``; the profile's by default), active in its UNet; the
    inversion and the adapter. Each is loaded from its cache folder when it was made before, else made and cached."""
    profile = profiles.check(profile) if profile else profiles.current()
    options = dict(inversion or {})
    pipe, pivot, pivot_folder = _pivot(name, profile, settings(profile, **options))
    config = lora_settings(profile, steps, lr, rank, seed)
    folder = lora_folder(name, profile, pivot_folder, config)
    if folder is not None:
        paths.recover_dir(folder)
        if (folder / HISTORY).is_file():
            return pipe, pivot, _cached_lora(pipe, folder, pivot.token)
    adapter = _tune(pipe, pivot.token, config)
    if folder is not None:
        _store(folder, adapter)
    return pipe, pivot, adapter


@torch.no_grad()
def samples(name: str = BASE, prompts: int = 8, profile: str | None = None, seed: int = 0,
            **kwargs) -> tuple[list[str], "object"]:
    """``prompts`` concept prompts ("a small blue <star> above a red circle") and their images with the word
    learned by :func:`textual_inversion` (``kwargs``: its settings)."""
    pipe, inversion = textual_inversion(name, profile=profile, **kwargs)
    texts = [p.text(inversion.token) for p in concept.relation_prompts(prompts, seed)]
    sampling = R.default_sampling(profile)
    return texts, TI.sample(pipe, texts, seed, sampling, inversion.token)
