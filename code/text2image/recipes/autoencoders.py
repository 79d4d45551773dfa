"""Recipes of the autoencoders chapter: how AE, VAE, VQ-VAE, dVAE and VQGAN are trained and judged.

Every model sees the same data: batches of 32 px scenes of the shapes world,
drawn as a pure function of the step (so a resumed run is exact), in
``[-1, 1]``. Every model has the same encoder/decoder sizes per profile and
the same number of steps; only the bottleneck and the losses differ.

What a recipe trains is sometimes a *wrapper* (the VQ-VAE with its code-usage
statistics, the VQGAN with its discriminator and perceptual network); what it
ships is the bare diffusers model (``Recipe.export``), which anyone can load
with ``VQModel.from_pretrained``.

Recipes: ``percept`` (the small network behind VQGAN's perceptual loss),
``ae``, ``vae``, ``vqvae``, ``vqvae-nofix`` (no dead-code restarts), ``dvae``,
``vqgan``, the rate-distortion sweep ``vq-sweep/k<K>``, and the two models
later chapters use, ``vae-long`` (the diffusion chapter's latent space) and
``vqvae-long`` (the DALL·E chapter's image tokenizer): ``vae`` and ``vqvae``
trained on, past the comparison's budget, on scenes they never saw.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, VQModel

from text2image import checkpoints, paths, profiles, recipes
from text2image.evaluate.reconstruction import evaluate
from text2image.models import autoencoders as ae
from text2image.models import seeded
from text2image.recipes import Recipe
from text2image.train import TrainConfig
from text2image.world.render import render
from text2image.world.scene import COLOUR_NAMES, SHAPES
from text2image.world.tensors import RESOLUTION, TRAIN_SEED, scenes_at, to_tensor, val_set, world_batch

SCALE_SEED = 2_000_003  # the images that set the VAE's latent scaling factor,
SCALE_IMAGES = 1024     # and how many
CODEBOOK = 256
CODE_DIM = 16
RESTART_EVERY = 25        # dead-code restarts: how often codes are checked,
RESTART_THRESHOLD = 0.03  # and the share of uniform use under which a code counts as dead

# One architecture per profile, shared by all five models ("the same budget").
SIZES = {
    "smoke": dict(channels=[8, 16, 16], groups=4),
    "cpu": dict(channels=[16, 32, 64], groups=8),
    "gpu": dict(channels=[64, 128, 128], groups=32),
}
STEPS = {"smoke": 6, "cpu": 2000, "gpu": 8000}
BATCH = {"smoke": 8, "cpu": 32, "gpu": 128}
EVAL_IMAGES = {"smoke": 32, "cpu": 512, "gpu": 2048}   # the check on val during training (manifest, eval.json)
MODELS = ("ae", "vae", "vqvae", "vqvae-nofix", "dvae", "vqgan")  # the same-budget comparison
VARIANTS = ("vqvae-paper", "vqgan-nodisc")  # what the comparison's choices change, at the same budget
# trained on from the comparison's weights; the DALL·E tokenizer from the VQ-VAE with the paper's weighting,
# the better of the two (99.07 % against 95.85 % oracle agreement at the same budget)
LONG = {"vae-long": "vae", "vqvae-long": "vqvae-paper"}
SWEEP_SIZES = {"smoke": (4, 16), "cpu": (4, 16, 64, 256), "gpu": (4, 16, 64, 256, 1024, 4096)}
SWEEP = "vq-sweep"


# ----------------------------------------------------------------------------- the perceptual network's task

def content_targets(scenes: Sequence, masks: np.ndarray, grid: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Shape and colour index (0 = background) of the object covering most of each grid cell."""
    n, k, res, _ = masks.shape
    step = res // grid
    cover = masks.reshape(n, k, grid, step, grid, step).mean(axis=(3, 5))  # n, k, g, g
    best = cover.argmax(axis=1)
    filled = cover.max(axis=1) >= 0.5
    shape_of = np.zeros((n, k), np.int64)
    colour_of = np.zeros((n, k), np.int64)
    for i, scene in enumerate(scenes):
        for j, obj in enumerate(scene):
            shape_of[i, j] = 1 + SHAPES.index(obj.shape)
            colour_of[i, j] = 1 + COLOUR_NAMES.index(obj.colour)
    rows = np.arange(n)[:, None, None]
    shapes = np.where(filled, shape_of[rows, best], 0)
    colours = np.where(filled, colour_of[rows, best], 0)
    return torch.from_numpy(shapes), torch.from_numpy(colours)



