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
from text2image.models import autoencoders as ae
from text2image.recipes import Recipe
from text2image.train import TrainConfig
from text2image.world.render import render
from text2image.world.scene import COLOUR_NAMES, SHAPES, random_scene

RESOLUTION = 32
TRAIN_SEED = 4        # data seed of every autoencoder's training batches
TEST_SEED = 1_000_003  # a disjoint stream for the test scenes
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
TEST_IMAGES = {"smoke": 32, "cpu": 2048, "gpu": 4096}  # what the chapter measures on
EVAL_IMAGES = {"smoke": 32, "cpu": 512, "gpu": 2048}   # the quicker check during training (manifest, eval.json)
MODELS = ("ae", "vae", "vqvae", "vqvae-nofix", "dvae", "vqgan")  # the same-budget comparison
LONG = {"vae-long": "vae", "vqvae-long": "vqvae"}  # trained on from the comparison's weights
SWEEP_SIZES = {"smoke": (4, 16), "cpu": (4, 16, 64, 256), "gpu": (4, 16, 64, 256, 1024, 4096)}
SWEEP = "vq-sweep"


# ----------------------------------------------------------------------------- data

def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 (what the oracle and the figures read)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return x.permute(0, 2, 3, 1).cpu().numpy()


def scenes_at(seed: int, index: int, n: int) -> list:
    """``n`` random scenes (1 to 4 objects) drawn from the stream ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    return [random_scene(rng) for _ in range(n)]


def world_batch(step: int, batch_size: int, seed: int = TRAIN_SEED) -> torch.Tensor:
    """The training images of a step: a pure function of ``(seed, step)``."""
    images, _ = render(scenes_at(seed, step, batch_size), RESOLUTION)
    return to_tensor(images)


@functools.lru_cache(maxsize=4)
def _test_set(n: int) -> tuple[tuple, np.ndarray, np.ndarray]:
    scenes = scenes_at(TEST_SEED, 0, n)
    images, masks = render(scenes, RESOLUTION)
    return tuple(scenes), images, masks


def test_set(n: int | None = None, profile: str | None = None) -> tuple[list, torch.Tensor, np.ndarray]:
    """The fixed test scenes, their images in [-1, 1] and their masks (never seen in training)."""
    n = n or profiles.pick(TEST_IMAGES, profile)
    scenes, images, masks = _test_set(n)
    return list(scenes), to_tensor(images), masks


# ----------------------------------------------------------------------------- models as one interface

def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The shipped autoencoder inside a training wrapper (or the model itself)."""
    return getattr(model, "vq", model)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Deterministic reconstructions: the VAE decodes its mean, the dVAE its argmax codes."""
    model = unwrap(model)
    out = []
    for chunk in images.split(batch):
        if isinstance(model, AutoencoderKL):
            out.append(model.decode(model.encode(chunk).latent_dist.mode()).sample)
        elif isinstance(model, VQModel):
            out.append(ae.vq_forward(model, chunk)[0])
        elif isinstance(model, ae.DiscreteVAE):
            out.append(model(chunk, hard=True)[0])
        else:
            out.append(model(chunk))
    return torch.cat(out).clamp(-1, 1)


@torch.no_grad()
def encode(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The continuous latent grid (B x C x 8 x 8): AE code, VAE mean, VQ vectors before quantisation,
    dVAE code probabilities."""
    model = unwrap(model)
    if isinstance(model, AutoencoderKL):
        return model.encode(images).latent_dist.mode()
    if isinstance(model, VQModel):
        return model.encode(images).latents
    if isinstance(model, ae.DiscreteVAE):
        return model.logits(images).softmax(dim=1)
    return model.encode(images)


