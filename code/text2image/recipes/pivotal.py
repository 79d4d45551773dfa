"""Recipes of the pivotal-tuning chapter: the concept star learned as a word, a LoRA around it, and their measures.

:func:`textual_inversion` loads the base pipeline (``ldm-unet-twins-clip``, the
latent chapter's best model, trained first if missing, as every recipe's base),
learns ``<star>`` on the concept's six training images
(:func:`text2image.methods.textual_inversion.invert`) and returns the pipeline
holding the word with the :class:`~text2image.methods.textual_inversion.Inversion`.
The result is cached next to the base's weights, in
``<base checkpoint>/inversions/<key>/`` (``learned_embeds.safetensors``, the
file diffusers' loader reads, and ``history.json``, which holds the word's row
at every logged step: any point of its path can be drawn again), the key a
digest of the base's weights and of the settings: a retrained base learns the
word again, and a sweep over learning rates (the source's way to walk further
from the initial word: "distance ~ steps x lr") keeps one folder a setting. A
base that is not a saved checkpoint (under :func:`text2image.recipes.untrained`)
is never cached next to.

Settings per profile (:data:`CONFIG`): the source's (diffusers' README) lr
5e-4 and about 3,000 steps for ``cpu`` and ``gpu``; ``smoke`` a few steps at a
larger rate, to move at all.

:func:`lora` is the next step, the generator tuned around that pivot: a LoRA of
rank 4 on the UNet's attention projections
(:func:`text2image.methods.lora.tune`) on the same six images captioned with
the learnt word, with PTI's locality term when asked (on the captions, or on
prompts that put the word in context). It is cached next to the base's weights
too, in ``<base checkpoint>/loras/<key>/`` (``pytorch_lora_weights.safetensors``,
the file diffusers' ``load_lora_weights`` reads, and ``history.json``), the key
a digest of the base's weights, of the inversion's key and of the LoRA's
settings. Settings per profile (:data:`LORA_CONFIG`): the text-to-image LoRA
README's rate, 1e-4, and 500 steps; the chapter's sweeps (:data:`INVERSION_SWEEP`,
:data:`LORA_SWEEP`, :data:`LOCALITY_RUNS`) go around them.

The measures of a point (:func:`inversion_measures`, :func:`lora_measures`,
:func:`base_measures`, :func:`ceiling_measures`) are
:mod:`text2image.evaluate.concept`'s, on :data:`MEASURE_PROMPTS` prompts drawn
from :data:`MEASURE_SEED`, cached next to the base's weights as
``pivot-<key>.json``, the key naming the word's or adapter's folder.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from text2image import checkpoints, paths, profiles
from text2image.evaluate import concept as E
from text2image.methods import lora as LO
from text2image.methods import textual_inversion as TI
from text2image.pipelines import latent as P
from text2image.recipes import checkpoint_folder
from text2image.recipes import latent as R
from text2image.world import concept
from text2image.world.tensors import to_tensor, to_uint8

BASE = "ldm-unet-twins-clip"  # the latent chapter's best model: the one whose relations are worth keeping
CONFIG = {
    "smoke": dict(steps=8, lr=2e-2, log_every=2),
    "cpu": dict(steps=3000, lr=TI.LR, log_every=100),
    "gpu": dict(steps=3000, lr=TI.LR, log_every=100),
}
SEED = 2_417  # the batches, noises and time steps of the inversion
CACHE_VERSION = "2"  # of what an inversion folder holds: bump to learn every word again
INVERSIONS = "inversions"
HISTORY = "history.json"
LORA_CONFIG = {
    "smoke": dict(steps=8, lr=1e-2, rank=LO.RANK, log_every=2),
    "cpu": dict(steps=500, lr=LO.LR, rank=LO.RANK, log_every=25),
    "gpu": dict(steps=500, lr=LO.LR, rank=LO.RANK, log_every=25),
}
LORA_SEED = 2_418  # the batches, noises and time steps of the LoRA, and its A's start
LORA_CACHE_VERSION = "2"  # of what a LoRA folder holds: bump to tune every adapter again
LORAS = "loras"
CONTEXT_SEED = 2_419  # the prompts that put the word in context for the locality term


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
                  rank: int | None = None, seed: int = LORA_SEED, locality: float = 0.0, contexts: int = 0) -> dict:
    """The profile's LoRA settings, with ``steps``, ``lr`` and ``rank`` when given (alpha is the rank), the
    weight of PTI's locality term (none by default; its class word is the inversion's initial word) and the
    number of prompts that put the word in context for that term (none: the captions)."""
    config = dict(LORA_CONFIG[profiles.check(profile) if profile else profiles.current()])
    config.update({k: v for k, v in (("steps", steps), ("lr", lr), ("rank", rank)) if v is not None})
    out = {**config, "seed": int(seed), "targets": list(LO.TARGETS), "examples": [concept.TRAINING_SEED, 6],
           "locality": float(locality)}
    if contexts:  # absent when none, so that the keys of the adapters tuned before contexts stay what they were
        out["contexts"] = [int(contexts), CONTEXT_SEED]
    return out


def lora_folder(name: str, profile: str, inversion: Path | None, config: dict) -> Path | None:
    """Where the LoRA tuned with ``config`` around the word cached in ``inversion`` is cached (``None``: a base
    with no saved weights, or a word that is not cached)."""
    if inversion is None:
        return None
    return _cache_folder(name, profile, LORAS, LORA_CACHE_VERSION, [inversion.name, config])


def _tune(pipe: P.LatentDiffusionPipeline, pivot: TI.Inversion, config: dict) -> LO.Adapter:
    examples = concept.training_examples(config["examples"][1], concept.TRAINING_SEED)
    return LO.tune(pipe, examples, pivot.token, steps=config["steps"], lr=config["lr"], rank=config["rank"],
                   targets=config["targets"], log_every=config["log_every"], seed=config["seed"],
                   locality=config["locality"], anchor=pivot.initializer, contexts=_contexts(config, pivot.token))


def _contexts(config: dict, token: str) -> list[str]:
    """The context prompts of the locality term: the star beside a base shape, drawn from their own seed (never
    the measures' prompts)."""
    n, seed = config.get("contexts", (0, CONTEXT_SEED))
    return [p.text(token) for p in concept.relation_prompts(n, seed)] if n else []


def _cached_lora(pipe: P.LatentDiffusionPipeline, folder: Path, token: str) -> LO.Adapter:
    LO.load(pipe, folder)
    _, metadata = LO.read(folder)
    return LO.Adapter.from_unet(pipe.unet, LO.ADAPTER, token, json.loads((folder / HISTORY).read_text()),
                                metadata[LO.BASE_KEY], json.loads(metadata["settings"]))


def _around(name: str, profile: str, config: dict, inversion: dict | None):
    """The pipeline with the word and the LoRA, the inversion, the adapter and its cache folder (``None``: a base
    with no saved weights)."""
    pipe, pivot, pivot_folder = _pivot(name, profile, settings(profile, **dict(inversion or {})))
    folder = lora_folder(name, profile, pivot_folder, config)
    if folder is not None:
        paths.recover_dir(folder)
        if (folder / HISTORY).is_file():
            return pipe, pivot, _cached_lora(pipe, folder, pivot.token), folder
    adapter = _tune(pipe, pivot, config)
    if folder is not None:
        _store(folder, adapter)
    return pipe, pivot, adapter, folder


def lora(name: str = BASE, steps: int | None = None, lr: float | None = None, rank: int | None = None,
         profile: str | None = None, seed: int = LORA_SEED, locality: float = 0.0, contexts: int = 0,
         inversion: dict | None = None) -> tuple[P.LatentDiffusionPipeline, TI.Inversion, LO.Adapter]:
    """The pipeline ``name`` with ``<star>`` learned (:func:`textual_inversion`, ``inversion`` its settings) and
    a LoRA tuned around it (``steps`` at ``lr``, of ``rank``, with PTI's ``locality`` term at that weight, on
    ``contexts`` prompts when given; the profile's by default), active in its UNet; the inversion and the adapter.
    Each is loaded from its cache folder when it was made before, else made and cached."""
    profile = profiles.check(profile) if profile else profiles.current()
    config = lora_settings(profile, steps, lr, rank, seed, locality, contexts)
    pipe, pivot, adapter, _ = _around(name, profile, config, inversion)
    return pipe, pivot, adapter


@torch.no_grad()
def draw(prompts, seed: int = 0, name: str = BASE, profile: str | None = None, step: int | None = None,
         inversion: dict | None = None, lora: dict | None = None) -> np.ndarray:
    """uint8 images of ``prompts`` (written with ``<star>``): with the word learned with ``inversion`` (its
    settings), as it was at ``step`` of its path (its end by default), and with the LoRA of settings ``lora``
    around it when given (:func:`lora_settings`). The cached word and adapter; the pipeline left without them."""
    profile = profiles.check(profile) if profile else profiles.current()
    if lora is None:
        pipe, pivot, _ = _pivot(name, profile, settings(profile, **dict(inversion or {})))
        if step is not None:
            TI.set_row(pipe, pivot.token, TI.row_at(pivot, step))
    else:
        pipe, pivot, _, _ = _around(name, profile, lora_settings(profile, **lora), inversion)
    return TI.sample(pipe, list(prompts), seed, R.default_sampling(profile), pivot.token)


# ----------------------------------------------------------------------------- the measures of a point of the path

MEASURE_PROMPTS = {"smoke": 12, "cpu": 240, "gpu": 480}  # prompts of each measure (one image each)
MEASURE_SEED = 31  # the prompts, their scenes and the sampling noises of every measure
MEASURE_VERSION = "3"  # of evaluate.concept's measures: bump to measure every point again


def _measure_key(profile: str, kind: str, **point) -> dict:
    return {"version": MEASURE_VERSION, "kind": kind, "profile": profile, "prompts": MEASURE_PROMPTS[profile],
            "seed": MEASURE_SEED, "sampling": repr(R.default_sampling(profile)), **point}


def _measures(pipe: P.LatentDiffusionPipeline, profile: str, token: str) -> dict:
    generate = P.Generator(pipe, R.default_sampling(profile))
    n = MEASURE_PROMPTS[profile]
    return {"reconstruction": E.reconstruction(generate, n, MEASURE_SEED, token),
            "editability": E.editability(generate, n, MEASURE_SEED, token)}


def _cached_measures(name: str, profile: str, key: dict, compute) -> dict:
    """``compute()`` cached next to the base's weights (``pivot-<key>.json``), or not cached at all for a base
    with no saved weights (under :func:`text2image.recipes.untrained`)."""
    if key.get("folder") is None:
        return compute()
    return checkpoints.cached_result(checkpoint_folder(name, profile), checkpoints.result_name("pivot", key), key,
                                     compute)


def base_measures(name: str = BASE, profile: str | None = None) -> dict:
    """The base model on the edited prompts with a base shape in the star's place
    (:func:`text2image.evaluate.concept.base_editability`): the editability a learned word is held to."""
    profile = profiles.check(profile) if profile else profiles.current()
    key = _measure_key(profile, "base", folder=name)

    def compute():
        pipe, _ = R.model(name, profile)
        generate = P.Generator(pipe, R.default_sampling(profile))
        return {"editability": E.base_editability(generate, MEASURE_PROMPTS[profile], MEASURE_SEED)}

    return _cached_measures(name, profile, key, compute)


def ceiling_measures(name: str = BASE, profile: str | None = None) -> dict:
    """The measures' own scenes drawn by the world, sent through the base's VAE and back: the reconstruction and
    editability that a perfect denoiser of its latents would reach (:func:`text2image.evaluate.concept.drawing`)."""
    profile = profiles.check(profile) if profile else profiles.current()
    key = _measure_key(profile, "ceiling", folder=name, by_size=True)

    @torch.no_grad()
    def compute():
        pipe, _ = R.model(name, profile)
        vae = pipe.vae

        def round_trip(images):
            x = to_tensor(images).to(vae.device, vae.dtype)
            return to_uint8(vae.decode(vae.encode(x).latent_dist.mode()).sample)

        n = MEASURE_PROMPTS[profile]
        alone = [p.scene for p in concept.attribute_prompts(n, MEASURE_SEED)]
        related = [p.scene for p in concept.relation_prompts(n, MEASURE_SEED)]
        return {"reconstruction": E.reconstruction(E.drawing(alone, round_trip), n, MEASURE_SEED, by_size=True),
                "editability": E.editability(E.drawing(related, round_trip), n, MEASURE_SEED)}

    return _cached_measures(name, profile, key, compute)


def inversion_measures(step: int, name: str = BASE, profile: str | None = None, **options) -> dict:
    """Reconstruction and editability of the word as it was at ``step`` of the inversion learned with
    ``options`` (:func:`settings`), with its distance from the initial word and ``steps x lr`` there."""
    profile = profiles.check(profile) if profile else profiles.current()
    pipe, inversion, folder = _pivot(name, profile, settings(profile, **options))
    entry = TI.entry_at(inversion, step)
    row = torch.tensor(entry["row"], dtype=torch.float32)
    key = _measure_key(profile, "inversion", folder=folder and folder.name, step=step)

    def compute():
        TI.set_row(pipe, inversion.token, row)
        try:
            return _measures(pipe, profile, inversion.token)
        finally:
            TI.set_row(pipe, inversion.token, inversion.embedding)

    return {"step": step, "distance": entry["distance"], "steps_lr": entry["steps_lr"],
            **_cached_measures(name, profile, key, compute)}


def lora_measures(name: str = BASE, profile: str | None = None, inversion: dict | None = None, **options) -> dict:
    """Reconstruction and editability with the word of :func:`textual_inversion` (``inversion``: its settings)
    and the LoRA tuned around it with ``options`` (:func:`lora_settings`), with how far the LoRA moved the UNet."""
    profile = profiles.check(profile) if profile else profiles.current()
    pipe, pivot, adapter, folder = _around(name, profile, lora_settings(profile, **options), inversion)
    key = _measure_key(profile, "lora", folder=folder and folder.name)
    try:
        measured = _cached_measures(name, profile, key, lambda: _measures(pipe, profile, pivot.token))
    finally:
        pipe.unload_lora_weights()
    last = adapter.history[-1]
    return {"steps": adapter.settings["steps"], "lr": adapter.settings["lr"], "update_norm": last["update_norm"],
            "relative": last["relative"], "size": adapter.size, **measured}


# ----------------------------------------------------------------------------- the chapter's sweeps

# The inversion walked at four rates around diffusers' 5e-4, each measured at four of its logged steps; the
# LoRA around the pivot (the profile's own inversion, CONFIG) at the text-to-image README's 1e-4, PTI's 3e-4,
# 1e-3 and 3e-3, each run to several budgets (PTI's 350 steps among them), the faster rates further.
INVERSION_SWEEP = {"smoke": dict(rates=(2e-2,), steps=(4, 8)),
                   "cpu": dict(rates=(5e-5, 5e-4, 5e-3, 5e-2), steps=(100, 300, 1000, 3000)),
                   "gpu": dict(rates=(5e-5, 5e-4, 5e-3, 5e-2), steps=(100, 300, 1000, 3000))}
LORA_SWEEP = {"smoke": {1e-2: (4, 8)},
              "cpu": {1e-4: (100, 350, 1000), 3e-4: (100, 350, 1000), 1e-3: (100, 350, 1000, 3000),
                      3e-3: (350, 1000, 3000)}}
LORA_SWEEP["gpu"] = LORA_SWEEP["cpu"]
LOCALITY = 1.0  # the locality term's weight against the diffusion loss


def inversions(name: str = BASE, profile: str | None = None) -> dict[float, TI.Inversion]:
    """``{lr: the word learned at that rate}`` for the rates of the profile's sweep, each learned once."""
    profile = profiles.check(profile) if profile else profiles.current()
    return {lr: textual_inversion(name, lr=lr, profile=profile)[1] for lr in INVERSION_SWEEP[profile]["rates"]}


def inversion_sweep(name: str = BASE, profile: str | None = None) -> dict[float, list[dict]]:
    """``{lr: [measures at each step of the sweep]}`` (:func:`inversion_measures`), each learned and measured once."""
    profile = profiles.check(profile) if profile else profiles.current()
    sweep = INVERSION_SWEEP[profile]
    return {lr: [inversion_measures(step, name, profile, lr=lr) for step in sweep["steps"]] for lr in sweep["rates"]}


def pivot_measures(name: str = BASE, profile: str | None = None) -> dict:
    """The measures of the pivot the LoRA is tuned around: the profile's inversion at its last step."""
    profile = profiles.check(profile) if profile else profiles.current()
    return inversion_measures(CONFIG[profile]["steps"], name, profile)


def lora_sweep(name: str = BASE, profile: str | None = None) -> dict[float, list[dict]]:
    """``{lr: [measures at each budget of the sweep]}`` (:func:`lora_measures`) around the profile's pivot."""
    profile = profiles.check(profile) if profile else profiles.current()
    return {lr: [lora_measures(name, profile, lr=lr, steps=steps) for steps in budgets]
            for lr, budgets in LORA_SWEEP[profile].items()}


@torch.no_grad()
def removable(prompts, lora: dict, seed: int = 0, name: str = BASE, profile: str | None = None) -> dict:
    """Whether the adapter comes off cleanly: the word's images, then with the LoRA of settings ``lora`` loaded
    from its file, then after ``unload_lora_weights``; ``{"changed": the LoRA's images differ, "restored": the
    word's images again, bit for bit}``."""
    profile = profiles.check(profile) if profile else profiles.current()
    pipe, pivot, _ = _pivot(name, profile, settings(profile))
    sampling = R.default_sampling(profile)
    before = TI.sample(pipe, list(prompts), seed, sampling, pivot.token)
    config = lora_settings(profile, **lora)
    _, _, _, folder = _around(name, profile, config, None)  # tuned and cached first if it is not there
    if folder is not None:
        LO.load(pipe, folder)
    else:  # a base with no saved weights: no file to load, the adapter tuned in place
        _tune(pipe, pivot, config)
    with_lora = TI.sample(pipe, list(prompts), seed, sampling, pivot.token)
    pipe.unload_lora_weights()
    after = TI.sample(pipe, list(prompts), seed, sampling, pivot.token)
    return {"changed": not np.array_equal(before, with_lora), "restored": bool(np.array_equal(before, after))}


def adapter_bytes(name: str = BASE, profile: str | None = None, inversion: dict | None = None, **options) -> int:
    """The size on disk of the LoRA file tuned with ``options`` around the word (:func:`lora`), tuned first if
    it is not there."""
    profile = profiles.check(profile) if profile else profiles.current()
    pipe, _, adapter, folder = _around(name, profile, lora_settings(profile, **options), inversion)
    if folder is not None:
        return (folder / LO.WEIGHTS_NAME).stat().st_size
    with tempfile.TemporaryDirectory() as temp:  # a base with no saved weights: written only to be measured
        return adapter.save(temp).stat().st_size


def best(series: dict[float, list[dict]], group: str, key: str) -> dict:
    """The point of a sweep (:func:`inversion_sweep`, :func:`lora_sweep`) with the highest share ``group/key``:
    its ``lr``, ``step`` (the inversion's step, or the LoRA's budget), ``share`` and the whole ``point``."""
    lr, point = max(((lr, p) for lr, points in series.items() for p in points), key=lambda lp: lp[1][group][key]["p"])
    return {"lr": lr, "step": point["step"] if "step" in point else point["steps"], "share": point[group][key],
            "point": point}


def best_lora(name: str = BASE, profile: str | None = None) -> dict:
    """The settings (``lr``, ``steps``) of the LoRA of the sweep whose images hold a star most often."""
    top = best(lora_sweep(name, profile), "reconstruction", "star")
    return {"lr": top["lr"], "steps": top["step"]}


def run_seconds(name: str = BASE, profile: str | None = None) -> float:
    """What learning the chapter's word and its best LoRA took (the seconds their histories record)."""
    profile = profiles.check(profile) if profile else profiles.current()
    _, pivot = textual_inversion(name, profile=profile)
    _, _, adapter = lora(name, profile=profile, **best_lora(name, profile))
    return pivot.history[-1].get("seconds", float("nan")) + adapter.history[-1].get("seconds", float("nan"))


# ----------------------------------------------------------------------------- the locality term, measured

LOCALITY_RUNS = {"smoke": ((1e-2, 8),), "cpu": ((1e-3, 1000), (3e-3, 1000)), "gpu": ((1e-3, 1000), (3e-3, 1000))}
CONTEXTS = {"smoke": 16, "cpu": 64, "gpu": 64}  # prompts that put the word in context for the locality term
LOCALITY_KINDS = ("none", "captions", "contexts")


def locality_sweep(kind: str, name: str = BASE, profile: str | None = None) -> dict[tuple[float, int], dict]:
    """``{(lr, steps): measures}`` of the profile's LoRA runs without the locality term (``"none"``), with it
    on the examples' captions (``"captions"``, the study's) or on prompts that put the word beside a base shape
    (``"contexts"``), at the same budgets."""
    if kind not in LOCALITY_KINDS:
        raise ValueError(f"unknown kind {kind!r}; the kinds are: {', '.join(LOCALITY_KINDS)}")
    profile = profiles.check(profile) if profile else profiles.current()
    return {(lr, steps): lora_measures(name, profile, lr=lr, steps=steps, **locality_options(kind, profile))
            for lr, steps in LOCALITY_RUNS[profile]}


def locality_options(kind: str, profile: str) -> dict:
    """The LoRA settings of one kind of locality term (:data:`LOCALITY_KINDS`)."""
    return {"none": {}, "captions": {"locality": LOCALITY},
            "contexts": {"locality": LOCALITY, "contexts": CONTEXTS[profile]}}[kind]


def text_shells(name: str = BASE, profile: str | None = None, captions: int = 2000, position: int = 4) -> dict:
    """The shells of the base's text states (:func:`text2image.evaluate.concept.state_shells`) over the first
    ``captions`` test captions, at ``position`` (the star's in "a small red <star>") and at the end token."""
    from text2image.evaluate import clip as clip_eval

    pipe, _ = R.model(name, profile)
    return E.state_shells(pipe.text_encoder, pipe.tokenizer, clip_eval.pool("test", captions).captions, position)


def all_adapters(name: str = BASE, profile: str | None = None) -> list[tuple[LO.Adapter, int]]:
    """Every LoRA of the chapter (the sweep and the locality runs) with the size of its file, in sweep order."""
    profile = profiles.check(profile) if profile else profiles.current()
    runs = [{"lr": lr, "steps": steps} for lr, budgets in LORA_SWEEP[profile].items() for steps in budgets]
    runs += [{"lr": lr, "steps": steps, **locality_options(kind, profile)} for lr, steps in LOCALITY_RUNS[profile]
             for kind in LOCALITY_KINDS[1:]]
    out = []
    for run in runs:
        pipe, _, adapter, folder = _around(name, profile, lora_settings(profile, **run), None)
        pipe.unload_lora_weights()
        out.append((adapter, (folder / LO.WEIGHTS_NAME).stat().st_size if folder is not None else 0))
    return out


def sweep_seconds(name: str = BASE, profile: str | None = None) -> float:
    """What learning every word and every LoRA of the chapter took (the seconds their histories record)."""
    profile = profiles.check(profile) if profile else profiles.current()
    adapters = [adapter for adapter, _ in all_adapters(name, profile)]
    return sum(made.history[-1].get("seconds", float("nan"))
               for made in (*inversions(name, profile).values(), *adapters))
