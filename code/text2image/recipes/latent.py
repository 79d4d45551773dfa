"""Recipes of the latent-diffusion chapter: Stable Diffusion in miniature, a UNet against a DiT, and what carries space.

Four recipes, each a denoiser trained on the latents of ``vae-long`` and
shipped as a whole pipeline folder (:class:`~text2image.pipelines.latent.LatentDiffusionPipeline`:
``model_index.json``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``
and ``unet/`` or ``transformer/``, under 10 MB in fp16):

* ``ldm-unet``: ``UNet2DConditionModel`` reading the text states of the baseline ``clip``;
* ``ldm-dit``: the same with ``PixArtTransformer2DModel`` (a DiT) in its place,
  the same parameters within 10 %, the same data, steps, batch and learning rate;
* ``ldm-unet-twins-clip``: ``ldm-unet`` reading the text tower of ``clip-relation-twins``,
  the CLIP whose text states tell "left of" from "right of" (its probe), the
  first lever on space: does a text encoder that knows the relation give a
  generator that draws it?
* ``ldm-unet-twins-batches``: that, and the second lever, on the data: every
  relation example of the training set comes with its *relation twin* (the same
  two objects, the relation reversed, placed afresh: :func:`text2image.world.splits.relation_twin`),
  so that the denoiser sees each relation beside its opposite, as the CLIP that
  learnt relations did. Chosen because the denoiser's loss, unlike CLIP's, does
  not contrast captions: only the data can put the two sides of a relation in
  front of it as often as the rest.

**The objective** is one constant, :data:`OBJECTIVE`, for every recipe: the one
the pixel-space chapter found better, flow matching's velocity. With the same
network, data and budget, ``flow-matching`` drew the asked colour several times
as often as ``ddpm`` on that chapter's validation prompts and benchmark sweeps,
and its one-step estimate of the image is far closer at low signal-to-noise
ratio (:func:`text2image.recipes.generative.estimate_error`);
:func:`objective_evidence` gives the whole-benchmark results the chapter shows.

**Data.** The first ``examples`` training examples (and, for the twins
recipe, their relation twins), encoded once by ``vae-long`` into latents
(the posterior means, 8 x 8 x 4) stored with their caption ids as safetensors
in ``<vae-long's checkpoint>/latents/``, keyed by its weights digest (a
retrained VAE encodes again), as the DALL·E recipes cache their image tokens.
The batch of step ``s`` is the ``s``-th slice of a fresh permutation of the
examples each epoch, so an interrupted run resumes exactly; a share
``drop_caption`` of its captions is replaced by the empty caption (guidance
needs an unconditional model). The latents are multiplied by the VAE's
``scaling_factor``; the text encoder is frozen and runs in every step (it is a
small part of a step).

**Monitoring** is on ``val`` only, as in the pixel-space chapter
(:mod:`text2image.evaluate.monitor`): the loss on fixed validation latents,
noises and time steps, and the oracle's verdicts on images of validation
prompts drawn by the pipeline.

**Generators** are registered with the benchmark (``python -m text2image bench
generate ldm-unet``); the sweeps (guidance, steps, scheduler) run on the part
of the set the other chapters' sweeps use. ``python -m text2image bench
latent-throughput`` times the pipeline against a bare denoising loop over the
same networks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from text2image import checkpoints, profiles
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.evaluate import monitor
from text2image.models import clip as clip_model
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.pipelines import latent as P
from text2image.recipes import Recipe, checkpoint_folder, load_or_train, register
from text2image.train import TrainConfig, epoch_batch, pick_device, read_log
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, to_tensor

VAE = "vae-long"  # the latent space: the autoencoders chapter's VAE, trained on
# The training objective of every recipe: "epsilon" (DDPM's noise) or "velocity" (flow matching's). The
# chapter sets it from the GAN / diffusion / flow-matching chapter's measurements (its benchmark of ddpm
# against flow-matching, same network and budget): those models were not trained when this was written.
OBJECTIVE = "velocity"
RECIPES = {
    "ldm-unet": dict(denoiser="unet", text_encoder="clip", twin_batches=False),
    "ldm-dit": dict(denoiser="dit", text_encoder="clip", twin_batches=False),
    "ldm-unet-twins-clip": dict(denoiser="unet", text_encoder="clip-relation-twins", twin_batches=False),
    "ldm-unet-twins-batches": dict(denoiser="unet", text_encoder="clip-relation-twins", twin_batches=True),
}
NAMES = tuple(RECIPES)
BASE, DIT = "ldm-unet", "ldm-dit"
LEVERS = ("ldm-unet", "ldm-unet-twins-clip", "ldm-unet-twins-batches")  # what carries space, one lever at a time
DATA_SEED = 18
TWIN_SEED = 1818
EVAL_SEED = 1819
DROP_CAPTION = 0.1  # share of captions replaced by the empty one (classifier-free guidance needs some)
LATENTS_DIR = "latents"   # inside vae-long's checkpoint folder (git-ignored by a .gitignore of its own)
LATENTS_VERSION = "1"     # bump when what is encoded changes
VAL_LOSS_IMAGES = {"smoke": 16, "cpu": 256, "gpu": 1024}  # validation latents of the val loss
EVAL_SAMPLING = {"smoke": P.Sampling(steps=2), "cpu": P.Sampling(steps=20), "gpu": P.Sampling(steps=50)}

# ----------------------------------------------------------------------------- sizes and steps
# Sizes: models.latent.UNET_SIZES / DIT_SIZES (cpu: UNet 32/64/64 with cross-attention at every level, 1.76M
# parameters; DiT of width 128, 6 blocks, 4 heads, patch 1, 1.76M; the text width is the CLIP's, 64).
# The cpu recipes train in at most ~50 minutes each on ONE thread of this machine (2 cores, AVX-512). Measured
# on the cpu sizes, batch 64, process CPU time per step (the loss with the frozen text encoder's forward, the
# backward, clipping and AdamW), median of steps 2-6, OMP_NUM_THREADS=1, while two other trainings kept both
# cores busy (load about 2.6 on 2 cores: a busy machine's figure):
#   UNet (1.76M parameters): 0.305 s a step (0.167 s at batch 32);
#   DiT (1.76M parameters, 64 tokens at full width in every block): 0.581 s a step (0.319 s at batch 32).
# 4,000 steps of 64: 20 minutes for the UNet recipes, 39 for the DiT; plus 9 evaluations (96 guided images of
# 20 DDIM steps and the val loss on 256 latents, measured the same way on untrained cpu models: 8 s each for the
# UNet, 21 s for the DiT, so 1 and 3 minutes), and, once for all recipes, the latents of the 128,000 training
# examples (rendering 0.5 ms and encoding 1.0 ms an image: about 3 minutes; the twins recipe has its own set).
# So about 24 minutes for each UNet recipe and 45 for the DiT, within the 50 minutes asked, with some margin for
# a busier machine. Batch 32 costs as much per image: batch 64 gives the gradient less noise for the same time.
# Both denoisers get the same steps, batch and learning rate (1e-3 with a warm-up, gradient clipping at 1 and
# the Trainer's cosine decay, the pixel-space denoiser's: chosen, not tuned); the DiT takes twice the time.
CONFIG = {
    "smoke": dict(steps=6, batch_size=8, lr=1e-3, warmup=1),
    "cpu": dict(steps=4000, batch_size=64, lr=1e-3, warmup=200),
    "gpu": dict(steps=60_000, batch_size=256, lr=3e-4, warmup=1000),
}
EXAMPLES = {"smoke": 64, "cpu": 128_000, "gpu": 1_000_000}  # encoded training examples (cpu: two epochs)


def _sizes(denoiser: str) -> dict:
    return L.UNET_SIZES if denoiser == "unet" else L.DIT_SIZES


def _config(name: str, profile: str) -> TrainConfig:
    base, recipe = CONFIG[profile], RECIPES[name]
    steps = base["steps"]
    extra: dict[str, Any] = {"denoiser": recipe["denoiser"], "size": _sizes(recipe["denoiser"])[profile],
                             "text_encoder": recipe["text_encoder"], "vae": VAE, "objective": OBJECTIVE,
                             "twin_batches": recipe["twin_batches"], "examples": EXAMPLES[profile],
                             "drop_caption": DROP_CAPTION}
    return TrainConfig(steps=steps, batch_size=base["batch_size"], lr=base["lr"], warmup=base["warmup"],
                       weight_decay=0.01, betas=(0.9, 0.999), grad_clip=1.0,
                       eval_every=0 if profile == "smoke" else max(1, steps // 8),
                       checkpoint_every=2 if profile == "smoke" else max(1, steps // 20),
                       log_every=1 if profile == "smoke" else 10, seed=DATA_SEED, extra=extra)


CONFIGS = {name: {p: _config(name, p) for p in profiles.PROFILES} for name in NAMES}


def _check_name(name: str) -> str:
    if name not in RECIPES:
        raise KeyError(f"no latent-diffusion model named {name!r}; they are: {', '.join(NAMES)}")
    return name


# ----------------------------------------------------------------------------- the frozen parts

def vae(profile: str | None = None):
    """The latent space's autoencoder (``vae-long``, trained first if missing), frozen."""
    model, _ = load_or_train(VAE, profile, progress=False)
    return model.requires_grad_(False).eval()