@torch.no_grad()
def decode(model: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Images from latent grids as :func:`encode` returns them (VQ latents are quantised first)."""
    model = unwrap(model)
    if isinstance(model, AutoencoderKL):
        return model.decode(latents).sample.clamp(-1, 1)
    if isinstance(model, VQModel):
        return model.decode(latents).sample.clamp(-1, 1)
    if isinstance(model, ae.DiscreteVAE):
        codes = latents.argmax(dim=1)
        return model.decode_codes(codes).clamp(-1, 1)
    return model.decode(latents).clamp(-1, 1)


@torch.no_grad()
def codes(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor | None:
    """Token grids (B x 8 x 8) of the discrete models, ``None`` for the continuous ones."""
    model = unwrap(model)
    if isinstance(model, VQModel):
        return torch.cat([ae.vq_codes(model, chunk) for chunk in images.split(256)])
    if isinstance(model, ae.DiscreteVAE):
        return torch.cat([model.logits(chunk).argmax(dim=1) for chunk in images.split(256)])
    return None


def codebook_size(model: torch.nn.Module) -> int | None:
    model = unwrap(model)
    if isinstance(model, VQModel):
        return model.config.num_vq_embeddings
    if isinstance(model, ae.DiscreteVAE):
        return model.config.codebook_size
    return None


# ----------------------------------------------------------------------------- the oracle (adapter)

def _oracle_parse() -> Callable | None:
    """The oracle as ``images -> list of objects per image``, or ``None`` if the world has none (metric left out)."""
    try:
        from text2image.world import oracle
    except ImportError:
        return None
    if hasattr(oracle, "parse_batch"):
        return oracle.parse_batch
    if hasattr(oracle, "parse"):
        return lambda images: [oracle.parse(image) for image in images]
    return None


def _objects(parsed: Any) -> list:
    if hasattr(parsed, "objects"):
        return list(parsed.objects)
    return list(parsed)


def _attr(obj: Any, name: str):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def same_scene(parsed: Any, scene: Any, tolerance: float = 1.0 / RESOLUTION) -> bool:
    """Same objects (shape, colour, size) at the same places (within ``tolerance`` canvas units)."""
    found, truth = _objects(parsed), _objects(scene)
    if len(found) != len(truth):
        return False
    left = list(found)
    for obj in truth:
        key = (_attr(obj, "shape"), _attr(obj, "colour"), _attr(obj, "size"))
        match = next((k for k, f in enumerate(left)
                      if (_attr(f, "shape"), _attr(f, "colour"), _attr(f, "size")) == key
                      and abs(_attr(f, "x") - obj.x) <= tolerance and abs(_attr(f, "y") - obj.y) <= tolerance), None)
        if match is None:
            return False
        left.pop(match)
    return True


def oracle_agreement(reconstructions: torch.Tensor, scenes: Sequence) -> float | None:
    """Share of reconstructions in which the oracle reads back exactly the input's scene."""
    parse = _oracle_parse()
    if parse is None:
        return None
    parsed = parse(to_uint8(reconstructions))
    return float(np.mean([same_scene(found, scene) for found, scene in zip(parsed, scenes)]))


ERRORS = ("exact", "count", "colour", "shape", "size", "position")


def matched(parsed: Any, scene: Any) -> list[tuple[Any, Any]]:
    """Pairs ``(true object, object found)``: each true object, in turn, takes the nearest object left."""
    found, pairs = list(_objects(parsed)), []
    for obj in _objects(scene):
        k = min(range(len(found)), key=lambda i: (_attr(found[i], "x") - obj.x) ** 2 + (_attr(found[i], "y") - obj.y) ** 2)
        pairs.append((obj, found.pop(k)))
    return pairs


def first_error(parsed: Any, scene: Any, tolerance: float = 1.0 / RESOLUTION) -> str:
    """What the oracle gets wrong first in a reconstruction: the number of objects, else (matching each
    true object to the nearest one found) a colour, a shape, a size, a position; ``"exact"`` if nothing."""
    if len(_objects(parsed)) != len(_objects(scene)):
        return "count"
    errors = set()
    for obj, f in matched(parsed, scene):
        for key in ("colour", "shape", "size"):
            if _attr(f, key) != getattr(obj, key):
                errors.add(key)
        if abs(_attr(f, "x") - obj.x) > tolerance or abs(_attr(f, "y") - obj.y) > tolerance:
            errors.add("position")
    return next((e for e in ERRORS[2:] if e in errors), "exact")


def oracle_errors(model: torch.nn.Module, n: int | None = None, profile: str | None = None) -> dict[str, float]:
    """Share of test reconstructions by first error (:func:`first_error`); empty without an oracle."""
    parse = _oracle_parse()
    if parse is None:
        return {}
    scenes, images, _ = test_set(n, profile)
    parsed = parse(to_uint8(reconstruct(model, images)))
    verdicts = [first_error(p, s) for p, s in zip(parsed, scenes)]
    return {e: verdicts.count(e) / len(verdicts) for e in ERRORS}


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: torch.nn.Module, n: int | None = None, profile: str | None = None) -> dict[str, float]:
    """PSNR, oracle agreement (when the oracle exists) and, for discrete models, codebook usage/perplexity."""
    model = unwrap(model).eval()
    scenes, images, _ = test_set(n, profile)
    rec = reconstruct(model, images)
    metrics = {"psnr": float(ae.psnr(images, rec).mean()), "mse": float(((images - rec) / 2).pow(2).mean())}
    agreement = oracle_agreement(rec, scenes)
    if agreement is not None:
        metrics["oracle_agreement"] = agreement
    grid = codes(model, images)
    if grid is not None:
        metrics.update({f"codebook_{k}": v for k, v in ae.codebook_stats(grid, codebook_size(model)).items()})
    return metrics


