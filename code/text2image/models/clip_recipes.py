"""Recipes of the CLIP chapter: ``clip`` (the baseline) and ``clip-negatives`` (NegCLIP-style).

Both see exactly the same images and captions: the batch of step ``s`` holds
examples ``s * B`` to ``s * B + B - 1`` of the world's training split (a pure
function of the step, so a resumed run is exact). ``clip-negatives`` adds, for
each caption that has them, its hard negatives (relation reversed, attributes
swapped between two objects) as extra texts, counted only as negatives.
"""

from __future__ import annotations

import functools

import torch

from text2image import clip_eval, profiles
from text2image.models import clip as M
from text2image.recipes import Recipe, register
from text2image.train import TrainConfig
from text2image.world import splits
from text2image.world.render import render

EVAL_SPLIT = "val"
EVAL_SIZE = {"smoke": 200, "cpu": 600, "gpu": 2000}
EVAL_EVERY = {"smoke": 0, "cpu": 100, "gpu": 500}

CONFIGS = {
    "smoke": TrainConfig(steps=4, batch_size=16, lr=1e-3, warmup=1, checkpoint_every=1000, log_every=1,
                         weight_decay=0.1, betas=(0.9, 0.98)),
    "cpu": TrainConfig(steps=450, batch_size=128, lr=1e-3, warmup=50, eval_every=EVAL_EVERY["cpu"],
                       checkpoint_every=100, log_every=10, weight_decay=0.1, betas=(0.9, 0.98)),
    "gpu": TrainConfig(steps=12000, batch_size=256, lr=5e-4, warmup=500, eval_every=EVAL_EVERY["gpu"],
                       checkpoint_every=500, log_every=50, weight_decay=0.1, betas=(0.9, 0.98)),
}


def batch(step: int, batch_size: int, negatives: bool) -> dict:
    """Images, captions and (optionally) hard negatives of training step ``step``."""
    examples = splits.examples("train", step * batch_size, (step + 1) * batch_size)
    images, _ = render([e.scene for e in examples], M.RESOLUTION)
    texts = [e.caption.text for e in examples]
    n_negatives = 0
    if negatives:
        extra = [t for e in examples for t in M.hard_negatives(e.caption, e.scene).values()]
        texts += extra
        n_negatives = len(extra)
    enc = M.tokens(texts)
    return {"pixel_values": M.pixels(images), **enc, "n_negatives": n_negatives}


def _task(negatives: bool):
    def task(model, profile):
        config = CONFIGS[profiles.check(profile)]
        device = lambda: next(model.parameters()).device

        def batch_fn(step):
            b = batch(step, config.batch_size, negatives)
            return {k: v.to(device()) if torch.is_tensor(v) else v for k, v in b.items()}

        def loss(m, b):
            value, metrics = M.loss_fn(m, b)
            return value, {**metrics, "negatives": float(b["n_negatives"])}

        def eval_fn(m):
            return clip_eval.training_metrics(m, eval_pool(profile))

        return loss, batch_fn, eval_fn
    return task


def eval_pool(profile: str | None = None) -> clip_eval.Pool:
    """The validation examples that the training-time evaluation (and the manifest) uses."""
    return clip_eval.pool(EVAL_SPLIT, profiles.pick(EVAL_SIZE, profile))


def _build(profile: str):
    return M.build(M.SIZES[profiles.check(profile)])


for _name, _negatives in (("clip", False), ("clip-negatives", True)):
    register(Recipe(name=_name, build=_build, task=_task(_negatives), configs=CONFIGS,
                    model_class=M.CLIPModel))
