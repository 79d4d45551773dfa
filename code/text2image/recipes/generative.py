"""Recipes of the chapter on GANs, diffusion and flow matching: four pixel-space generators at 32 px.

* ``gan``: the text-conditioned DCGAN of :mod:`text2image.models.gan`, trained
  by the hand-written loop of :class:`GanTrainer` (a discriminator step, then a
  generator step, every step);
* ``gan-sn``: the same, with one change: spectral normalisation in the
  discriminator (the stabilising change the chapter measures);
* ``ddpm``: the denoiser of :mod:`text2image.models.diffusion` trained to
  predict the noise (DDPM);
* ``flow-matching``: the same denoiser, same data, steps, batch and learning
  rate, trained to predict the velocity (flow matching).

**Data.** The batch of step ``s`` is the training examples ``s B .. (s+1) B - 1``
(a stream that never repeats; rendered on the fly, 1 ms an image), a pure
function of the step, so an interrupted run resumes exactly. The diffusion
recipes replace a share ``drop_caption`` of the captions by the empty caption
(:func:`text2image.text.empty_caption`), which classifier-free guidance needs.

**Budget.** The four cpu recipes get the same order of wall-clock time on one
thread (at these sizes a GAN step, two players and four passes of the
discriminator, costs about what a denoiser step costs). The sampling
networks have the same number of parameters within 10 % (the generator and
its caption encoder against the denoiser and its caption encoder; a test
holds it), the discriminators are reported beside them.

**Monitoring** is on ``val`` only (``test`` is the benchmark's): every
``eval_every`` steps, two images for each of a fixed set of validation prompts
(a quarter of each prompt kind), the oracle's verdict per category, and the
diversity of the two images of a prompt against the world's own (mode
collapse shows as a diversity near 0). The eval history ships with the
checkpoint and gives the chapter its curves of score against training step.

**Generators** ``gan``, ``gan-sn``, ``ddpm`` and ``flow-matching`` are registered
with the shared benchmark (``python -m text2image bench generate ddpm``); the
sweeps (sampling steps, guidance scale) run on the part of its set that the
DALL·E chapter's sweeps use (:data:`SWEEP_PART`), cached next to each checkpoint.
``python -m text2image bench generative-throughput`` compares each recipe's
training step with a bare PyTorch loop on the same model and batches.
"""

from __future__ import annotations

import functools
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from text2image import checkpoints, profiles
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.evaluate import intervals
from text2image.evaluate import readings as colour_readings
from text2image.evaluate.monitor import (EVAL_SEED, VAL_PROMPTS, VAL_SAMPLES, category_shares, draws,  # noqa: F401
                                        pixel_spread, val_prompts, val_scores, world_draws)
from text2image.models import diffusion as D
from text2image.models import gan as G
from text2image.pipelines import diffusion as P
from text2image.pipelines.gan import GanPipeline
from text2image.recipes import Recipe, checkpoint_folder, load_or_train, register
from text2image.train import TrainConfig, Trainer, pick_device, read_log, split_batch
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, to_tensor

GANS = ("gan", "gan-sn")
DIFFUSION = {"ddpm": "epsilon", "flow-matching": "velocity"}
NAMES = (*GANS, *DIFFUSION)
DATA_SEED = 17
DROP_CAPTION = 0.1  # share of captions replaced by the empty one in the diffusion recipes (guidance needs some)
VAL_LOSS_IMAGES = {"smoke": 16, "cpu": 256, "gpu": 1024}  # validation images of the diffusion models' val_loss
EVAL_SAMPLING = {"smoke": P.Sampling(steps=2), "cpu": P.Sampling(steps=20), "gpu": P.Sampling(steps=50)}