def shape_confusions(model: torch.nn.Module, n: int | None = None, profile: str | None = None) -> list[list]:
    """Which shapes the oracle misreads in reconstructions: ``[size, true shape, shape read, count]``,
    most frequent first, over the test scenes whose first error is a shape (objects matched to the nearest found)."""
    parse = _oracle_parse()
    if parse is None:
        return []
    scenes, images, _ = test_set(n, profile)
    counts: dict[tuple, int] = {}
    for found, scene in zip(parse(to_uint8(reconstruct(model, images))), scenes):
        if first_error(found, scene) != "shape":
            continue
        for obj, read in matched(found, scene):
            if _attr(read, "shape") != obj.shape:
                key = (obj.size, obj.shape, _attr(read, "shape"))
                counts[key] = counts.get(key, 0) + 1
    return [[*key, count] for key, count in sorted(counts.items(), key=lambda kv: -kv[1])]


def count_confusions(confusions: Sequence[Sequence], size: str | None = None, truth: str | None = None,
                     read: str | None = None) -> int:
    """How many misread objects in :func:`shape_confusions` rows match the given size, true shape and shape read."""
    wanted = (size, truth, read)
    return sum(row[3] for row in confusions if all(w is None or w == v for w, v in zip(wanted, row[:3])))


MEASURE_VERSION = 2  # bump when evaluate(), oracle_errors() or shape_confusions() change what they report


def measure(name: str, model: torch.nn.Module, profile: str | None = None) -> dict[str, Any]:
    """:func:`evaluate`, the oracle's first errors (``"errors"``) and its shape confusions for a recipe's
    model, cached next to its weights: the chapter reads the file instead of re-running the oracle."""
    profile = profiles.check(profile) if profile else profiles.current()
    n = profiles.pick(TEST_IMAGES, profile)
    folder = recipes.checkpoint_folder(name, profile)
    return checkpoints.cached_result(
        folder, f"measured-{n}.json", [n, MEASURE_VERSION],
        lambda: {**evaluate(model, n), "errors": oracle_errors(model, n),
                 "shape_confusions": shape_confusions(model, n)})


# ----------------------------------------------------------------------------- the perceptual network

class ContentNet(torch.nn.Module):
    """A tiny CNN trained to say, for each cell of an 8x8 grid, which shape and which colour lies there.

    Its intermediate feature maps stand in for VGG's in VQGAN's perceptual loss:
    no pretrained VGG can be downloaded here, so the project trains its own
    judge of what matters in this world (shapes and colours, where they are).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = width

        def block(c_in, c_out, stride):
            return torch.nn.Sequential(
                torch.nn.Conv2d(c_in, c_out, 3, stride, 1), torch.nn.GroupNorm(4, c_out), torch.nn.SiLU(),
                torch.nn.Conv2d(c_out, c_out, 3, 1, 1), torch.nn.GroupNorm(4, c_out), torch.nn.SiLU())

        self.blocks = torch.nn.ModuleList([block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 4 * w, 2)])
        self.head = torch.nn.Conv2d(4 * w, 1 + len(SHAPES) + 1 + len(COLOUR_NAMES), 1)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], images
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the shape (background first) and of the colour (background first) of each 8x8 cell."""
        logits = self.head(self.features(images)[-1])
        return logits[:, :1 + len(SHAPES)], logits[:, 1 + len(SHAPES):]


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