def text_encoder(name: str = "clip", profile: str | None = None):
    """The text tower of the CLIP ``name`` (trained first if missing), as a frozen ``CLIPTextModel``."""
    clip, _ = load_or_train(name, profile, progress=False)
    return L.text_encoder(clip)


# ----------------------------------------------------------------------------- latents, cached

def training_examples(split: str, n: int, twin_batches: bool = False) -> list[splits.Example]:
    """The first ``n`` examples of ``split``; with ``twin_batches``, each relation example followed by its
    relation twin (drawn from ``(TWIN_SEED, index)``), the twins counted among the ``n``."""
    if not twin_batches:
        return splits.examples(split, 0, n)
    out: list[splits.Example] = []
    index = 0
    while len(out) < n:
        example = splits.example(split, index)
        out.append(example)
        twin = splits.relation_twin(example, np.random.default_rng([TWIN_SEED, index]))
        if twin is not None and len(out) < n:
            out.append(twin)
        index += 1
    return out


def latents_folder(profile: str) -> Path:
    return checkpoint_folder(VAE, profile) / LATENTS_DIR


def _latents_key(split: str, n: int, twin_batches: bool, digest: str) -> str:
    return hashlib.sha256(json.dumps([LATENTS_VERSION, digest, split, n, twin_batches]).encode()).hexdigest()[:12]


