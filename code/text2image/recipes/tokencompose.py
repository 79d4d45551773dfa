"""Recipes of the TokenCompose chapter: the shipped ``ldm-unet`` trained on, with and without grounding losses.

Every recipe here starts from the shipped ``ldm-unet`` pipeline (its UNet's
weights; the manifest records their digest, and loading refuses a fine-tune
whose base has changed since) and goes on training the UNet alone, the VAE
(``vae-long``) and the text encoder (the text tower of ``clip``) frozen, as the
latent recipe trained it, on *multi-object* examples (2 to 5 objects; the
training split holds up to four) with

    loss = MSE + lambda_token L_token + lambda_pixel L_pixel,

the MSE being the latent recipe's denoising loss (the same objective
:data:`text2image.recipes.latent.OBJECTIVE`, the same share of dropped
captions for guidance), the two grounding losses TokenCompose's
(:func:`text2image.methods.tokencompose.losses`), computed on the maps that an
:class:`~text2image.methods.attention.AttentionStore` on the mid and up blocks
records during the training forward pass itself (on the graph: they train the
UNet). An image whose caption was dropped gets no grounding loss.

The ablation (:data:`RECIPES`):

* ``tc-base-continued``: the MSE alone for the same extra steps, data and
  seeds: the continued-training control, which separates what the losses do
  from what training longer does (its loss is the latent recipe's, to the bit;
  no store is installed);
* ``tc-token`` (+ 1e-3 L_token), ``tc-pixel`` (+ 5e-5 L_pixel), ``tc-both``
  (both, the paper's weights);
* ``-s2`` replicas of the control and of ``tc-both`` with a second training
  seed (another order of the examples, other dropped captions, noises and time
  steps; the base is the same shipped model: one base, two fine-tunes);
* a sweep of lambda_token in the full model (:data:`SWEEP`, 1e-2 and 1e-1,
  lambda_pixel kept at 5e-5): the paper's 1e-3 was set for SD's loss scale;
  :func:`sweep_config` / :func:`register_sweep` make another weight a recipe.

A recipe and its replica draw the same random numbers whatever its losses
(the grounding losses draw none): the control and ``tc-both`` of one seed see
the same batches, dropped captions, noises and time steps, a paired design.

**Data.** The multi-object training examples that follow the base's
(indices from ``EXAMPLES`` of the latent recipe on: the base never saw them),
rendered once, encoded by ``vae-long`` into latents and stored with their
caption ids *and their word masks* as safetensors in ``vae-long``'s
``latents/`` folder, keyed by its weights digest, like the base's latents. The
masks are cached rather than rendered on the fly, because the render is made
anyway for the latents, and because a word's mask is needed only on the
latent grid: the supervised grids are 8, 4 and 2 cells across, and the
"area, then > 0" resize of :func:`~text2image.methods.tokencompose.resize_mask`
gives the same 4 x 4 and 2 x 2 masks from the 8 x 8 one as from the 32 px one
(a coarse cell is on when any pixel under it is), which a test checks: 64
cells a word, under 1 KB an example with its latent. Rendering each step's
images again (0.1 ms of CPU an image, 6 ms a batch) would cost little, but it
would be a second route to images the latents already stand for, and a place
where the two could part.

The batch of step ``s`` is a pure function of the step (the ``s``-th slice of
a fresh permutation of the examples each epoch, the dropped captions drawn
from ``(seed, s)``), so an interrupted run resumes exactly.

**Monitoring** is on ``val`` only: the latent recipe's val loss (the same
fixed latents, noises and time steps as the base's manifest), the grounding
losses on fixed multi-object validation examples (fixed noises and time
steps), their attention-mask IoU (:mod:`text2image.evaluate.grounding`), and
the oracle's verdicts on validation prompts drawn by the pipeline.

**Shipped** is the whole pipeline, as ``ldm-unet`` ships it (the fine-tuned
UNet with the same VAE, text encoder, tokenizer and scheduler, under 10 MB in
fp16), with the default attention processors: the store is installed for a
training step only, so sampling costs what the base's costs.

The generators are registered with the benchmark (``python -m text2image bench
generate tc-both``); :func:`ablation_rows` gives the numbers of the chapter's
table.
"""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from text2image import checkpoints, profiles
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.evaluate import grounding as G
from text2image.evaluate import intervals, monitor
from text2image.methods import tokencompose as TC
from text2image.methods.attention import AttentionStore
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.pipelines import latent as P
from text2image.recipes import Recipe, checkpoint_folder, load_or_train, register
from text2image.recipes import latent as R
from text2image.train import TrainConfig, epoch_batch, pick_device
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, prompt_renders, to_tensor, to_uint8