def _percept_task(model: ae.ContentNet, profile: str):
    config = recipes.get("percept").config(profile)

    def batch_fn(step):
        scenes = scenes_at(TRAIN_SEED + 1, step, config.batch_size)
        images, masks = render(scenes, RESOLUTION)
        return (to_tensor(images), *content_targets(scenes, masks))

    def loss_fn(m, batch):
        x, shapes, colours = (t.to(_device(m)) for t in batch)
        shape_logits, colour_logits = m(x)
        return F.cross_entropy(shape_logits, shapes) + F.cross_entropy(colour_logits, colours)

    def eval_fn(m):
        scenes, images, masks = val_set(profiles.pick(EVAL_IMAGES, profile), profile)
        shapes, colours = content_targets(scenes, masks)
        shape_logits, colour_logits = m(images)
        on_objects = shapes > 0
        return {"shape_accuracy": float((shape_logits.argmax(1) == shapes)[on_objects].float().mean()),
                "colour_accuracy": float((colour_logits.argmax(1) == colours)[on_objects].float().mean()),
                "cell_accuracy": float(((shape_logits.argmax(1) == shapes) & (colour_logits.argmax(1) == colours))
                                       .float().mean())}

    return loss_fn, batch_fn, eval_fn


PERCEPT_WIDTH = {"smoke": 4, "cpu": 16, "gpu": 32}
recipes.register(Recipe(
    "percept",
    build=lambda profile: seeded(lambda: ae.ContentNet(profiles.pick(PERCEPT_WIDTH, profile))),
    task=_percept_task,
    configs={
        "smoke": TrainConfig(steps=6, batch_size=16, lr=2e-3, checkpoint_every=100, log_every=2),
        "cpu": TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup=20, checkpoint_every=100),
        "gpu": TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup=100, checkpoint_every=500),
    },
    data_seed=TRAIN_SEED + 1,
))


# ----------------------------------------------------------------------------- training wrappers

class VQTrainee(torch.nn.Module):
    """A VQModel with what training needs besides it: code usage (for restarts), a discriminator and a
    perceptual network (VQGAN). Only ``vq`` is shipped."""

    def __init__(self, vq: VQModel, restarts: bool, discriminator: torch.nn.Module | None = None,
                 percept: ae.ContentNet | None = None, disc_optimizer: dict | None = None):
        super().__init__()
        self.vq = vq
        self.disc_optimizer = disc_optimizer  # the discriminator's own lr scale and betas, if any
        size = vq.config.num_vq_embeddings
        self.restarter = ae.DeadCodeRestarter(size, every=RESTART_EVERY, threshold=RESTART_THRESHOLD, decay=0.9) if restarts else None
        # The usage statistics live in a buffer so a resumed run restarts exactly the same codes.
        self.register_buffer("usage", self.restarter.usage if restarts else torch.zeros(0))
        self.discriminator = discriminator
        self.percept = percept
        if percept is not None:
            percept.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.percept is not None:
            self.percept.eval()
        return self

    def optimizer_groups(self) -> list[dict]:
        """The discriminator apart, with its own learning rate and betas and its own gradient clipping, as
        taming-transformers gives it its own optimiser; everything else in one group."""
        if self.discriminator is None or self.disc_optimizer is None:
            return [{"params": list(self.parameters())}]
        disc = {id(p) for p in self.discriminator.parameters()}
        return [{"params": [p for p in self.parameters() if id(p) not in disc]},
                {"params": list(self.discriminator.parameters()), "lr_scale": self.disc_optimizer["lr_scale"],
                 "betas": tuple(self.disc_optimizer["betas"]), "clip_alone": "discriminator"}]