@torch.no_grad()
def _encode(autoencoder, examples: Sequence[splits.Example], chunk: int = 512) -> dict[str, torch.Tensor]:
    autoencoder = autoencoder.to(pick_device())
    device = next(autoencoder.parameters()).device
    latents, text = [], []
    for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        images, _ = render([e.scene for e in part], RESOLUTION)
        latents.append(autoencoder.encode(to_tensor(images).to(device)).latent_dist.mode().cpu())
        text.append(T.encode([e.caption.text for e in part])["input_ids"])
    return {"latents": torch.cat(latents).to(torch.float16).contiguous(), "text": torch.cat(text).to(torch.uint8)}


def stored_tensors(folder: Path, tag: str, key: str, digest: str, split: str, compute) -> dict[str, torch.Tensor]:
    """``compute()``'s tensors, kept as ``<tag>-<key>.safetensors`` in a latents folder (git-ignored), computed
    once however many processes ask (a lock per tag), replacing the files of an older key of the same tag."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("# a cache, rebuilt from the autoencoder's weights: never committed\n*\n")
    path = folder / f"{tag}-{key}.safetensors"
    with FileLock(str(folder / f"{tag}.lock")):  # two processes (two recipes) encode once
        if not path.is_file():
            temp = path.with_suffix(".tmp")
            save_file(compute(), str(temp), metadata={"key": key, "vae_weights": digest, "split": split})
            os.replace(temp, path)
            for old in folder.glob(f"{tag}-*.safetensors"):
                # only this tag's older keys: "train-128000-*" also matches "train-128000-twins-<key>"
                if old != path and re.fullmatch(rf"{re.escape(tag)}-[0-9a-f]{{12}}\.safetensors", old.name):
                    old.unlink()
    return load_file(str(path))


@functools.lru_cache(maxsize=8)
def _latents(split: str, n: int, twin_batches: bool, profile: str, digest: str) -> dict[str, torch.Tensor]:
    return stored_tensors(latents_folder(profile), f"{split}-{n}{'-twins' if twin_batches else ''}",
                          _latents_key(split, n, twin_batches, digest), digest, split,
                          lambda: _encode(vae(profile), training_examples(split, n, twin_batches)))


def latents(split: str, n: int, profile: str | None = None, twin_batches: bool = False) -> dict[str, torch.Tensor]:
    """The first ``n`` examples of ``split`` as the denoisers see them: ``latents`` (n, 4, 8, 8), the VAE's
    posterior means (fp16, not yet scaled), and caption ids ``text`` (n, 32); computed once with ``vae-long``
    (trained first if missing) and stored in ``<its checkpoint>/latents/``, keyed by its weights digest."""
    profile = profiles.check(profile) if profile else profiles.current()
    load_or_train(VAE, profile, progress=False)  # a missing VAE is trained before it is digested
    digest = checkpoints.weights_digest(checkpoint_folder(VAE, profile))
    return _latents(splits.check_split(split), int(n), bool(twin_batches), profile, digest)


def make_batch(data: dict[str, torch.Tensor], step: int, batch_size: int, scale: float, drop_caption: float = 0.0,
               seed: int = DATA_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scaled latents (B, 4, 8, 8), caption ids (B, 32), masks (B, 32))`` of a step; a share
    ``drop_caption`` of the captions (drawn from ``(seed, step)``) is the empty caption."""
    index = torch.from_numpy(epoch_batch(step, batch_size, len(data["latents"]), seed))
    ids = data["text"][index].long()
    mask = (ids != T.tokenizer().pad_token_id).long()
    if drop_caption:
        T.drop_captions(ids, mask, np.random.default_rng([seed, step]).random(batch_size) < drop_caption)
    return data["latents"][index].float() * scale, ids, mask