BASE = R.BASE  # "ldm-unet": the model every recipe here goes on from
LAMBDA_TOKEN, LAMBDA_PIXEL = 1e-3, 5e-5  # the paper's weights (MSE + 1e-3 L_token + 5e-5 L_pixel)
SEED_BASE = 1900  # a replica r trains with seed SEED_BASE + r (its batches, dropped captions, noises, time steps)
# lambda_token of the full model beyond the paper's, in case 1e-3 does nothing at our scale. On the shipped cpu
# ldm-unet, one batch of 64 multi-object training examples (none seen by it, 10 % of the captions dropped) gives
# MSE 0.52, L_token 3.34 (summed over the 7 supervised layers: 0.48 each, about 30 % of a word's attention inside its
# object) and L_pixel 3.39 (over the 4 groups): the paper's weights add 0.0033 (0.6 % of the MSE) and 0.00017.
# 1e-2 and 1e-1 make the token term about 6 % and 64 % of the MSE.
SWEEP = (1e-2, 1e-1)


def sweep_name(lambda_token: float, replica: int = 1) -> str:
    """``tc-both-token-1e-2``: the full model with another lambda_token (``-s2`` for a second seed)."""
    mantissa, exponent = f"{lambda_token:.0e}".split("e")
    return f"tc-both-token-{mantissa}e{int(exponent)}" + (f"-s{replica}" if replica != 1 else "")


RECIPES: dict[str, dict] = {
    "tc-base-continued": dict(token=0.0, pixel=0.0, replica=1),
    "tc-base-continued-s2": dict(token=0.0, pixel=0.0, replica=2),
    "tc-token": dict(token=LAMBDA_TOKEN, pixel=0.0, replica=1),
    "tc-pixel": dict(token=0.0, pixel=LAMBDA_PIXEL, replica=1),
    "tc-both": dict(token=LAMBDA_TOKEN, pixel=LAMBDA_PIXEL, replica=1),
    "tc-both-s2": dict(token=LAMBDA_TOKEN, pixel=LAMBDA_PIXEL, replica=2),
    **{sweep_name(w): dict(token=w, pixel=LAMBDA_PIXEL, replica=1) for w in SWEEP},
}
METHODS = {"control": (0.0, 0.0), "token": (LAMBDA_TOKEN, 0.0), "pixel": (0.0, LAMBDA_PIXEL),
           "both": (LAMBDA_TOKEN, LAMBDA_PIXEL)}
# The ablation table: the base, then each method with its seeds (the sweep is read apart)
ABLATION = (BASE, "tc-base-continued", "tc-base-continued-s2", "tc-token", "tc-pixel", "tc-both", "tc-both-s2")

# ----------------------------------------------------------------------------- steps and batches
# The cpu recipes train in at most ~25 minutes each on ONE thread of this machine. Measured on the cpu sizes
# (UNet 32/64/64, 2 heads, text width 64), batch 64, process CPU time per step (the frozen text encoder's forward,
# the loss, the backward, clipping and AdamW), median of steps 2-6, OMP_NUM_THREADS=1, nice'd, while two other
# trainings kept both cores busy (load about 3 on 2 cores):
#   MSE only (the control: the latent recipe's loss, no store):              0.32 s a step (ldm-unet: 0.305 s);
#   MSE + L_token + L_pixel (the store on the mid and up blocks, 7 layers):  0.60 s a step with the losses looping
#   in Python over layers, images and words (about 0.27 s of it); batched over images and words since
#   (methods.tokencompose: 0.42 -> 0.074 s for both losses and their backward), tc-both trained at 158 images/s,
#   0.41 s a step, in 10.2 minutes with its evaluations, beside another training on the other core.
# 1,500 steps of 64: 15 minutes for a grounded recipe (23 at 0.9 s a step), 8 for the control; plus 8 evaluations
# (the latent recipe's 96 guided images and val loss, the grounding losses and IoU on 256 validation examples:
# about 12 s each) and, once for all recipes, the 48,000 examples encoded with their masks (about a minute). So
# about 18 minutes for each grounded recipe, within the 25 asked. 48,000 new examples, two epochs, as the base saw
# its own. Learning rate 1e-4, the base's last one (its cosine ended at a tenth of 1e-3), with a short warm-up and
# the Trainer's cosine decay: chosen, not tuned. The paper fine-tunes SD at 5e-6 for 24,000 steps of 4 images.
STEP_SECONDS = {"control": 0.32, "grounded": 0.41}
CONFIG = {
    "smoke": dict(steps=4, batch_size=8, lr=1e-4, warmup=1, examples=32),
    "cpu": dict(steps=1500, batch_size=64, lr=1e-4, warmup=50, examples=48_000),
    "gpu": dict(steps=6000, batch_size=256, lr=3e-5, warmup=200, examples=768_000),
}
VAL_GROUNDING = {"smoke": 8, "cpu": 256, "gpu": 1024}  # multi-object val examples of the grounding monitoring
VAL_SEED = 1921                                         # their noises and time steps
IOU_PROMPTS = {"smoke": 8, "cpu": 512, "gpu": 2048}      # prompts of the attention-mask IoU in the tables
DATA_VERSION = "1"  # of what the grounded cache holds: bump when it changes
WORDS = G.MAX_OBJECTS  # the most supervised words a caption has (five nouns); fewer are padded with token -1
CACHE_VERSION = "1"  # of the measurements below (IoU, latency): bump to measure them again