def _arch(profile: str) -> dict:
    return dict(SIZES[profile])


def _config(profile: str, **extra) -> TrainConfig:
    steps, batch = STEPS[profile], BATCH[profile]
    return TrainConfig(
        steps=steps, batch_size=batch, lr=1e-3 if profile == "gpu" else 2e-3, warmup=max(1, steps // 25),
        eval_every=0 if profile == "smoke" else steps // 5,
        checkpoint_every=steps if profile == "smoke" else max(1, steps // 10),
        log_every=1 if profile == "smoke" else 10, extra={**_arch(profile), **extra},
    )


def _configs(**extra) -> dict[str, TrainConfig]:
    return {p: _config(p, **extra) for p in profiles.PROFILES}


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batch_fn(profile: str, name: str):
    """Batches of the recipe's steps; a recipe that goes on from another one starts where it stopped."""
    config = recipes.get(name).config(profile)
    first = config.extra.get("first_step", 0)
    return lambda step: (world_batch(first + step, config.batch_size), step)


def _eval_fn(profile: str):
    return lambda model: evaluate(model, n=profiles.pick(EVAL_IMAGES, profile), profile=profile, split="val")


def _extra(name: str, profile: str) -> dict:
    return recipes.get(name).config(profile).extra


# --- plain AE ---

def _ae_task(model, profile):
    def loss_fn(m, batch):
        x, _ = batch
        x = x.to(_device(m))
        return F.mse_loss(m(x), x)
    return loss_fn, _batch_fn(profile, "ae"), _eval_fn(profile)


recipes.register(Recipe(
    "ae",
    build=lambda p: seeded(lambda: ae.PlainAutoencoder(channels=tuple(_extra("ae", p)["channels"]),
                                                        latent_channels=4, groups=_extra("ae", p)["groups"])),
    task=_ae_task, configs=_configs(latent_channels=4), model_class=ae.PlainAutoencoder, data_seed=TRAIN_SEED,
))


# --- VAE ---

def _vae_task_for(name: str):
    def task(model, profile):
        weight = _extra(name, profile)["kl_weight"]

        def loss_fn(m, batch):
            x, _ = batch
            x = x.to(_device(m))
            posterior = m.encode(x).latent_dist
            rec = m.decode(posterior.sample()).sample
            kl = posterior.kl().mean() / posterior.mean[0].numel()  # nats per latent number
            mse = F.mse_loss(rec, x)
            return mse + weight * kl, {"mse": mse.detach(), "kl": kl.detach()}
        return loss_fn, _batch_fn(profile, name), _eval_fn(profile)
    return task


@torch.no_grad()
def with_scaling_factor(vae: AutoencoderKL, n: int = SCALE_IMAGES) -> AutoencoderKL:
    """Store ``1 / std`` of the VAE's latents in its config, as Stable Diffusion's VAE does (0.18215 there).

    The diffusion chapter multiplies latents by ``vae.config.scaling_factor`` so that
    the noise it adds meets data of unit variance. Measured on training images
    of a stream of their own, on the latent means (what :func:`encode` returns).
    """
    device = _device(vae)
    latents = torch.cat([vae.encode(chunk.to(device)).latent_dist.mode()
                         for chunk in world_batch(0, n, seed=SCALE_SEED).split(256)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae


recipes.register(Recipe(
    "vae",
    build=lambda p: seeded(lambda: ae.build_vae(channels=tuple(_extra("vae", p)["channels"]), latent_channels=4,
                                                 groups=_extra("vae", p)["groups"])),
    task=_vae_task_for("vae"), configs=_configs(latent_channels=4, kl_weight=1e-4), model_class=AutoencoderKL,
    data_seed=TRAIN_SEED, export=with_scaling_factor,
))


# --- VQ-VAE (with and without the fix), and the rate-distortion sweep ---

def _build_vq(name: str, profile: str) -> VQTrainee:
    extra = _extra(name, profile)

    def make():
        vq = ae.build_vqvae(channels=tuple(extra["channels"]), codebook_size=extra["codebook_size"],
                            code_dim=extra["code_dim"], groups=extra["groups"])
        # diffusers' default (legacy) quantiser weighs the commitment term 1 and the codebook term 0.25,
        # the reverse of the VQ-VAE paper; legacy=False is the paper's weighting
        vq.quantize.legacy = extra.get("legacy", True)
        disc = percept = None
        if extra.get("gan"):
            disc = ae.PatchDiscriminator(extra["disc_channels"])
        if extra.get("gan") or extra.get("perceptual_weight"):
            percept, _ = recipes.load_or_train("percept", profile, progress=False)
        disc_optimizer = ({"lr_scale": extra["disc_lr_scale"], "betas": extra["disc_betas"]}
                          if "disc_lr_scale" in extra else None)
        return VQTrainee(vq, restarts=extra["restarts"], discriminator=disc, percept=percept,
                         disc_optimizer=disc_optimizer)
    return seeded(make)


def _vq_task_for(name: str):
    def task(model: VQTrainee, profile: str):
        extra = _extra(name, profile)
        steps = recipes.get(name).config(profile).steps
        gan_start = int(extra.get("gan_start", 1.0) * steps) if extra.get("gan") else None

        def loss_fn(m: VQTrainee, batch):
            x, step = batch
            x = x.to(_device(m))
            rec, vq_loss, grid, vectors = ae.vq_forward(m.vq, x)
            metrics: dict[str, torch.Tensor | float] = {"vq": vq_loss.detach()}
            if m.restarter is not None and m.training:
                m.restarter.usage = m.usage.cpu()  # the buffer is the state a resumed run reloads
                metrics["restarted"] = m.restarter.update(m.vq.quantize.embedding, grid, vectors, step)
                m.usage.copy_(m.restarter.usage)
            if m.percept is None:
                mse = F.mse_loss(rec, x)
                metrics["mse"] = mse.detach()
                return mse + vq_loss, metrics
            # VQGAN: L1 + perceptual, then the adversarial game once the discriminator has started
            # (never, for the ablation without a discriminator).
            l1 = (rec - x).abs().mean()
            p_loss = ae.perceptual_loss(m.percept, x, rec)
            nll = l1 + extra["perceptual_weight"] * p_loss
            loss = nll + vq_loss
            metrics.update(l1=l1.detach(), perceptual=p_loss.detach())
            metrics.update(g=0.0, d=0.0, gan_weight=0.0)  # same log columns before and after the GAN starts
            if m.discriminator is not None and step >= gan_start:
                m.discriminator.requires_grad_(False)   # the generator's loss must not move the discriminator
                g_loss = -m.discriminator(rec).mean()
                m.discriminator.requires_grad_(True)
                last = m.vq.decoder.conv_out.weight
                weight = extra["disc_weight"] * ae.adaptive_gan_weight(
                    nll, g_loss, last, max_weight=extra["max_gan_weight"]) if m.training else 0.0
                d_loss = ae.hinge_discriminator_loss(m.discriminator(x), m.discriminator(rec.detach()))
                loss = loss + weight * g_loss + d_loss
                metrics.update(g=g_loss.detach(), d=d_loss.detach(), gan_weight=float(weight))
            return loss, metrics
        return loss_fn, _batch_fn(profile, name), _eval_fn(profile)
    return task


def _register_vq(name: str, configs: dict[str, TrainConfig]) -> Recipe:
    return recipes.register(Recipe(name, build=lambda p: _build_vq(name, p), task=_vq_task_for(name),
                                   configs=configs, model_class=VQModel, data_seed=TRAIN_SEED, export=ae.unwrap))


VQ = dict(codebook_size=CODEBOOK, code_dim=CODE_DIM)
_register_vq("vqvae", _configs(**VQ, restarts=True))
_register_vq("vqvae-nofix", _configs(**VQ, restarts=False))
# The adaptive weight is capped at 1: with a discriminator that has not learnt yet, the gradient of its
# verdict is tiny and the uncapped ratio (taming-transformers allows 1e4) reached 961 and wrecked the decoder.
# The discriminator learns at a tenth of the autoencoder's rate with taming's betas (0.5, 0.9), its gradient
# clipped apart: at the autoencoder's rate and clipped with it, it never learnt anything (hinge loss 1.000).
_register_vq("vqgan", _configs(**VQ, restarts=True, gan=True, gan_start=0.5, disc_channels=32, disc_weight=0.8,
                                  max_gan_weight=1.0, perceptual_weight=1.0, disc_lr_scale=0.1,
                                  disc_betas=[0.5, 0.9]))
# The ablation: the VQGAN's L1 + perceptual losses without its discriminator, and the paper's VQ weighting.
_register_vq("vqgan-nodisc", _configs(**VQ, restarts=True, perceptual_weight=1.0))
_register_vq("vqvae-paper", _configs(**VQ, restarts=True, legacy=False))

SWEEP_ARCH = {"smoke": dict(channels=[8, 16, 16], groups=4), "cpu": dict(channels=[16, 32, 32], groups=8),
              "gpu": dict(channels=[32, 64, 64], groups=16)}
SWEEP_STEPS = {"smoke": 4, "cpu": 600, "gpu": 3000}


def sweep_name(size: int) -> str:
    return f"{SWEEP}/k{size}"


def _sweep_config(profile: str, size: int) -> TrainConfig:
    steps = SWEEP_STEPS[profile]
    return TrainConfig(steps=steps, batch_size=BATCH[profile], lr=2e-3 if profile != "gpu" else 1e-3,
                       warmup=max(1, steps // 25), checkpoint_every=max(1, steps // 4),
                       log_every=1 if profile == "smoke" else 10,
                       extra={**SWEEP_ARCH[profile], "codebook_size": size, "code_dim": CODE_DIM, "restarts": True})


for _size in sorted({k for sizes in SWEEP_SIZES.values() for k in sizes}):
    _register_vq(sweep_name(_size), {p: _sweep_config(p, _size) for p in profiles.PROFILES})


# --- dVAE ---

def _dvae_task(model, profile):
    extra = _extra("dvae", profile)
    steps = recipes.get("dvae").config(profile).steps

    def loss_fn(m, batch):
        x, step = batch
        x = x.to(_device(m))
        tau = ae.gumbel_temperature(step, steps, 1.0, extra["final_temperature"])
        rec, logits = m(x, tau=tau)
        mse = F.mse_loss(rec, x)
        kl = ae.kl_to_uniform(logits)
        return mse + extra["kl_weight"] * kl, {"mse": mse.detach(), "kl": kl.detach(), "tau": tau}
    return loss_fn, _batch_fn(profile, "dvae"), _eval_fn(profile)


recipes.register(Recipe(
    "dvae",
    build=lambda p: seeded(lambda: ae.DiscreteVAE(channels=tuple(_extra("dvae", p)["channels"]),
                                                   codebook_size=CODEBOOK, code_dim=CODE_DIM,
                                                   groups=_extra("dvae", p)["groups"])),
    task=_dvae_task, configs=_configs(**VQ, kl_weight=1e-4, final_temperature=1 / 16),
    model_class=ae.DiscreteVAE, data_seed=TRAIN_SEED,
))


# --- vae-long, vqvae-long: the comparison's VAE and VQ-VAE, trained on ---

def _long_config(base: str, profile: str) -> TrainConfig:
    """As many steps again as the comparison, at half its learning rate, on the scenes after its last step."""
    config = recipes.get(base).config(profile)
    return replace(config, lr=config.lr / 2, warmup=max(1, config.steps // 40),
                   extra={**config.extra, "first_step": config.steps, "starts_from": base})


def _build_long(base: str, profile: str) -> torch.nn.Module:
    """The base recipe's shipped model (trained first if missing), in its training wrapper."""
    model, _ = recipes.load_or_train(base, profile, progress=True)
    model.train()
    if isinstance(model, VQModel):
        model.quantize.legacy = _extra(base, profile).get("legacy", True)  # not saved in the model's config
        return VQTrainee(model, restarts=_extra(base, profile)["restarts"])
    return model


for _name, _base in LONG.items():
    _long_task = _vae_task_for(_name) if _base == "vae" else _vq_task_for(_name)
    recipes.register(Recipe(
        _name, build=functools.partial(_build_long, _base), task=_long_task,
        configs={p: _long_config(_base, p) for p in profiles.PROFILES},
        model_class=recipes.get(_base).model_class, data_seed=TRAIN_SEED, export=recipes.get(_base).export,
        base=_base))


# ----------------------------------------------------------------------------- loading, and the cached sweep

def load(name: str, profile: str | None = None, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """The shipped model (trained first if missing) and its manifest."""
    return recipes.load_or_train(name, profile, progress=progress)


def training_logs(names: Sequence[str], profile: str | None = None) -> tuple[dict, dict]:
    """The shipped training logs of ``names``: per-step rows (``log.csv``) and test evaluations (``eval.json``)."""
    from text2image.train import EVAL_JSON, read_log

    profile = profile or profiles.current()
    logs, evals = {}, {}
    for name in names:
        folder = recipes.checkpoint_folder(name, profile)
        logs[name] = read_log(folder)
        evals[name] = json.loads((folder / EVAL_JSON).read_text()) if (folder / EVAL_JSON).is_file() else []
    return logs, evals


def gan_phase(name: str = "vqgan", profile: str | None = None) -> dict[str, float]:
    """What a VQGAN's logs say about its adversarial phase: the step it began; test PSNR and oracle
    agreement at the last evaluation before it, at the worst one after it and at the end; the median
    and largest adaptive weight and the mean discriminator loss once it runs (a hinge loss of 1 is a
    discriminator that tells nothing apart)."""
    profile = profile or profiles.current()
    logs, all_evals = training_logs([name], profile)
    log, evals = logs[name], all_evals[name]
    start = int(_extra(name, profile)["gan_start"] * recipes.get(name).config(profile).steps)
    before = [e for e in evals if e["step"] <= start]
    after = [r for r in log if r["step"] > start]
    return {"start": start, "psnr_before": before[-1]["psnr"] if before else float("nan"),
            "agreement_before": before[-1].get("oracle_agreement", float("nan")) if before else float("nan"),
            "psnr_end": evals[-1]["psnr"], "agreement_end": evals[-1].get("oracle_agreement", float("nan")),
            "psnr_worst": min([e["psnr"] for e in evals if e["step"] > start], default=float("nan")),
            "agreement_worst": min([e.get("oracle_agreement", float("nan")) for e in evals if e["step"] > start],
                                   default=float("nan")),
            "weight_median": float(np.median([r["gan_weight"] for r in after])) if after else 0.0,
            "weight_max": max([r["gan_weight"] for r in after], default=0.0),
            "d_mean": float(np.mean([r["d"] for r in after])) if after else float("nan")}


def sweep_file(profile: str | None = None) -> Path:
    profile = profile or profiles.current()
    return recipes.checkpoint_folder(SWEEP, profile) / "results.json"


def rate_distortion(profile: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Codebook size vs distortion, one small VQ-VAE per size, cached in ``vq-sweep/results.json``.

    The cache is used when every entry was made by the current recipe of its size;
    otherwise the missing models are trained (or loaded) and the file rewritten.
    Each entry: codebook size, bits per image (64 positions x log2 K), PSNR, usage,
    perplexity, and the model's manifest facts (steps, seconds, images/s).
    """
    profile = profiles.check(profile) if profile else profiles.current()
    sizes = profiles.pick(SWEEP_SIZES, profile)
    path = sweep_file(profile)
    expected = {sweep_name(k): recipes.as_json(recipes.get(sweep_name(k)).config(profile)) for k in sizes}
    if path.is_file() and profile != "smoke":
        cached = json.loads(path.read_text())
        if [r["name"] for r in cached] == list(expected) and all(r["recipe"] == expected[r["name"]] for r in cached):
            return cached
    results = []
    for size in sizes:
        name = sweep_name(size)
        model, manifest = recipes.load_or_train(name, profile, progress=progress)
        metrics = evaluate(model, profile=profile)
        grid = model.config.sample_size // 4  # two downsamplings
        results.append({
            "name": name, "codebook_size": size, "bits_per_image": grid * grid * float(np.log2(size)),
            **metrics, "recipe": manifest["recipe"], "steps": manifest["steps"],
            "train_seconds": manifest["train_seconds"], "samples_per_second": manifest["samples_per_second"],
            "code_commit": manifest.get("code_commit"), "parameters": manifest.get("parameters"),
        })
    paths.write_text_atomic(path, json.dumps(results, indent=1) + "\n")
    return results


def shipped_folder(name: str) -> Path:
    return checkpoints.checkpoint_dir(name)



# ----------------------------------------------------------------------------- can a discriminator learn here?

DISC_CHECK_STEPS = {"smoke": 4, "cpu": 600, "gpu": 2000}
DISC_CHECK_IMAGES = {"smoke": 16, "cpu": 256, "gpu": 1024}
# The two settings compared: the autoencoder's own (what the first VQGAN's discriminator got), and
# taming-transformers' discriminator optimiser (Adam, betas 0.5 / 0.9) at a tenth of the learning rate.
DISC_SETTINGS = {"autoencoder": {"lr": 2e-3, "betas": (0.9, 0.999)}, "taming": {"lr": 2e-4, "betas": (0.5, 0.9)}}


def _blur(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.ones(3, 1, 3, 3) / 9
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)


def discriminator_check(profile: str | None = None) -> dict[str, dict[str, dict]]:
    """The VQGAN's discriminator trained alone, with nothing else moving: can it tell real scenes from the
    VQ-VAE's reconstructions, or from blurred scenes? Balanced accuracy on validation scenes (a share with
    its 95 % interval) per kind of fake and per optimiser setting, cached next to the VQGAN's weights
    (the key holds the VQ-VAE's digest, whose reconstructions are the fakes)."""
    from text2image.evaluate import intervals

    profile = profiles.check(profile) if profile else profiles.current()
    vq, _ = recipes.load_or_train("vqvae", profile, progress=False)
    steps, n = profiles.pick(DISC_CHECK_STEPS, profile), profiles.pick(DISC_CHECK_IMAGES, profile)
    fakes = {"reconstruction": lambda x: ae.reconstruct(vq, x), "blur": _blur}

    def compute() -> dict:
        _, real, _ = val_set(n, profile)
        out: dict[str, dict[str, dict]] = {}
        for kind, fake in fakes.items():
            out[kind] = {}
            for setting, optimiser in DISC_SETTINGS.items():
                disc = seeded(lambda: ae.PatchDiscriminator(_extra("vqgan", profile)["disc_channels"]))
                opt = torch.optim.Adam(disc.parameters(), lr=optimiser["lr"], betas=optimiser["betas"])
                for step in range(steps):
                    x = world_batch(step, BATCH[profile], seed=TRAIN_SEED + 7)
                    loss = ae.hinge_discriminator_loss(disc(x), disc(fake(x)))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    right = int((disc(real).mean((1, 2, 3)) > 0).sum() + (disc(fake(real)).mean((1, 2, 3)) < 0).sum())
                out[kind][setting] = intervals.share(right, 2 * n).as_dict()
        return out

    key = ["discriminator-check", steps, n, DISC_SETTINGS, checkpoints.weights_digest(recipes.checkpoint_folder("vqvae", profile))]
    return checkpoints.cached_result(recipes.checkpoint_folder("vqgan", profile), "discriminator-check.json",
                                     key, compute)