def _on(device: torch.device, tensors) -> list[torch.Tensor]:
    return [t.to(device) for t in tensors]


@functools.lru_cache(maxsize=4)
def _val_noise(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(EVAL_SEED)
    noise = torch.randn((n, L.LATENT_CHANNELS, L.LATENT_SIZE, L.LATENT_SIZE), generator=generator)
    return noise, torch.randint(0, D.TRAIN_STEPS, (n,), generator=generator)


@torch.no_grad()
def val_loss(denoiser, encoder, objective: str, profile: str, scale: float, chunk: int = 128) -> float:
    """The training loss on fixed validation latents, noises and time steps: a deterministic measure of the
    denoiser (what the shipped checkpoint must reproduce)."""
    n = profiles.pick(VAL_LOSS_IMAGES, profile)
    data = latents("val", n, profile)
    noise, index = _val_noise(n)
    scheduler = D.training_scheduler(objective)
    device = next(denoiser.parameters()).device
    encoder = encoder.to(device)
    total = 0.0
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        ids = data["text"][part].long()
        mask = (ids != T.tokenizer().pad_token_id).long()
        x0, ids, mask, e = _on(device, (data["latents"][part].float() * scale, ids, mask, noise[part]))
        x_t, timestep, target = D.noised(objective, scheduler, x0, e, index[part])
        prediction = L.predict(denoiser, x_t, timestep, L.encode_text(encoder, ids, mask), mask)
        total += float(torch.nn.functional.mse_loss(prediction, target, reduction="sum"))
    return total / (n * L.LATENT_CHANNELS * L.LATENT_SIZE ** 2)


# ----------------------------------------------------------------------------- tasks and registration

def build(name: str, profile: str) -> torch.nn.Module:
    """A fresh denoiser of recipe ``name`` at the profile's size (seeded: the same initial weights every time);
    its cross-attention reads the profile's CLIP width."""
    extra = CONFIGS[_check_name(name)][profiles.check(profile)].extra
    width = clip_model.SIZES[profile]["width"]
    return L.build(extra["denoiser"], extra["size"], width)


def export(denoiser: torch.nn.Module, profile: str, name: str) -> P.LatentDiffusionPipeline:
    """What is shipped: the whole pipeline around the trained denoiser, with the profile's VAE, the recipe's
    text encoder, the world's tokenizer and the objective's default scheduler."""
    extra = CONFIGS[name][profiles.check(profile)].extra
    return P.assemble(denoiser, vae(profile), text_encoder(extra["text_encoder"], profile), extra["objective"])


def _task(name: str):
    def task(model, profile):
        config = CONFIGS[name][profiles.check(profile)]
        extra = config.extra
        data = latents("train", extra["examples"], profile, extra["twin_batches"])
        autoencoder = vae(profile)
        scale = float(autoencoder.config.scaling_factor)
        encoder = text_encoder(extra["text_encoder"], profile)
        objective = extra["objective"]
        scheduler = D.training_scheduler(objective)

        def batch_fn(step):
            return make_batch(data, step, config.batch_size, scale, extra["drop_caption"])

        def loss_fn(m, batch):
            device = next(m.parameters()).device
            x, ids, mask = _on(device, batch)
            states = L.encode_text(encoder.to(device), ids, mask)
            return L.latent_loss(m, objective, scheduler, x, states, mask)

        def eval_fn(m):
            device = next(m.parameters()).device
            pipe = P.assemble(m, autoencoder.to(device), encoder.to(device), objective)
            generate = P.Generator(pipe, profiles.pick(EVAL_SAMPLING, profile))
            return {"val_loss": val_loss(m, encoder, objective, profile, scale),
                    **monitor.val_scores(generate, profile)}

        return loss_fn, batch_fn, eval_fn
    return task


for _name in NAMES:
    register(Recipe(_name, build=functools.partial(build, _name), task=_task(_name), configs=CONFIGS[_name],
                    model_class=P.LatentDiffusionPipeline, data_seed=DATA_SEED,
                    export=functools.partial(export, name=_name), export_takes_profile=True))


# ----------------------------------------------------------------------------- loading

def load_pipeline(folder: str | Path) -> P.LatentDiffusionPipeline:
    """A pipeline folder, checked before it is trusted: with a manifest, every file it records must be there
    unchanged (one error naming the file and how to restore or retrain it); without one (a folder written by
    ``save_pretrained``), safetensors only, from this folder only. Nothing is written, whatever fails."""
    folder = Path(folder)
    if (folder / checkpoints.MANIFEST).is_file():
        return checkpoints.load(P.LatentDiffusionPipeline, folder)
    if not checkpoints.is_pipeline_folder(folder):
        what = "no such folder" if not folder.exists() else f"no {checkpoints.PIPELINE_INDEX} there"
        raise checkpoints.CheckpointError(f"{folder}: {what}; a pipeline folder is written by save_pretrained "
                                          f"(or {checkpoints.retrain_hint('ldm-unet')})")
    try:
        with checkpoints._quiet():
            pipe = P.LatentDiffusionPipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                                             dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise checkpoints.CheckpointError(f"{folder}: not a whole pipeline folder ({first}); save it again with "
                                          f"save_pretrained, or {checkpoints.retrain_hint('ldm-unet')}") from None
    return pipe


def model(name: str, profile: str | None = None) -> tuple[P.LatentDiffusionPipeline, dict]:
    """The trained pipeline (trained first if missing) on the device the code picks, and its manifest."""
    pipe, manifest = load_or_train(_check_name(name), profile, progress=True)
    return pipe.to(pick_device()), manifest


# ----------------------------------------------------------------------------- generators, sweeps

# The generators' sampler: 20 steps of the objective's default scheduler (DDIM for the noise), guidance 3;
# smoke, 2 steps.
DEFAULT_SAMPLING = {"smoke": P.Sampling(steps=2), "cpu": P.Sampling(), "gpu": P.Sampling()}
STEP_COUNTS = {"smoke": (2, 4), "cpu": (5, 10, 20, 50), "gpu": (5, 10, 20, 50)}
SWEEP_SCHEDULERS = {"epsilon": ("ddim", "euler", "dpm"), "velocity": ("euler", "dpm")}
GUIDANCE_SCALES = {"smoke": (0.0, 1.0, 3.0), "cpu": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0), "gpu": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)}
# Sweeps compare the settings of one sampler on the part of the benchmark the other chapters' sweeps use: its four
# category groups, one image per prompt (600 images at the cpu size); the default settings get the whole set.
SWEEP_PART = {"groups": B.CATEGORY_GROUPS, "repeats": 1}
CACHE_VERSION = "1"  # of the measurements below (throughput): bump to measure them again