def _config(token: float, pixel: float, replica: int, profile: str) -> TrainConfig:
    base = CONFIG[profile]
    steps = base["steps"]
    extra: dict[str, Any] = {
        "starts_from": BASE, "first_example": R.EXAMPLES[profile], "examples": base["examples"],
        "objects": [G.MIN_OBJECTS, G.MAX_OBJECTS], "lambda_token": float(token), "lambda_pixel": float(pixel),
        "replica": int(replica), "blocks": list(TC.SUPERVISED), "denoiser": "unet",
        "size": L.UNET_SIZES[profile], "text_encoder": "clip", "vae": R.VAE, "objective": R.OBJECTIVE,
        "drop_caption": R.DROP_CAPTION}
    return TrainConfig(steps=steps, batch_size=base["batch_size"], lr=base["lr"], warmup=base["warmup"],
                       weight_decay=0.01, betas=(0.9, 0.999), grad_clip=1.0,
                       eval_every=0 if profile == "smoke" else max(1, steps // 8),
                       checkpoint_every=2 if profile == "smoke" else max(1, steps // 20),
                       log_every=1 if profile == "smoke" else 10, seed=SEED_BASE + int(replica), extra=extra)


def sweep_config(lambda_token: float, profile: str, lambda_pixel: float = LAMBDA_PIXEL,
                 replica: int = 1) -> TrainConfig:
    """The config of the full model with another lambda_token (the hook of the sweep)."""
    return _config(lambda_token, lambda_pixel, replica, profiles.check(profile))


CONFIGS: dict[str, dict[str, TrainConfig]] = {
    name: {p: _config(r["token"], r["pixel"], r["replica"], p) for p in profiles.PROFILES}
    for name, r in RECIPES.items()}


def sweep_names() -> tuple[str, ...]:
    """The lambda_token sweep's recipes, in the order of :data:`SWEEP`."""
    return tuple(sweep_name(w) for w in SWEEP)


def names() -> tuple[str, ...]:
    """Every TokenCompose recipe registered so far (those of :func:`register_sweep` included)."""
    return tuple(CONFIGS)


def _check_name(name: str) -> str:
    if name not in CONFIGS:
        raise KeyError(f"no TokenCompose recipe named {name!r}; they are: {', '.join(CONFIGS)}")
    return name


def weights(name: str) -> tuple[float, float]:
    """``(lambda_token, lambda_pixel)`` of a recipe (``(0, 0)`` for the base)."""
    if name == BASE:
        return 0.0, 0.0
    extra = CONFIGS[_check_name(name)]["cpu"].extra
    return extra["lambda_token"], extra["lambda_pixel"]


def method_of(name: str) -> str:
    """``base``, ``control``, ``token``, ``pixel``, ``both`` or ``sweep``."""
    if name == BASE:
        return "base"
    found = [m for m, w in METHODS.items() if w == weights(name)]
    return found[0] if found else "sweep"


def replica_of(name: str) -> int | None:
    return None if name == BASE else CONFIGS[_check_name(name)]["cpu"].extra["replica"]


# ----------------------------------------------------------------------------- data: latents and word masks

def multi_object_examples(split: str, start: int, n: int) -> list[splits.Example]:
    """The first ``n`` examples of ``split`` from index ``start`` with 2 to 5 objects."""
    return G.multi_object_examples(split, n, start)


def grounded_folder(profile: str) -> Path:
    return R.latents_folder(profile)


def _grounded_key(split: str, start: int, n: int, digest: str) -> str:
    return hashlib.sha256(json.dumps([DATA_VERSION, digest, split, start, n, L.LATENT_SIZE,
                                      G.MIN_OBJECTS, G.MAX_OBJECTS]).encode()).hexdigest()[:12]


def word_tensors(captions: Sequence, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens (N, WORDS) int8, -1 past the last word; masks (N, WORDS, 8, 8) bool)``: each caption's nouns
    and their objects' masks on the latent grid (resized by :func:`~text2image.methods.tokencompose.resize_mask`),
    from the scenes' masks (N, K, 32, 32) as ``render`` gives them."""
    words = TC.batch_word_masks(list(captions), masks)
    tokens = torch.full((len(words), WORDS), -1, dtype=torch.int8)
    grid = torch.zeros((len(words), WORDS, L.LATENT_SIZE, L.LATENT_SIZE), dtype=torch.bool)
    for n, found in enumerate(words):
        if len(found) > WORDS:
            raise TC.GroundingError(f"{captions[n].text!r} has {len(found)} supervised words, more than {WORDS}")
        for k, w in enumerate(found):
            tokens[n, k] = w.token
            grid[n, k] = TC.resize_mask(w.mask, (L.LATENT_SIZE, L.LATENT_SIZE)).bool()
    return tokens, grid


@torch.no_grad()
def _encode(autoencoder, examples: Sequence[splits.Example], chunk: int = 512) -> dict[str, torch.Tensor]:
    autoencoder = autoencoder.to(pick_device())
    device = next(autoencoder.parameters()).device
    out: dict[str, list[torch.Tensor]] = {"latents": [], "text": [], "tokens": [], "masks": []}
    for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        images, masks = render([e.scene for e in part], RESOLUTION)
        out["latents"].append(autoencoder.encode(to_tensor(images).to(device)).latent_dist.mode().cpu())
        out["text"].append(T.encode([e.caption.text for e in part])["input_ids"])
        tokens, grid = word_tensors([e.caption for e in part], masks)
        out["tokens"].append(tokens)
        out["masks"].append(grid)
    return {"latents": torch.cat(out["latents"]).to(torch.float16).contiguous(),
            "text": torch.cat(out["text"]).to(torch.uint8), "tokens": torch.cat(out["tokens"]),
            "masks": torch.cat(out["masks"]),
            "index": torch.tensor([e.index for e in examples], dtype=torch.int64)}


@functools.lru_cache(maxsize=8)
def _grounded(split: str, start: int, n: int, profile: str, digest: str) -> dict[str, torch.Tensor]:
    return R.stored_tensors(grounded_folder(profile), f"grounded-{split}-{start}-{n}",
                            _grounded_key(split, start, n, digest), digest, split,
                            lambda: _encode(R.vae(profile), multi_object_examples(split, start, n)))


def grounded_data(split: str, start: int, n: int, profile: str | None = None) -> dict[str, torch.Tensor]:
    """The first ``n`` multi-object examples of ``split`` from index ``start``, as the fine-tunes see them:
    ``latents`` (n, 4, 8, 8) fp16 (posterior means, not yet scaled), caption ids ``text`` (n, 32), the tokens of
    their nouns ``tokens`` (n, 5) (-1: none) and the nouns' object masks on the latent grid ``masks``
    (n, 5, 8, 8), and each example's ``index`` in the split; encoded once with ``vae-long`` (trained first if
    missing) and stored in its checkpoint's ``latents/`` folder, keyed by its weights digest."""
    profile = profiles.check(profile) if profile else profiles.current()
    load_or_train(R.VAE, profile, progress=False)
    digest = checkpoints.weights_digest(checkpoint_folder(R.VAE, profile))
    return _grounded(splits.check_split(split), int(start), int(n), profile, digest)


def training_data(name: str, profile: str) -> dict[str, torch.Tensor]:
    extra = CONFIGS[_check_name(name)][profiles.check(profile)].extra
    return grounded_data("train", extra["first_example"], extra["examples"], profile)


def targets_of(tokens: torch.Tensor, masks: torch.Tensor) -> list[list[TC.WordMask]]:
    """Per image, the ``(token, mask)`` pairs the losses take, from a batch's ``tokens`` (B, 5) and ``masks``
    (B, 5, H, W) (a token of -1 is no word)."""
    return [[TC.WordMask(int(t), masks[b, k]) for k, t in enumerate(tokens[b].tolist()) if t >= 0]
            for b in range(tokens.shape[0])]


def make_batch(data: dict[str, torch.Tensor], step: int, batch_size: int, scale: float, drop_caption: float,
               seed: int) -> tuple[torch.Tensor, ...]:
    """``(scaled latents (B, 4, 8, 8), caption ids (B, 32), masks (B, 32), word tokens (B, 5), word masks
    (B, 5, 8, 8))`` of a step: the latent recipe's batch (:func:`text2image.recipes.latent.make_batch`, the same
    indices and dropped captions for the same seed) with the words of each caption, none where it was dropped."""
    index = torch.from_numpy(epoch_batch(step, batch_size, len(data["latents"]), seed))
    ids = data["text"][index].long()
    mask = (ids != T.tokenizer().pad_token_id).long()
    tokens = data["tokens"][index].long()
    if drop_caption:
        dropped = np.random.default_rng([seed, step]).random(batch_size) < drop_caption
        T.drop_captions(ids, mask, dropped)
        tokens[torch.from_numpy(dropped)] = -1
    return data["latents"][index].float() * scale, ids, mask, tokens, data["masks"][index]


# ----------------------------------------------------------------------------- the loss

def grounded_loss(unet, encoder, objective: str, scheduler, batch: Sequence[torch.Tensor],
                  lambda_token: float, lambda_pixel: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``MSE + lambda_token L_token + lambda_pixel L_pixel`` on one batch of :func:`make_batch`, and its parts.

    With both weights 0 this is the latent recipe's loss and nothing else (no store). Otherwise the store
    records the mid and up blocks during the one forward pass of the MSE, and both grounding losses are
    computed on its maps (a loss whose weight is 0 is reported, not trained)."""
    device = next(unet.parameters()).device
    x, ids, mask, tokens, masks = (t.to(device) for t in batch)
    states = L.encode_text(encoder.to(device), ids, mask)
    if not (lambda_token or lambda_pixel):
        mse = L.latent_loss(unet, objective, scheduler, x, states, mask)
        return mse, {"mse": mse.detach()}
    targets = targets_of(tokens, masks)
    with AttentionStore(unet, blocks=TC.SUPERVISED) as store:
        mse = L.latent_loss(unet, objective, scheduler, x, states, mask)
        grounding = TC.losses(store, targets)
    total = mse
    if lambda_token:
        total = total + lambda_token * grounding.token
    if lambda_pixel:
        total = total + lambda_pixel * grounding.pixel
    return total, {"mse": mse.detach(), "token": grounding.token.detach(), "pixel": grounding.pixel.detach(),
                   "grounded": torch.tensor(float(sum(bool(t) for t in targets)))}


# ----------------------------------------------------------------------------- monitoring on val

@functools.lru_cache(maxsize=4)
def _val_draws(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(VAL_SEED)
    noise = torch.randn((n, L.LATENT_CHANNELS, L.LATENT_SIZE, L.LATENT_SIZE), generator=generator)
    return noise, torch.randint(0, D.TRAIN_STEPS, (n,), generator=generator)


@torch.no_grad()
def val_grounding(unet, encoder, objective: str, profile: str, scale: float, chunk: int = 64) -> dict[str, float]:
    """The MSE and both grounding losses on fixed multi-object validation examples, noises and time steps."""
    n = profiles.pick(VAL_GROUNDING, profile)
    data = grounded_data("val", 0, n, profile)
    noise, index = _val_draws(n)
    scheduler = D.training_scheduler(objective)
    device = next(unet.parameters()).device
    encoder = encoder.to(device)
    sums = {"val_grounded_mse": 0.0, "val_token": 0.0, "val_pixel": 0.0}
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        ids = data["text"][part].long()
        mask = (ids != T.tokenizer().pad_token_id).long()
        x0 = (data["latents"][part].float() * scale).to(device)
        ids, mask = ids.to(device), mask.to(device)
        x_t, timestep, target = D.noised(objective, scheduler, x0, noise[part].to(device), index[part])
        targets = targets_of(data["tokens"][part].long(), data["masks"][part])
        with AttentionStore(unet, blocks=TC.SUPERVISED) as store:
            prediction = L.predict(unet, x_t, timestep, L.encode_text(encoder, ids, mask), mask)
            found = TC.losses(store, targets)
        size = x0.shape[0]
        sums["val_grounded_mse"] += float(torch.nn.functional.mse_loss(prediction, target)) * size
        sums["val_token"] += float(found.token) * size
        sums["val_pixel"] += float(found.pixel) * size
    return {k: v / n for k, v in sums.items()}


def val_iou(unet, vae, encoder, objective: str, profile: str) -> dict[str, float]:
    """The attention-mask IoU of the monitoring's validation examples, per group and over all (means)."""
    examples = multi_object_examples("val", 0, profiles.pick(VAL_GROUNDING, profile))
    result = G.measure(unet, vae, encoder, objective, examples)
    return {f"val_iou_{name.replace(' ', '_')}": r["mean"] for name, r in result["groups"].items()}


def base_validation(profile: str | None = None) -> dict[str, float]:
    """The monitoring's numbers for the base before any fine-tuning (where every curve starts: the Trainer
    evaluates after its first steps, not before), cached next to the base's weights."""
    profile = profiles.check(profile) if profile else profiles.current()
    key = {"version": CACHE_VERSION, "profile": profile, "examples": profiles.pick(VAL_GROUNDING, profile),
           "latents": profiles.pick(R.VAL_LOSS_IMAGES, profile), "seed": VAL_SEED}

    def compute():
        pipe, _ = model(BASE, profile)
        scale = pipe.scaling_factor
        return {"val_loss": R.val_loss(pipe.unet, pipe.text_encoder, pipe.objective, profile, scale),
                **val_grounding(pipe.unet, pipe.text_encoder, pipe.objective, profile, scale),
                **val_iou(pipe.unet, pipe.vae, pipe.text_encoder, pipe.objective, profile)}

    return checkpoints.cached_result(checkpoint_folder(BASE, profile),
                                     checkpoints.result_name("tc-validation", key), key, compute)


# ----------------------------------------------------------------------------- tasks and registration

def build(profile: str) -> torch.nn.Module:
    """The base's UNet, to be trained on: the shipped ``ldm-unet`` pipeline's (trained first if missing)."""
    pipe, _ = load_or_train(BASE, profile, progress=True)
    return pipe.unet.requires_grad_(True).train()


def export(denoiser: torch.nn.Module, profile: str) -> P.LatentDiffusionPipeline:
    """What is shipped: the base's pipeline around the trained UNet (the same VAE, text encoder, tokenizer and
    scheduler as ``ldm-unet``)."""
    return R.export(denoiser, profile, BASE)


def _task(name: str):
    def task(model, profile):
        config = CONFIGS[name][profiles.check(profile)]
        extra = config.extra
        data = training_data(name, profile)
        autoencoder = R.vae(profile)
        scale = float(autoencoder.config.scaling_factor)
        encoder = R.text_encoder(extra["text_encoder"], profile)
        objective = extra["objective"]
        scheduler = D.training_scheduler(objective)

        def batch_fn(step):
            return make_batch(data, step, config.batch_size, scale, extra["drop_caption"], config.seed)

        def loss_fn(m, batch):
            return grounded_loss(m, encoder, objective, scheduler, batch, extra["lambda_token"],
                                 extra["lambda_pixel"])

        def eval_fn(m):
            device = next(m.parameters()).device
            pipe = P.assemble(m, autoencoder.to(device), encoder.to(device), objective)
            generate = P.Generator(pipe, profiles.pick(R.EVAL_SAMPLING, profile))
            return {"val_loss": R.val_loss(m, encoder, objective, profile, scale),
                    **val_grounding(m, encoder, objective, profile, scale),
                    **val_iou(m, autoencoder, encoder, objective, profile),
                    **monitor.val_scores(generate, profile)}

        return loss_fn, batch_fn, eval_fn
    return task


def _register(name: str) -> None:
    register(Recipe(name, build=build, task=_task(name), configs=CONFIGS[name], model_class=P.LatentDiffusionPipeline,
                    data_seed=CONFIGS[name]["cpu"].seed, export=export, export_takes_profile=True, base=BASE))
    B.register_generator(name, functools.partial(generator, name))


def register_sweep(lambda_token: float, lambda_pixel: float = LAMBDA_PIXEL, replica: int = 1) -> str:
    """Register the full model with another lambda_token as a recipe (and a benchmark generator); its name."""
    name = sweep_name(lambda_token, replica) if lambda_pixel == LAMBDA_PIXEL else \
        f"{sweep_name(lambda_token, replica)}-pixel-{lambda_pixel:g}"
    if name not in CONFIGS:
        CONFIGS[name] = {p: sweep_config(lambda_token, p, lambda_pixel, replica) for p in profiles.PROFILES}
        _register(name)
    return name


# ----------------------------------------------------------------------------- generators and the benchmark

def model(name: str, profile: str | None = None) -> tuple[P.LatentDiffusionPipeline, dict]:
    """The trained pipeline of ``name`` (a recipe here, or the base), on the device the code picks."""
    pipe, manifest = load_or_train(name if name == BASE else _check_name(name), profile, progress=True)
    return pipe.to(pick_device()), manifest


def sampling_of(sampling: P.Sampling | None = None, profile: str | None = None) -> P.Sampling:
    """The sampler of every model here: the latent recipe's default one (20 steps, guidance 3) for its objective."""
    return (sampling or R.default_sampling(profile)).for_objective(R.OBJECTIVE)


def pipeline(name: str, profile: str | None = None, sampling: P.Sampling | None = None) -> P.Generator:
    pipe, _ = model(name, profile)
    return P.Generator(pipe, sampling_of(sampling, profile))


def settings(name: str, sampling: P.Sampling | None = None, profile: str | None = None) -> dict:
    return {"model": name, "sampling": sampling_of(sampling, profile).as_dict()}


def generator(name: str, profile: str | None = None, sampling: P.Sampling | None = None) -> B.Generator:
    """A benchmark generator for ``name`` (its pipeline is loaded only if the result is not cached)."""
    profile = profiles.check(profile) if profile else profiles.current()
    return B.Generator.of_checkpoint(name, profile, lambda: pipeline(name, profile, sampling),
                                     settings(name, sampling, profile))


def benchmark(name: str, profile: str | None = None, progress: bool = True, frechet: bool = True) -> dict:
    """The shared benchmark of one model (the base's is the latent chapter's own, read from its cache)."""
    if name == BASE:
        return R.benchmark(BASE, profile, progress=progress, frechet=frechet)
    gen = generator(_check_name(name), profile)
    return B.benchmark(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder, gen.settings,
                       progress, frechet)


# ----------------------------------------------------------------------------- what the latent space allows

def autoencoder_ceiling(profile: str | None = None, progress: bool = False) -> dict:
    """The benchmark's five-object prompts drawn by the world, sent through ``vae-long`` and back, then judged:
    the MG-k that a perfect denoiser of these latents would reach (whatever no model here can draw beyond it),
    cached next to the VAE's weights."""
    profile = profiles.check(profile) if profile else profiles.current()
    autoencoder = R.vae(profile)

    @torch.no_grad()
    def generate(prompts, seed):
        images = to_tensor(prompt_renders(list(prompts), seed)).to(pick_device())
        vae = autoencoder.to(images.device)
        return to_uint8(vae.decode(vae.encode(images).latent_dist.mode()).sample)

    return B.benchmark(generate, profile, checkpoint_folder(R.VAE, profile),
                       {"reference": "world renders through the autoencoder"}, progress, frechet=False,
                       groups=("multigen",))


# ----------------------------------------------------------------------------- the attention-mask IoU

def iou(name: str, split: str = "test", profile: str | None = None, threshold: str = "mean",
        index: int = G.NOISE_INDEX, prompts: int | None = None) -> dict:
    """The attention-mask IoU of ``name`` (a recipe here or the base) on the first multi-object prompts of
    ``split`` (:func:`text2image.evaluate.grounding.measure`), cached in its checkpoint folder."""
    profile = profiles.check(profile) if profile else profiles.current()
    name = name if name == BASE else _check_name(name)
    n = prompts or profiles.pick(IOU_PROMPTS, profile)
    folder = checkpoint_folder(name, profile)
    if not (folder / checkpoints.MANIFEST).is_file():
        load_or_train(name, profile)
    key = {"version": CACHE_VERSION, "profile": profile, "split": split, "prompts": n, "threshold": threshold,
           "index": index, "seed": G.NOISE_SEED, "blocks": list(TC.SUPERVISED)}

    def compute():
        pipe, _ = model(name, profile)
        examples = multi_object_examples(splits.check_split(split), 0, n)
        return G.measure(pipe.unet, pipe.vae, pipe.text_encoder, pipe.objective, examples, index,
                         threshold=G.check_threshold(threshold))

    return checkpoints.cached_result(folder, checkpoints.result_name("attention-iou", key), key, compute)


# ----------------------------------------------------------------------------- latency, in turns

LATENCY_REPEATS = {"smoke": 2, "cpu": 5, "gpu": 5}


def latencies(models: Sequence[str] = ABLATION, profile: str | None = None,
              repeats: int | None = None) -> dict[str, float]:
    """Seconds per image of each model's sampling (one call of the benchmark's first five-object prompts, the
    default sampler), timed in turns (so that a load that comes and goes weighs on all), the median kept;
    cached in the folder of the last model, keyed by every model's weights."""
    profile = profiles.check(profile) if profile else profiles.current()
    repeats = repeats or profiles.pick(LATENCY_REPEATS, profile)
    for name in models:
        if not (checkpoint_folder(name, profile) / checkpoints.MANIFEST).is_file():
            load_or_train(name, profile)
    key = {"version": CACHE_VERSION, "profile": profile, "models": list(models), "repeats": repeats,
           "weights": [checkpoints.weights_digest(checkpoint_folder(n, profile)) for n in models],
           "threads": torch.get_num_threads(), "device": str(pick_device()),
           "sampling": sampling_of(None, profile).as_dict()}

    def compute():
        texts = B.prompt_set(profile)["multigen"][:B.CHUNK]
        gens = {name: pipeline(name, profile) for name in models}
        for gen in gens.values():
            gen(texts, 0)  # warm-up
        timed: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(repeats):
            for name, gen in gens.items():
                started = time.perf_counter()
                gen(texts, 0)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timed[name].append((time.perf_counter() - started) / len(texts))
        return {name: statistics.median(v) for name, v in timed.items()}

    return checkpoints.cached_result(checkpoint_folder(models[-1], profile), checkpoints.result_name("latency", key),
                                     key, compute)


# ----------------------------------------------------------------------------- the ablation table

def object_accuracy(result: dict, profile: str | None = None) -> dict:
    """VISOR's object accuracy from a benchmark result: the share of the relation prompts' images in which
    both objects (with their colours) are found, the condition of the relation accuracy."""
    prompts, repeats = B.size("relation", profile)
    both = (result.get("relation") or {}).get("n", 0)
    return intervals.share(both, prompts * repeats).as_dict()


def ablation_rows(models: Sequence[str] = ABLATION, profile: str | None = None, split: str = "test",
                  latency: bool = True, progress: bool = False) -> list[dict]:
    """One row of numbers per model (the base first): MG-2 to MG-5 on the benchmark's five-object prompts,
    object accuracy, colour attribution and relation accuracy (each ``{k, n, p, lo, hi}``, Wilson 95 %), the
    Fréchet distance and its floor, the sampling latency (ms per image, timed in turns), and the attention-mask
    IoU per layer group on ``split`` (``{mean, lo, hi, n}``) with its paired change from the base's."""
    profile = profiles.check(profile) if profile else profiles.current()
    seconds = latencies(models, profile) if latency else {}
    before = iou(BASE, split, profile)
    rows = []
    for name in models:
        result = benchmark(name, profile, progress=progress)
        measured = iou(name, split, profile)
        token, pixel = weights(name)
        rows.append({
            "model": name, "method": method_of(name), "replica": replica_of(name),
            "lambda_token": token, "lambda_pixel": pixel,
            **{f"mg{k}": result["mg"][str(k)] for k in range(2, 6)},
            "object_accuracy": object_accuracy(result, profile),
            "colour_attribution": result["categories"].get("colour_attribution"),
            "relation": result["relation"],
            "frechet": (result.get("frechet") or {}).get("distance"),
            "frechet_floor": (result.get("frechet") or {}).get("floor"),
            "latency_ms": 1000 * seconds[name] if name in seconds else None,
            "iou": measured["groups"],
            "iou_change": {g: G.paired_difference(measured, before, g) for g in measured["groups"]},
        })
    return rows


SPREAD_KEYS = ("mg2", "mg3", "mg4", "mg5", "object_accuracy", "colour_attribution", "relation")


def over_seeds(rows: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per method, each share's mean over its seed replicas and their range: ``{method: {key: {mean, min, max,
    seeds}}}`` (the IoU of ``all`` and the Fréchet distance likewise)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        values = {k: [r[k]["p"] for r in mine if r.get(k)] for k in SPREAD_KEYS}
        values["iou"] = [r["iou"][G.ALL]["mean"] for r in mine]
        values["frechet"] = [r["frechet"] for r in mine if r["frechet"] is not None]
        out[method] = {k: {"mean": float(np.mean(v)), "min": float(min(v)), "max": float(max(v)), "seeds": len(v)}
                       for k, v in values.items() if v}
    return out


def precompute(profile: str | None = None, progress: bool = True, split: str = "test") -> None:
    """Every measurement the chapter reads from its caches: each model's benchmark and attention-mask IoU (the
    sweep's included), then the latencies of the ablation, timed in turns. Run it once, with the thread count of
    the chapter's kernels, before rendering."""
    profile = profiles.check(profile) if profile else profiles.current()
    report = print if progress else (lambda *a, **k: None)
    for name in (*ABLATION, *(n for n in names() if n not in ABLATION)):
        started = time.perf_counter()
        benchmark(name, profile, progress=progress)
        iou(name, split, profile)
        report(f"{name}: benchmark and attention-mask IoU ({time.perf_counter() - started:.0f} s)", flush=True)
    latencies(ABLATION, profile)
    report("latencies measured", flush=True)


for _name in RECIPES:
    _register(_name)