# ----------------------------------------------------------------------------- sizes and steps
# The cpu recipes train in at most 60 minutes each on ONE thread of this machine (2 cores, AVX-512). Measured
# with the Trainer on the cpu configs below (OMP_NUM_THREADS=1, process CPU time per step, medians of steps 2-8,
# the machine's load about 5 on its 2 cores from other trainings):
#   ddpm / flow-matching (UNet2DConditionModel 32/64/64 with cross-attention at 8 x 8, and the caption encoder:
#     1.52M parameters), batch 32: 0.75 s and 0.85 s a step (rendering the batch: 10 ms of it); one evaluation
#     (96 validation images, 20 guided steps, and the val loss) 46 s. 2,500 steps + 9 evaluations: 35 + 7 minutes;
#   gan / gan-sn (generator 1.51M, discriminator 0.86M), batch 64: 1.00 s and 1.04 s a step (a discriminator
#     step on three batches, real, wrong caption and generated, then a generator step); an evaluation a few
#     seconds. 2,200 steps: 38 minutes.
# On a busier machine (the other core's thread loaded) the CPU time of a step grows by up to 1.4x: still within
# 60 minutes. The GAN's step is no cheaper than the denoiser's at these sizes, so the four recipes get the same
# order of steps and of wall-clock time; the GANs see more images (batch 64) for DCGAN's usual batch.
# Learning rates: DCGAN's 2e-4 (Adam, betas 0.5 / 0.999) for the GANs; 1e-3 for the denoiser, with a warm-up,
# gradient clipping at 1 and the Trainer's cosine decay to a tenth (a short budget favours a high rate; chosen,
# not tuned: no cpu run of these recipes was made before shipping them).
DIFFUSION_CONFIGS = {
    "smoke": dict(steps=6, batch_size=8, lr=1e-3, warmup=1),
    "cpu": dict(steps=2500, batch_size=32, lr=1e-3, warmup=100),
    "gpu": dict(steps=60_000, batch_size=256, lr=2e-4, warmup=1000),
}
GAN_CONFIGS = {
    "smoke": dict(steps=6, batch_size=8, lr=2e-4, warmup=0),
    "cpu": dict(steps=2200, batch_size=64, lr=2e-4, warmup=0),
    "gpu": dict(steps=100_000, batch_size=256, lr=2e-4, warmup=0),
}
GAN_BETAS = (0.5, 0.999)  # DCGAN's Adam


def _config(name: str, profile: str) -> TrainConfig:
    gan = name in GANS
    base = (GAN_CONFIGS if gan else DIFFUSION_CONFIGS)[profile]
    steps = base["steps"]
    extra: dict[str, Any] = {"size": (G.SIZES if gan else D.SIZES)[profile]}
    if gan:
        extra.update(gan=True, spectral_norm=name == "gan-sn")
    else:
        extra.update(objective=DIFFUSION[name], drop_caption=DROP_CAPTION)
    return TrainConfig(steps=steps, batch_size=base["batch_size"], lr=base["lr"], warmup=base["warmup"],
                       weight_decay=0.0 if gan else 0.01, betas=GAN_BETAS if gan else (0.9, 0.999),
                       grad_clip=None if gan else 1.0,
                       eval_every=0 if profile == "smoke" else max(1, steps // 8),
                       checkpoint_every=2 if profile == "smoke" else max(1, steps // 20),
                       log_every=1 if profile == "smoke" else 10, seed=DATA_SEED, extra=extra)


CONFIGS = {name: {p: _config(name, p) for p in profiles.PROFILES} for name in NAMES}


# ----------------------------------------------------------------------------- batches

def make_batch(step: int, batch_size: int, drop_caption: float = 0.0,
               seed: int = DATA_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images (B, 3, 32, 32) in [-1, 1], caption ids (B, 32), masks (B, 32))`` of a step; a share
    ``drop_caption`` of the captions (drawn from ``(seed, step)``) is the empty caption."""
    examples = splits.examples("train", step * batch_size, (step + 1) * batch_size)
    images, _ = render([e.scene for e in examples], RESOLUTION)
    enc = T.encode([e.caption.text for e in examples])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if drop_caption:
        T.drop_captions(ids, mask, np.random.default_rng([seed, step]).random(batch_size) < drop_caption)
    return to_tensor(images), ids, mask


def _on(model: torch.nn.Module, tensors) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [t.to(device) for t in tensors]


# ----------------------------------------------------------------------------- the GAN loop

def gan_loss(pair: G.GanPair, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One player's loss: ``batch = (phase, images, ids, masks)``, phase ``"discriminator"`` or ``"generator"``.

    The discriminator's turn: the generator draws a batch without gradients, and
    the discriminator is scored on real images with their captions, real images
    with the wrong captions, and the generated images with their captions. The
    generator's turn: fresh noise, and the discriminator's verdict on the new
    images, the discriminator frozen (its weights get no gradient).
    """
    phase, images, ids, mask = batch
    images, ids, mask = _on(pair, (images, ids, mask))
    z = torch.randn(len(images), pair.generator.z_dim, device=images.device)
    d = pair.discriminator
    if phase == "discriminator":
        with torch.no_grad():
            fake = pair.generator(z, ids, mask)
        wrong_ids, wrong_mask = G.mismatched(ids, mask)
        real, wrong, made = d(images, ids, mask), d(images, wrong_ids, wrong_mask), d(fake, ids, mask)
        loss = G.discriminator_loss(real, wrong, made)
        return loss, {"d_real": torch.sigmoid(real).mean().detach(), "d_wrong": torch.sigmoid(wrong).mean().detach(),
                      "d_fake": torch.sigmoid(made).mean().detach()}
    if phase != "generator":
        raise ValueError(f"a GAN step has a 'discriminator' and a 'generator' phase, not {phase!r}")
    d.requires_grad_(False)  # the generator's loss must not move the discriminator
    try:
        made = d(pair.generator(z, ids, mask), ids, mask)
    finally:
        d.requires_grad_(True)
    return G.generator_loss(made), {"d_fake_for_g": torch.sigmoid(made).mean().detach()}


class GanTrainer(Trainer):
    """The GAN's training loop, written out: each step is two optimiser steps, the discriminator's then the
    generator's, on the same real batch (Goodfellow et al., 2014, with one discriminator step per generator step).

    Everything else is the project's Trainer: the learning-rate schedule, the
    logs, exact resumption (the noise is drawn from the saved generators),
    Ctrl-C, several processes. One AdamW holds both players as separate
    groups; a player whose gradients are ``None`` is left alone by ``step()``,
    so each phase moves one player only.
    """

    PHASES = ("discriminator", "generator")

    def _player(self, phase: str) -> torch.nn.Module:
        return getattr(self.model, phase)

    def _one_step(self, batch) -> tuple[float, dict[str, float]]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step) * group.get("lr_scale", 1.0)
        part = split_batch(batch, self.rank, self.processes)
        metrics: dict[str, float] = {}
        losses = {}
        for phase in self.PHASES:
            loss, parts = self._loss_module((phase, *part))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the {phase}'s loss is {loss.item()} at step {self.step}; "
                                         f"lower the learning rate")
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(loss)
            if self.config.grad_clip:
                self.accelerator.clip_grad_norm_(list(self._player(phase).parameters()), self.config.grad_clip)
            self.optimizer.step()
            losses[phase] = loss.detach()
            metrics.update({k: float(v) for k, v in parts.items()})
        if self.processes > 1:
            self._keep_replicas_identical()
        shown = {k: (self.accelerator.reduce(v, "mean") if self.processes > 1 else v) for k, v in losses.items()}
        metrics.update(d_loss=float(shown["discriminator"]), g_loss=float(shown["generator"]))
        return float(shown["generator"]), metrics