def default_sampling(profile: str | None = None) -> P.Sampling:
    return profiles.pick(DEFAULT_SAMPLING, profile)


def sampling_of(name: str, sampling: P.Sampling | None = None, profile: str | None = None) -> P.Sampling:
    """The sampler settings of ``name`` (the profile's default ones unless given), its scheduler named."""
    return (sampling or default_sampling(profile)).for_objective(CONFIGS[_check_name(name)]["cpu"].extra["objective"])


def pipeline(name: str, profile: str | None = None, sampling: P.Sampling | None = None) -> P.Generator:
    """The generator ``name`` as a callable ``(prompts, seed) -> uint8 images`` (its pipeline in ``.pipe``)."""
    pipe, _ = model(name, profile)
    return P.Generator(pipe, sampling_of(name, sampling, profile))


def settings(name: str, sampling: P.Sampling | None = None, profile: str | None = None) -> dict:
    return {"model": name, "sampling": sampling_of(name, sampling, profile).as_dict()}


def generator(name: str, profile: str | None = None, sampling: P.Sampling | None = None) -> B.Generator:
    """A benchmark generator for ``name`` (its pipeline is loaded only if the result is not cached)."""
    profile = profiles.check(profile) if profile else profiles.current()
    return B.Generator.of_checkpoint(name, profile, lambda: pipeline(name, profile, sampling),
                                     settings(name, sampling, profile))


