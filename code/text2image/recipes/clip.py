"""Recipes of the CLIP chapter: ``clip`` (the baseline), ``clip-continued``, ``clip-negatives`` (NegCLIP) and
``clip-relation-twins``.

The batch of step ``s`` is a pure function of ``s`` (so a resumed run is
exact): training examples of the world, half of them followed by a *shape twin*
(the same caption with one shape changed, see :func:`splits.shape_twin`), so
that colours and counts alone cannot match captions to images.

``clip-negatives`` is NegCLIP: it starts from the trained baseline and goes on,
on examples the baseline never saw, with each caption's hard negatives
(relation reversed, attributes swapped between two objects) added as extra
texts, counted only as negatives. ``clip-continued`` is its control: the same
steps on the same examples, without negatives, so that the chapter can tell
what the negatives add to a longer training. ``clip-relation-twins`` is the same
fine-tuning with hard negative *images* as well: each relation example of a
batch comes with its relation twin (:func:`splits.relation_twin`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import torch

from text2image import profiles
from text2image.evaluate import clip as clip_eval
from text2image.models import clip as M
from text2image.recipes import Recipe, load_or_train, register
from text2image.train import TrainConfig
from text2image.world import splits
from text2image.world.render import render

EVAL_SPLIT = "val"
TWIN_SEED = 77
EVAL_SIZE = {"smoke": 200, "cpu": 600, "gpu": 2000}
EVAL_EVERY = {"smoke": 0, "cpu": 250, "gpu": 500}

CONFIGS = {
    "smoke": TrainConfig(steps=4, batch_size=16, lr=1e-3, warmup=1, checkpoint_every=1000, log_every=1,
                         weight_decay=0.1, betas=(0.9, 0.98), extra={"twins": 0.5}),
    "cpu": TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup=150, eval_every=EVAL_EVERY["cpu"],
                       checkpoint_every=100, log_every=10, weight_decay=0.1, betas=(0.9, 0.98),
                       extra={"twins": 0.5}),
    "gpu": TrainConfig(steps=12000, batch_size=256, lr=5e-4, warmup=500, eval_every=EVAL_EVERY["gpu"],
                       checkpoint_every=500, log_every=50, weight_decay=0.1, betas=(0.9, 0.98),
                       extra={"twins": 0.5}),
}


# The fine-tunings draw relation examples (the ones that hard negatives and twins are about) more often.
FINE_TUNE_MIX = {"single": 0.15, "count": 0.1, "list": 0.15, "relation": 0.6}


def _fine_tune(profile: str, steps: int, lr: float, warmup: int) -> TrainConfig:
    """NegCLIP's config: it goes on from the baseline, on the examples that follow the baseline's last step."""
    base = CONFIGS[profile]
    return replace(base, steps=steps, lr=lr, warmup=warmup,
                   extra={**base.extra, "first_step": base.steps, "mix": FINE_TUNE_MIX})


FINE_TUNE_CONFIGS = {"smoke": _fine_tune("smoke", 2, 1e-3, 1), "cpu": _fine_tune("cpu", 4000, 1e-3, 100),
                     "gpu": _fine_tune("gpu", 3000, 2e-4, 200)}
RELATION_TWIN_CONFIGS = {p: replace(c, extra={**c.extra, "relation_twins": True}) for p, c in FINE_TUNE_CONFIGS.items()}


def batch_examples(step: int, batch_size: int, twins: float = 0.0, relation_twins: bool = False,
                   mix: dict | None = None) -> list[splits.Example]:
    """The examples of training step ``step``: new training examples (of the kinds in ``mix``, by default
    the world's), then twins of the first ones.

    ``twins``: the share of the batch that is twins, each drawn from its own
    ``(seed, step, slot)`` stream: shape twins (:func:`splits.shape_twin`), or with
    ``relation_twins`` a relation twin (:func:`splits.relation_twin`) for each
    example that states a relation. An example without an allowed twin is
    skipped, so a batch is short of a twin only in the rarest case.
    """
    n_twins = int(round(batch_size * twins))
    n_base = batch_size - n_twins
    examples = splits.examples("train", step * n_base, (step + 1) * n_base, mix)
    found = []
    for k, e in enumerate(examples):  # the rare example with no allowed twin passes its turn to the next
        if len(found) == n_twins:
            break
        rng = np.random.default_rng([TWIN_SEED, step, k])
        twin = splits.relation_twin(e, rng) if relation_twins else None
        twin = twin or splits.shape_twin(e, rng)
        if twin is not None:
            found.append(twin)
    return examples + found


def batch(step: int, batch_size: int, negatives: bool, twins: float = 0.0, relation_twins: bool = False,
          mix: dict | None = None) -> dict:
    """Images, token ids and (optionally) hard negatives of training step ``step`` (see :func:`batch_examples`)."""
    examples = batch_examples(step, batch_size, twins, relation_twins, mix)
    images, _ = render([e.scene for e in examples], M.RESOLUTION)
    texts = [e.caption.text for e in examples]
    n_negatives = 0
    if negatives:
        extra = [t for e in examples for t in M.hard_negatives(e.caption, e.scene).values()]
        texts += extra
        n_negatives = len(extra)
    enc = M.tokens(texts)
    return {"pixel_values": M.pixels(images), **enc, "n_negatives": n_negatives}


def told_apart_without_shapes(batch_size: int, twins: float, steps: int = 20) -> float:
    """Share of the captions of a training batch that what they say *besides shapes* already singles out.

    What a caption says is its prompt (kind, count, relation, colour and size of
    each noun), whatever its sentence frame. A caption singled out without its
    shapes can be matched to its image without looking at any shape, so the
    contrastive loss gives it no reason to learn shapes.
    """
    singled = total = 0
    for step in range(steps):
        prompts = [e.prompt for e in batch_examples(step, batch_size, twins)]
        blind = [(p.kind, p.count, p.relation, tuple((s.colour, s.size) for s in p.specs)) for p in prompts]
        counts = Counter(blind)
        singled += sum(counts[b] == 1 for b in blind)
        total += len(blind)
    return singled / total


def relation_twins_per_batch(batch_size: int, twins: float, mix: dict | None = None, steps: int = 20) -> float:
    """How many relation twins a batch holds on average, when relation examples get one (:func:`batch_examples`)."""
    found = 0
    for step in range(steps):
        examples = batch_examples(step, batch_size, twins, relation_twins=True, mix=mix)
        n_base = batch_size - int(round(batch_size * twins))
        found += sum(t.prompt.relation != e.prompt.relation for e, t in zip(examples[:n_base], examples[n_base:]))
    return found / steps


def _task(configs: dict[str, TrainConfig], negatives: bool):
    def task(model, profile):
        config = configs[profiles.check(profile)]
        first = config.extra.get("first_step", 0)
        device = lambda: next(model.parameters()).device

        def batch_fn(step):
            b = batch(first + step, config.batch_size, negatives, config.extra.get("twins", 0.0),
                      config.extra.get("relation_twins", False), config.extra.get("mix"))
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


BASELINE = "clip"


def _build_from_baseline(profile: str):
    """NegCLIP starts from a trained CLIP: the baseline's shipped weights (trained first if missing)."""
    model, _ = load_or_train(BASELINE, profile, progress=True)
    return model.train()


register(Recipe(name=BASELINE, build=_build, task=_task(CONFIGS, negatives=False), configs=CONFIGS,
                model_class=M.CLIPModel))
# the fine-tunes: (configs, hard negatives), all going on from the baseline's shipped weights
FINE_TUNES = {"clip-continued": (FINE_TUNE_CONFIGS, False), "clip-negatives": (FINE_TUNE_CONFIGS, True),
              "clip-relation-twins": (RELATION_TWIN_CONFIGS, True)}
for _name, (_configs, _negatives) in FINE_TUNES.items():
    register(Recipe(name=_name, build=_build_from_baseline, task=_task(_configs, _negatives), configs=_configs,
                    model_class=M.CLIPModel, base=BASELINE))