# ----------------------------------------------------------------------------- monitoring on val
# (the functions live in text2image.evaluate.monitor, which the latent-diffusion recipes share)


@functools.lru_cache(maxsize=4)
def _val_batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` validation examples with a fixed noise and a fixed time-step index each."""
    examples = splits.examples("val", 0, n)
    images, _ = render([e.scene for e in examples], RESOLUTION)
    enc = T.encode([e.caption.text for e in examples])
    generator = torch.Generator().manual_seed(EVAL_SEED)
    noise = torch.randn((n, 3, RESOLUTION, RESOLUTION), generator=generator)
    index = torch.randint(0, D.TRAIN_STEPS, (n,), generator=generator)
    return to_tensor(images), enc["input_ids"], enc["attention_mask"], noise, index


@torch.no_grad()
def val_loss(model: D.PixelDenoiser, objective: str, n: int, chunk: int = 128) -> float:
    """The training loss on fixed validation images, noises and time steps: a deterministic measure of the
    denoiser (what the shipped checkpoint must reproduce)."""
    scheduler = D.training_scheduler(objective)
    total = 0.0
    x0, ids, mask, noise, index = _val_batch(n)
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        x, i, m, e = _on(model, (x0[part], ids[part], mask[part], noise[part]))
        x_t, timestep, target = D.noised(objective, scheduler, x, e, index[part])
        total += float(torch.nn.functional.mse_loss(model(x_t, timestep, i, m), target, reduction="sum"))
    return total / x0.numel()


# ----------------------------------------------------------------------------- tasks and registration

def build(name: str, profile: str) -> torch.nn.Module:
    """A fresh model of recipe ``name`` at the profile's size (seeded: the same initial weights every time)."""
    extra = CONFIGS[name][profiles.check(profile)].extra
    if name in GANS:
        return G.build_pair(extra["size"], extra["spectral_norm"], betas=GAN_BETAS)
    return D.build(extra["size"])


def export(model: torch.nn.Module) -> torch.nn.Module:
    """What is shipped: the GAN's generator (the discriminator only serves training); the denoiser itself."""
    return model.generator if isinstance(model, G.GanPair) else model


def _gan_task(name: str):
    def task(model, profile):
        config = CONFIGS[name][profiles.check(profile)]

        def batch_fn(step):
            return make_batch(step, config.batch_size)

        def eval_fn(pair):
            return val_scores(GanPipeline(pair.generator), profile)

        return gan_loss, batch_fn, eval_fn
    return task


def _diffusion_task(name: str):
    def task(model, profile):
        config = CONFIGS[name][profiles.check(profile)]
        objective = DIFFUSION[name]
        scheduler = D.training_scheduler(objective)

        def batch_fn(step):
            return make_batch(step, config.batch_size, config.extra["drop_caption"])

        def loss_fn(m, batch):
            x, ids, mask = _on(m, batch)
            return D.diffusion_loss(m, objective, scheduler, x, ids, mask)

        def eval_fn(m):
            return {"val_loss": val_loss(m, objective, profiles.pick(VAL_LOSS_IMAGES, profile)),
                    **val_scores(P.DiffusionPipeline(m, objective, profiles.pick(EVAL_SAMPLING, profile)), profile)}

        return loss_fn, batch_fn, eval_fn
    return task


for _name in NAMES:
    register(Recipe(_name, build=functools.partial(build, _name),
                    task=_gan_task(_name) if _name in GANS else _diffusion_task(_name),
                    configs=CONFIGS[_name], data_seed=DATA_SEED, export=export,
                    trainer=GanTrainer if _name in GANS else None))


# ----------------------------------------------------------------------------- generators

# The generators' sampler: 20 steps (DDIM for DDPM, Euler for flow matching), guidance 3; smoke, 2 steps.
DEFAULT_SAMPLING = {"smoke": P.Sampling(steps=2), "cpu": P.Sampling(), "gpu": P.Sampling()}
_STEPS = {"ddpm": (10, 25, 50), "ddim": (5, 10, 20, 50), "euler": (5, 10, 20, 50)}
STEP_COUNTS = {"smoke": {"ddpm": (2, 4), "ddim": (2, 4), "euler": (2, 4)}, "cpu": _STEPS, "gpu": _STEPS}
FEW_STEPS = {"smoke": 2, "cpu": 10, "gpu": 10}  # "few steps", where every sampler of the sweep is measured
GUIDANCE_SCALES = {"smoke": (0.0, 1.0, 3.0), "cpu": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0), "gpu": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)}
# Sweeps compare the settings of one sampler on a part of the benchmark, the DALL·E chapter's: its four category
# groups, one image per prompt (600 images at the cpu size); the default settings then get the whole set.
SWEEP_PART = {"groups": B.CATEGORY_GROUPS, "repeats": 1}
CACHE_VERSION = "1"  # of the measurements below (diversity, throughput): bump to measure them again


def _check_name(name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"no generator of this chapter named {name!r}; they are: {', '.join(NAMES)}")
    return name


def default_sampling(profile: str | None = None) -> P.Sampling:
    """The sampler settings of the registered generators in ``profile``."""
    return profiles.pick(DEFAULT_SAMPLING, profile)


def sampling_of(name: str, sampling: P.Sampling | None = None, profile: str | None = None) -> P.Sampling | None:
    """The sampler settings of a diffusion model (the profile's default ones unless given), its sampler
    named; ``None`` for a GAN."""
    if _check_name(name) in GANS:
        if sampling is not None:
            raise P.SamplingError(f"{name} draws an image in one pass: it has no sampler, steps or guidance")
        return None
    return (sampling or default_sampling(profile)).for_objective(DIFFUSION[name])


def model(name: str, profile: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The trained model (trained first if missing) on the device the code picks, and its manifest."""
    loaded, manifest = load_or_train(_check_name(name), profile, progress=True)
    return loaded.to(pick_device()), manifest


def pipeline(name: str, profile: str | None = None, sampling: P.Sampling | None = None):
    """The generator ``name`` as a callable ``(prompts, seed) -> uint8 images``."""
    sampling = sampling_of(name, sampling, profile)
    loaded, _ = model(name, profile)
    return GanPipeline(loaded) if name in GANS else P.DiffusionPipeline(loaded, DIFFUSION[name], sampling)


def settings(name: str, sampling: P.Sampling | None = None, profile: str | None = None) -> dict:
    sampling = sampling_of(name, sampling, profile)
    return {"model": name, "sampling": sampling.as_dict() if sampling else "one pass of the generator"}


def generator(name: str, profile: str | None = None, sampling: P.Sampling | None = None) -> B.Generator:
    """A benchmark generator for ``name`` (its model is loaded only if the result is not cached)."""
    profile = profiles.check(profile) if profile else profiles.current()
    return B.Generator.of_checkpoint(name, profile, lambda: pipeline(name, profile, sampling),
                                     settings(name, sampling, profile))


for _name in NAMES:
    B.register_generator(_name, functools.partial(generator, _name))


def benchmark(name: str, profile: str | None = None, sampling: P.Sampling | None = None,
              progress: bool = True, frechet: bool = True, part: dict | None = None) -> dict:
    """The shared benchmark of one generator (and sampler), on a ``part`` of the set if given (e.g.
    :data:`SWEEP_PART`), cached in its checkpoint folder."""
    gen = generator(name, profile, sampling)
    return B.benchmark(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder, gen.settings,
                       progress, frechet, **(part or {}))


def readings(name: str, profile: str | None = None, progress: bool = False) -> dict:
    """The benchmark's images of one generator read by colour alone (:mod:`text2image.evaluate.readings`),
    default sampler, cached in its checkpoint folder."""
    gen = generator(name, profile)
    return colour_readings.readings(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder,
                                    gen.settings, progress)


def steps_sweep(name: str, sampler: str | None = None, values: Sequence[int] | None = None,
                profile: str | None = None) -> list[tuple[int, dict]]:
    """``(steps, benchmark of SWEEP_PART)`` for each number of sampling steps (the profile's list for the sampler),
    guidance as in the default."""
    base = sampling_of(name, None, profile)
    base = base.but(sampler=sampler) if sampler else base
    values = values or profiles.pick(STEP_COUNTS, profile)[base.sampler]
    return [(n, benchmark(name, profile, base.but(steps=n), progress=False, part=SWEEP_PART)) for n in values]


def guidance_sweep(name: str, values: Sequence[float] | None = None,
                   profile: str | None = None) -> list[tuple[float, dict]]:
    """``(scale, benchmark of SWEEP_PART)`` for each guidance scale (the profile's list), default sampler and steps."""
    values = values or profiles.pick(GUIDANCE_SCALES, profile)
    base = sampling_of(name, None, profile)
    return [(s, benchmark(name, profile, base.but(guidance=s), progress=False, part=SWEEP_PART)) for s in values]


# ----------------------------------------------------------------------------- diversity and mode collapse

COLLAPSE = 0.1  # draws closer to each other than a tenth of the world's spread count as one image


def diversity(name: str, profile: str | None = None, sampling: P.Sampling | None = None, prompts: int = 40,
              samples: int = 6, seed: int = 0) -> dict[str, Any]:
    """How varied the draws of one prompt are, on the first ``prompts`` prompts of the benchmark's pair
    group, ``samples`` draws each: the mean pixel spread relative to the world's (1: as varied as the world),
    with a bootstrap 95 % interval over prompts, and the share of *collapsed* prompts (every draw within
    ``COLLAPSE`` of the world's spread from every other), with its Wilson interval; cached."""
    profile = profiles.check(profile) if profile else profiles.current()
    gen = generator(name, profile, sampling)
    texts = B.prompt_set(profile)["pair"][:prompts]
    key = {"version": CACHE_VERSION, "settings": gen.settings, "prompts": texts, "samples": samples, "seed": seed}

    def compute():
        images = draws(gen.generate, texts, samples, seed)
        world = pixel_spread(world_draws(texts, samples, seed + 99))
        ratio = pixel_spread(images) / np.maximum(world, 1e-9)
        x = images.astype(np.float32) / 255.0
        collapsed = 0
        for p in range(len(texts)):
            gaps = [np.abs(x[p, i] - x[p, j]).mean() for i in range(samples) for j in range(i + 1, samples)]
            collapsed += int(bool(gaps) and max(gaps) < COLLAPSE * world[p])
        rng = np.random.default_rng(seed)
        boot = [ratio[rng.integers(0, len(ratio), len(ratio))].mean() for _ in range(1000)]
        return {"relative": float(ratio.mean()), "lo": float(np.percentile(boot, 2.5)),
                "hi": float(np.percentile(boot, 97.5)), "collapsed": intervals.share(collapsed, len(texts)).as_dict()}

    return checkpoints.cached_result(gen.cache_folder, checkpoints.result_name("diversity", key), key, compute)


def samples_of(name: str, prompts: Sequence[str], n: int, profile: str | None = None,
               sampling: P.Sampling | None = None, seed: int = 0) -> np.ndarray:
    """``n`` draws of each prompt (P, n, 32, 32, 3), for figures."""
    return draws(pipeline(name, profile, sampling), prompts, n, seed)


def trajectory(name: str, prompt: str, sampling: P.Sampling | None = None, profile: str | None = None,
               seed: int = 0, shown: int = 6) -> tuple[list[int], list[float], list[np.ndarray]]:
    """The sample along ``shown`` evenly spaced steps of one sampling run (from the noise to the image):
    ``(steps, time steps, images)``."""
    sampling = sampling_of(name, sampling, profile)
    loaded, _ = model(name, profile)
    keep = sorted({int(round(k)) for k in np.linspace(0, sampling.steps, shown)})
    _, run = P.sample(loaded, DIFFUSION[name], [prompt], seed, sampling, keep=keep)
    # after k steps the sample is at the k-th time step of the schedule (the noise level of the next step)
    levels = [run.timesteps[k] if k < len(run.timesteps) else 0.0 for k in keep]
    return keep, levels, [run.kept[k][0] for k in keep]


# ----------------------------------------------------------------------------- one-step estimate of the image

SNR_LEVELS = {"smoke": (-2.0, 0.0, 2.0), "cpu": tuple(np.arange(-4.0, 3.01, 0.5)), "gpu": tuple(np.arange(-4.0, 3.01, 0.5))}


def _index_at_snr(objective: str, scheduler, log10_snr: float) -> int:
    """The training-schedule index whose signal-to-noise ratio is closest to ``10 ** log10_snr``."""
    if objective == "epsilon":
        snr = D.snr_ddpm(scheduler)
    else:
        s = scheduler.sigmas[:D.TRAIN_STEPS]
        snr = ((1 - s) / s) ** 2
    return int(torch.argmin((torch.log10(snr.clamp_min(1e-12)) - log10_snr).abs()))


@torch.no_grad()
def image_estimate(model: D.PixelDenoiser, objective: str, scheduler, x_t: torch.Tensor, index: torch.Tensor,
                   timestep: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image the network sees in ``x_t`` in one step, clipped to [-1, 1] as the samplers do: DDPM's
    ``(x_t - sqrt(1 - abar) eps) / sqrt(abar)``, flow matching's ``x_s - s v``."""
    prediction = model(x_t, timestep, ids, mask)
    if objective == "epsilon":
        a = scheduler.alphas_cumprod.to(x_t.device)[index].view(-1, 1, 1, 1)
        return ((x_t - (1 - a).sqrt() * prediction) / a.sqrt()).clamp(-1, 1)
    s = scheduler.sigmas.to(x_t.device, x_t.dtype)[index].view(-1, 1, 1, 1)
    return (x_t - s * prediction).clamp(-1, 1)


def estimate_error(name: str, profile: str | None = None, seed: int = 0) -> list[dict[str, float]]:
    """At each signal-to-noise ratio of :data:`SNR_LEVELS` (log10), the mean squared error of the model's
    one-step estimate of the image on the fixed validation images of ``val_loss``, with a bootstrap 95 %
    interval over images: where along the path the network knows what it is looking at. Cached."""
    profile = profiles.check(profile) if profile else profiles.current()
    objective = DIFFUSION[_check_name(name)] if name in DIFFUSION else None
    if objective is None:
        raise ValueError(f"{name} is not a diffusion model; the diffusion models are: {', '.join(DIFFUSION)}")
    n = profiles.pick(VAL_LOSS_IMAGES, profile)
    levels = [float(v) for v in profiles.pick(SNR_LEVELS, profile)]
    loaded, _ = model(name, profile)  # trained first if missing: the cache is keyed by these weights
    folder = checkpoint_folder(name, profile)
    key = {"version": CACHE_VERSION, "levels": levels, "images": n, "seed": EVAL_SEED}  # + the weights' digest

    def compute():
        scheduler = D.training_scheduler(objective)
        x0, ids, mask, noise, _ = _val_batch(n)
        x0, ids, mask, noise = _on(loaded, (x0, ids, mask, noise))
        rng = np.random.default_rng(seed)
        rows = []
        for level in levels:
            k = _index_at_snr(objective, scheduler, level)
            index = torch.full((n,), k, dtype=torch.long)
            x_t, timestep, _ = D.noised(objective, scheduler, x0, noise, index)
            per_image = ((image_estimate(loaded, objective, scheduler, x_t, index, timestep, ids, mask) - x0) ** 2
                         ).flatten(1).mean(1).cpu().numpy()
            boot = [per_image[rng.integers(0, n, n)].mean() for _ in range(1000)]
            rows.append({"log10_snr": level, "index": k, "error": float(per_image.mean()),
                         "lo": float(np.percentile(boot, 2.5)), "hi": float(np.percentile(boot, 97.5))})
        return rows

    return checkpoints.cached_result(folder, checkpoints.result_name("estimate", key), key, compute)


# ----------------------------------------------------------------------------- training logs

def history(name: str, profile: str | None = None) -> tuple[list[dict], list[dict]]:
    """The shipped training log (rows of log.csv) and evaluation history (eval.json) of a checkpoint."""
    folder = checkpoint_folder(name, profile or profiles.current())
    log = read_log(folder) if (folder / "log.csv").is_file() else []
    evals = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else []
    return log, evals


def discriminator_parameters(name: str, profile: str | None = None) -> int:
    profile = profiles.check(profile) if profile else profiles.current()
    return G.parameters(build(name, profile).discriminator)


# ----------------------------------------------------------------------------- throughput against a bare loop

def _bare_steps(name: str, profile: str, batches: list, steps: int) -> list[float]:
    """Seconds per step of a plain PyTorch loop (no Trainer) on the recipe's model, loss and batches."""
    from text2image.train import seed_everything

    recipe_config = CONFIGS[name][profile]
    seed_everything(recipe_config.seed)
    device = pick_device()
    fresh = build(name, profile).to(device)
    # the Trainer runs in bf16 on CUDA (accelerate's autocast), in full precision on CPU: the bare loop too
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    loss_fn, _, _ = (_gan_task(name) if name in GANS else _diffusion_task(name))(fresh, profile)
    c = recipe_config
    if name in GANS:
        players = {"discriminator": fresh.discriminator, "generator": fresh.generator}
        optimisers = {k: torch.optim.AdamW(p.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
                      for k, p in players.items()}
    else:
        optimiser = torch.optim.AdamW(fresh.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
    fresh.train()
    times = []
    for step in range(steps):
        started = time.perf_counter()
        batch = batches[step % len(batches)]
        if name in GANS:
            for phase in GanTrainer.PHASES:
                with autocast:
                    loss, _ = loss_fn(fresh, (phase, *batch))
                optimisers[phase].zero_grad(set_to_none=True)
                loss.backward()
                optimisers[phase].step()
        else:
            with autocast:
                loss = loss_fn(fresh, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(fresh.parameters(), c.grad_clip)
            optimiser.step()
        float(loss.detach())  # waits for the step to finish (on CUDA too)
        times.append(time.perf_counter() - started)
    return times


def throughput(name: str, profile: str | None = None, steps: int = 8, warmup: int = 2,
               rounds: int = 3) -> dict[str, float]:
    """Median seconds per training step of the recipe (its Trainer) and of a bare PyTorch loop, on the same
    model, loss and pre-made batches, on the device the code picks (bf16 on CUDA for both, as the Trainer
    does); ``ratio`` = recipe / bare. The two loops take turns, ``rounds`` times each (``warmup`` steps of
    every turn left out), so that a load that changes during the measurement, another training on the
    other core, weighs on both alike instead of on the one that happened to run under it."""
    from text2image import recipes

    profile = profiles.check(profile) if profile else profiles.current()
    recipe = recipes.get(_check_name(name))
    config = recipe.config(profile)
    model_ = recipe.build(profile)
    loss_fn, batch_fn, _ = recipe.task(model_, profile)
    batches = [batch_fn(s) for s in range(min(4, warmup + steps))]
    short = replace(config, steps=warmup + steps, eval_every=0, checkpoint_every=10 ** 9, log_every=1)
    recipe_steps, bare = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="t2i-throughput-") as temp:
            trainer = (recipe.trainer or Trainer)(model_, loss_fn, lambda s: batches[s % len(batches)], short,
                                                 Path(temp) / "run")
            trainer.fit(progress=False)
            seconds = [r["seconds"] for r in read_log(Path(temp) / "run")]
        recipe_steps += list(np.diff([0.0, *seconds])[warmup:])
        bare += _bare_steps(name, profile, batches, warmup + steps)[warmup:]
    r, b = statistics.median(recipe_steps), statistics.median(bare)
    return {"recipe_seconds": r, "bare_seconds": b, "ratio": r / b, "batch_size": config.batch_size,
            "recipe_images_per_second": config.batch_size / r, "bare_images_per_second": config.batch_size / b,
            "threads": torch.get_num_threads(), "rounds": rounds}


THROUGHPUT_STEPS = {"smoke": (2, 1), "cpu": (8, 2), "gpu": (8, 2)}  # (measured steps, warm-up steps) per turn
THROUGHPUT_ROUNDS = {"smoke": 1, "cpu": 12, "gpu": 12}  # turns of each loop (3 left a spread of 0.16 between two
# measurements of the same trainer on this machine, 12 brought both GANs within 0.01 of each other)


def throughput_cached(name: str, profile: str | None = None, steps: int | None = None,
                      warmup: int | None = None) -> dict[str, float]:
    """:func:`throughput`, measured once per checkpoint and thread count and kept next to the weights (a
    chapter re-renders without timing again; the numbers are those of the machine that first measured)."""
    profile = profiles.check(profile) if profile else profiles.current()
    default_steps, default_warmup = profiles.pick(THROUGHPUT_STEPS, profile)
    steps, warmup = steps or default_steps, warmup or default_warmup
    rounds = profiles.pick(THROUGHPUT_ROUNDS, profile)
    key = {"version": CACHE_VERSION, "profile": profile, "threads": torch.get_num_threads(), "steps": steps,
           "warmup": warmup, "rounds": rounds, "config": recipes_json(name, profile)}
    folder = checkpoint_folder(name, profile)
    if not (folder / checkpoints.MANIFEST).is_file():
        load_or_train(name, profile)
    return checkpoints.cached_result(folder, checkpoints.result_name("throughput", key), key,
                                     lambda: throughput(name, profile, steps, warmup, rounds))


def recipes_json(name: str, profile: str) -> dict:
    from text2image import recipes

    return recipes.as_json(CONFIGS[name][profile])


def precompute(profile: str | None = None, progress: bool = True) -> None:
    """Every measurement the chapter reads from its caches, in the order the chapter reads them: the
    diversity of each model, the sampling sweeps, the four benchmarks, their colour readings and the throughput
    against a bare loop.
    At the cpu size this is hours of sampling on one thread (the two full benchmarks of the diffusion models
    most of it); run it once, with the thread count of the chapter's kernels, before rendering:
    ``OMP_NUM_THREADS=1 python -c "from text2image.recipes import generative as R; R.precompute('cpu')"``."""
    profile = profiles.check(profile) if profile else profiles.current()
    report = print if progress else (lambda *a, **k: None)
    for name in NAMES:
        started = time.perf_counter()
        diversity(name, profile)
        report(f"{name}: diversity ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in DIFFUSION:
        started = time.perf_counter()
        estimate_error(name, profile)
        report(f"{name}: one-step estimates ({time.perf_counter() - started:.0f} s)", flush=True)
    for name, sampler in (("ddpm", "ddpm"), ("ddpm", "ddim"), ("flow-matching", "euler")):
        started = time.perf_counter()
        steps_sweep(name, sampler, profile=profile)
        report(f"{name}: steps sweep with {sampler} ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in DIFFUSION:
        started = time.perf_counter()
        guidance_sweep(name, profile=profile)
        report(f"{name}: guidance sweep ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in NAMES:
        started = time.perf_counter()
        benchmark(name, profile, progress=progress)
        report(f"{name}: benchmark ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in NAMES:
        started = time.perf_counter()
        readings(name, profile, progress=progress)
        report(f"{name}: colour readings ({time.perf_counter() - started:.0f} s)", flush=True)
    for name in NAMES:
        throughput_cached(name, profile)
        report(f"{name}: throughput measured", flush=True)


def throughput_main() -> int:
    """``python -m text2image bench generative-throughput``: each recipe of the chapter against a bare loop."""
    profile = profiles.current()
    (steps, warmup), rounds = profiles.pick(THROUGHPUT_STEPS, profile), profiles.pick(THROUGHPUT_ROUNDS, profile)
    print(f"training step of each recipe against a bare PyTorch loop (profile {profile}, "
          f"{torch.get_num_threads()} threads; medians of {rounds} turns of {steps} steps after {warmup}):")
    worst = 0.0
    for name in NAMES:
        m = throughput(name, profile, steps, warmup, rounds)
        worst = max(worst, m["ratio"])
        print(f"  {name:<14} recipe {1000 * m['recipe_seconds']:8.1f} ms  bare {1000 * m['bare_seconds']:8.1f} ms  "
              f"ratio {m['ratio']:.3f}  ({m['recipe_images_per_second']:.0f} images/s, batch {m['batch_size']})")
    print(f"  worst ratio {worst:.3f} ({'within' if worst <= 1.10 else 'beyond'} the 10 % goal)")
    return 0