for _name in NAMES:
    B.register_generator(_name, functools.partial(generator, _name))


def benchmark(name: str, profile: str | None = None, sampling: P.Sampling | None = None, progress: bool = True,
              frechet: bool = True, part: dict | None = None) -> dict:
    """The shared benchmark of one model and sampler (on a ``part`` of the set if given, e.g.
    :data:`SWEEP_PART`), cached in its pipeline folder."""
    gen = generator(name, profile, sampling)
    return B.benchmark(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder, gen.settings,
                       progress, frechet, **(part or {}))


def sweep(name: str, knob: str, values: Sequence, profile: str | None = None, base: P.Sampling | None = None,
          part: dict | None = SWEEP_PART) -> list[tuple[Any, dict]]:
    """``(value, benchmark)`` for each value of one sampler setting (``guidance``, ``steps`` or ``sampler``),
    the others as in ``base`` (the default), on :data:`SWEEP_PART` by default."""
    base = sampling_of(name, base, profile)
    return [(value, benchmark(name, profile, base.but(**{knob: value}), progress=False, part=part))
            for value in values]


def guidance_sweep(name: str, values: Sequence[float] | None = None, profile: str | None = None):
    return sweep(name, "guidance", values or profiles.pick(GUIDANCE_SCALES, profile), profile)


def steps_sweep(name: str, sampler: str | None = None, values: Sequence[int] | None = None,
                profile: str | None = None):
    """The benchmark (on :data:`SWEEP_PART`) against the number of steps, for one scheduler."""
    base = sampling_of(name, None, profile)
    base = base.but(sampler=sampler) if sampler else base
    return sweep(name, "steps", values or profiles.pick(STEP_COUNTS, profile), profile, base)


def scheduler_sweep(name: str, values: Sequence[int] | None = None,
                    profile: str | None = None) -> dict[str, list[tuple[int, dict]]]:
    """``{scheduler: steps sweep}`` for each scheduler of the objective (DDIM, Euler, DPM-Solver++)."""
    objective = CONFIGS[_check_name(name)]["cpu"].extra["objective"]
    return {s: steps_sweep(name, s, values, profile) for s in SWEEP_SCHEDULERS[objective]}


def samples_of(name: str, prompts: Sequence[str], n: int, profile: str | None = None,
               sampling: P.Sampling | None = None, seed: int = 0) -> np.ndarray:
    """``n`` draws of each prompt (P, n, 32, 32, 3), for figures."""
    return monitor.draws(pipeline(name, profile, sampling), prompts, n, seed)


# ----------------------------------------------------------------------------- what the chapter reads

def manifest(name: str, profile: str | None = None) -> dict:
    return load_or_train(_check_name(name), profile, progress=False)[1]