def perceptual_loss(net: ContentNet, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """LPIPS-style distance: squared differences of channel-normalised features, averaged over layers."""
    loss = 0.0
    for a, b in zip(net.features(images), net.features(reconstructions)):
        a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-6)
        b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-6)
        loss = loss + (a - b).pow(2).sum(dim=1).mean()
    return loss / len(net.blocks)


def _percept_task(model: ContentNet, profile: str):
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
        scenes, images, masks = test_set(profiles.pick(EVAL_IMAGES, profile), profile)
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
    build=lambda profile: _seeded(lambda: ContentNet(profiles.pick(PERCEPT_WIDTH, profile))),
    task=_percept_task,
    configs={
        "smoke": TrainConfig(steps=6, batch_size=16, lr=2e-3, checkpoint_every=100, log_every=2),
        "cpu": TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup=20, checkpoint_every=100),
        "gpu": TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup=100, checkpoint_every=500),
    },
    data_seed=TRAIN_SEED + 1,
))


# ----------------------------------------------------------------------------- training wrappers

def _seeded(make: Callable[[], torch.nn.Module], seed: int = 0) -> torch.nn.Module:
    """Build a model from a fixed seed, so a recipe's initial weights never depend on what ran before."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return make()
    finally:
        torch.set_rng_state(state)


class VQTrainee(torch.nn.Module):
    """A VQModel with what training needs besides it: code usage (for restarts), a discriminator and a
    perceptual network (VQGAN). Only ``vq`` is shipped."""

    def __init__(self, vq: VQModel, restarts: bool, discriminator: torch.nn.Module | None = None,
                 percept: ContentNet | None = None):
        super().__init__()
        self.vq = vq
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
    return lambda model: evaluate(model, n=profiles.pick(EVAL_IMAGES, profile), profile=profile)


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
    build=lambda p: _seeded(lambda: ae.PlainAutoencoder(channels=tuple(_extra("ae", p)["channels"]),
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
    build=lambda p: _seeded(lambda: ae.build_vae(channels=tuple(_extra("vae", p)["channels"]), latent_channels=4,
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
        disc = percept = None
        if extra.get("gan"):
            disc = ae.PatchDiscriminator(extra["disc_channels"])
            percept, _ = recipes.load_or_train("percept", profile, progress=False)
        return VQTrainee(vq, restarts=extra["restarts"], discriminator=disc, percept=percept)
    return _seeded(make)


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
            if m.discriminator is None:
                mse = F.mse_loss(rec, x)
                metrics["mse"] = mse.detach()
                return mse + vq_loss, metrics
            # VQGAN: L1 + perceptual, then the adversarial game once the discriminator has started.
            l1 = (rec - x).abs().mean()
            p_loss = perceptual_loss(m.percept, x, rec)
            nll = l1 + extra["perceptual_weight"] * p_loss
            loss = nll + vq_loss
            metrics.update(l1=l1.detach(), perceptual=p_loss.detach())
            metrics.update(g=0.0, d=0.0, gan_weight=0.0)  # same log columns before and after the GAN starts
            if step >= gan_start:
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
                                   configs=configs, model_class=VQModel, data_seed=TRAIN_SEED, export=unwrap))


VQ = dict(codebook_size=CODEBOOK, code_dim=CODE_DIM)
_register_vq("vqvae", _configs(**VQ, restarts=True))
_register_vq("vqvae-nofix", _configs(**VQ, restarts=False))
# The adaptive weight is capped at 1: with a discriminator that has not learnt yet, the gradient of its
# verdict is tiny and the uncapped ratio (taming-transformers allows 1e4) reached 961 and wrecked the decoder.
_register_vq("vqgan", _configs(**VQ, restarts=True, gan=True, gan_start=0.5, disc_channels=32, disc_weight=0.8,
                                  max_gan_weight=1.0, perceptual_weight=1.0))

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
    build=lambda p: _seeded(lambda: ae.DiscreteVAE(channels=tuple(_extra("dvae", p)["channels"]),
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