def history(name: str, profile: str | None = None) -> tuple[list[dict], list[dict]]:
    """The shipped training log (rows of log.csv) and evaluation history (eval.json) of a checkpoint."""
    profile = profiles.check(profile) if profile else profiles.current()
    folder = checkpoint_folder(name, profile)
    log = read_log(folder) if (folder / "log.csv").is_file() else []
    evals = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else []
    return log, evals


def denoiser_parameters(name: str, profile: str | None = None) -> int:
    """The denoiser's parameters (what was trained), read from a freshly built one: no training needed."""
    profile = profiles.check(profile) if profile else profiles.current()
    return L.parameters(build(name, profile))


def latent_example(index: int = 0, profile: str | None = None) -> dict[str, Any]:
    """One validation example as the denoiser sees it: its caption, its image, its scaled latent (4, 8, 8) and
    what the VAE decodes that latent back to."""
    example = splits.example("val", index)
    image, _ = render([example.scene], RESOLUTION)
    autoencoder = vae(profile)
    scale = float(autoencoder.config.scaling_factor)
    with torch.no_grad():
        z = autoencoder.encode(to_tensor(image)).latent_dist.mode()
        decoded = autoencoder.decode(z).sample
    from text2image.world.tensors import to_uint8

    return {"caption": example.caption.text, "image": image[0], "latent": (z[0] * scale).numpy(),
            "decoded": to_uint8(decoded)[0], "scaling_factor": scale}


# ----------------------------------------------------------------------------- the pipeline against a bare loop

THROUGHPUT_REPEATS = {"smoke": 2, "cpu": 5, "gpu": 5}  # timed calls of each, alternated; the median is kept


def throughput(name: str, profile: str | None = None, prompts: int | None = None,
               repeats: int | None = None) -> dict[str, float]:
    """Images per second of the pipeline and of a bare denoising loop over the same networks (same prompts,
    seed, scheduler, steps and guidance: the same images, bit for bit), timed in turns on the device the code
    picks; ``ratio`` = pipeline / bare (1: the pipeline costs nothing; the goal is at least 0.95)."""
    profile = profiles.check(profile) if profile else profiles.current()
    repeats = repeats or profiles.pick(THROUGHPUT_REPEATS, profile)
    texts = B.prompt_set(profile)["pair"][:prompts or B.CHUNK]
    gen = pipeline(name, profile)
    pipe, sampling = gen.pipe, gen.sampling
    objective = pipe.objective

    def bare():
        return P.bare_loop(pipe.denoiser, pipe.vae, pipe.text_encoder, texts, 0, sampling, objective)

    def through_pipeline():
        return gen(texts, 0)

    bare(), through_pipeline()  # warm-up
    timed: dict[str, list[float]] = {"bare": [], "pipeline": []}
    for _ in range(repeats):
        for key, run in (("bare", bare), ("pipeline", through_pipeline)):
            started = time.perf_counter()
            run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            timed[key].append(time.perf_counter() - started)
    b, p = statistics.median(timed["bare"]), statistics.median(timed["pipeline"])
    return {"pipeline_images_per_second": len(texts) / p, "bare_images_per_second": len(texts) / b,
            "ratio": b / p, "prompts": len(texts), "steps": sampling.steps, "sampler": sampling.sampler,
            "guidance": sampling.guidance, "threads": torch.get_num_threads(), "device": str(pick_device())}


def throughput_cached(name: str, profile: str | None = None) -> dict[str, float]:
    """:func:`throughput`, measured once per pipeline and thread count and kept in its folder."""
    profile = profiles.check(profile) if profile else profiles.current()
    folder = checkpoint_folder(name, profile)
    if not (folder / checkpoints.MANIFEST).is_file():
        load_or_train(name, profile)
    key = {"version": CACHE_VERSION, "profile": profile, "threads": torch.get_num_threads(),
           "sampling": sampling_of(name, None, profile).as_dict(), "device": str(pick_device())}
    return checkpoints.cached_result(folder, checkpoints.result_name("throughput", key), key,
                                     lambda: throughput(name, profile))


THROUGHPUT_GOAL = 0.95


def throughput_main() -> int:
    """``python -m text2image bench latent-throughput``: each pipeline against a bare denoising loop."""
    profile = profiles.current()
    print(f"sampling with each latent-diffusion pipeline against a bare denoising loop over the same networks "
          f"(profile {profile}, {torch.get_num_threads()} threads; medians of "
          f"{profiles.pick(THROUGHPUT_REPEATS, profile)} calls of {B.CHUNK} prompts):")
    worst = float("inf")
    for name in NAMES:
        m = throughput(name, profile)
        worst = min(worst, m["ratio"])
        print(f"  {name:<24} pipeline {m['pipeline_images_per_second']:7.1f} images/s  bare "
              f"{m['bare_images_per_second']:7.1f} images/s  ratio {m['ratio']:.3f}  "
              f"({m['sampler']}, {m['steps']} steps, guidance {m['guidance']:g})")
    print(f"  worst ratio {worst:.3f} ({'within' if worst >= THROUGHPUT_GOAL else 'below'} the goal of "
          f"{THROUGHPUT_GOAL})")
    return 0


def precompute(profile: str | None = None, progress: bool = True) -> None:
    """Every measurement the chapter reads from its caches, in the order it reads them: the sweeps, the
    benchmarks and the throughput. Run it once, with the thread count of the chapter's kernels, before
    rendering: ``OMP_NUM_THREADS=1 python -c "from text2image.recipes import latent as R; R.precompute('cpu')"``."""
    profile = profiles.check(profile) if profile else profiles.current()
    report = print if progress else (lambda *a, **k: None)
    for name, label, run in ((BASE, "guidance sweep", lambda: guidance_sweep(BASE, profile=profile)),
                             (DIT, "guidance sweep", lambda: guidance_sweep(DIT, profile=profile)),
                             (BASE, "scheduler sweep", lambda: scheduler_sweep(BASE, profile=profile))):
        started = time.perf_counter()
        run()
        report(f"{name}: {label} ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in NAMES:
        started = time.perf_counter()
        benchmark(name, profile, progress=progress)
        report(f"{name}: benchmark ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in (BASE, DIT):
        throughput_cached(name, profile)
        report(f"{name}: throughput measured", flush=True)


# ----------------------------------------------------------------------------- what the other chapters measured

def clip_probes(profile: str | None = None) -> dict[str, float]:
    """The relation probe of each text encoder's CLIP (the CLIP chapter's: can a linear probe on its text
    states tell "left of" from "right of"?), read from their manifests."""
    names = sorted({r["text_encoder"] for r in RECIPES.values()})
    return {name: float(load_or_train(name, profile, progress=False)[1]["metrics"].get("probe_relation", float("nan")))
            for name in names}


def objective_evidence(profile: str | None = None) -> dict[str, dict]:
    """The pixel-space chapter's whole-benchmark results of ``ddpm`` and ``flow-matching`` (same network, data
    and budget), from which :data:`OBJECTIVE` is chosen (cached next to their weights)."""
    from text2image.recipes import generative

    return {name: generative.benchmark(name, profile, progress=False) for name in generative.DIFFUSION}


def dalle_best(profile: str | None = None):
    """``(variant, result)``: the DALL·E chapter's best variant on the whole benchmark, found as that chapter
    finds it (each model at its best guidance scale, reranked by the better judge; every step cached next to
    the DALL·E models, so this reads what that chapter measured)."""
    from text2image.pipelines import dalle as DP
    from text2image.recipes import dalle

    guidance = {n: dalle.guidance_sweep(n, profile, progress=False) for n in dalle.NAMES}
    best_g = {n: dalle.best(guidance[n]) for n in dalle.NAMES}
    curves = {n: dalle.rerank_curve(n, profile, sampling=DP.Sampling(guidance=best_g[n]), progress=False)
              for n in dalle.NAMES}
    judged = [(v, dalle.benchmark(v.model, profile, sampling=v.sampling, judge=v.judge, progress=False))
              for v in dalle.final_variants(best_g, curves, profile)]
    return max(judged, key=lambda vr: vr[1]["overall"]["p"])


def best_model(results: dict[str, dict]) -> str:
    """The model of ``results`` with the highest overall score (the first of equals, in :data:`NAMES` order)."""
    return max(results, key=lambda n: (results[n]["overall"]["p"], -NAMES.index(n)))
