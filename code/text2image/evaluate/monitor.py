"""The monitoring of every text-to-image recipe trained from scratch, on ``val`` only (``test`` is the
benchmark's): draws of a fixed set of validation prompts, the oracle's verdict per category, and how varied
the draws of one prompt are against the world's own (mode collapse shows as a diversity near 0).

The chapter on GANs, diffusion and flow matching introduced it; the latent-diffusion recipes monitor the
same way, so that their curves of score against training step can be read beside the pixel-space ones.
A generator here is the benchmark's: ``generate(prompts, seed) -> uint8 (P, 32, 32, 3)``.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from text2image import profiles
from text2image.evaluate import benchmark as B
from text2image.evaluate import verdicts
from text2image.world import splits
from text2image.world.tensors import prompt_renders

EVAL_SEED = 1717
VAL_PROMPTS = {"smoke": 4, "cpu": 48, "gpu": 256}  # validation prompts of the monitoring, a quarter per kind
VAL_SAMPLES = 2                                    # images per validation prompt (diversity needs two)


@functools.lru_cache(maxsize=8)
def val_prompts(n: int) -> tuple[str, ...]:
    """``n`` distinct validation captions, a quarter of each kind (one object, counting, two objects listed,
    a relation): the kinds the benchmark's categories are read from."""
    kinds = (("single", None), ("count", None), ("list", 2), ("relation", 2))
    per_kind = max(1, n // len(kinds))
    found: dict[tuple, list[str]] = {k: [] for k in kinds}
    index = 0
    while any(len(v) < per_kind for v in found.values()):
        example = splits.example("val", index)
        prompt = example.prompt
        for kind, objects in kinds:
            box = found[(kind, objects)]
            if (prompt.kind == kind and (objects is None or len(prompt.specs) == objects)
                    and len(box) < per_kind and example.caption.text not in box):
                box.append(example.caption.text)
        index += 1
    return tuple(p for box in found.values() for p in box)


def pixel_spread(images: np.ndarray) -> np.ndarray:
    """Per prompt, the mean absolute pixel difference (in [0, 1]) between two of its images: (P, N, H, W, 3) -> (P,)."""
    x = images.astype(np.float32) / 255.0
    n = x.shape[1]
    if n < 2:
        return np.zeros(len(x))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return np.mean([np.abs(x[:, i] - x[:, j]).mean(axis=(1, 2, 3)) for i, j in pairs], axis=0)


def world_draws(prompts: Sequence[str], n: int, seed: int = EVAL_SEED) -> np.ndarray:
    """``n`` world renders of each prompt (new scenes each): (P, n, 32, 32, 3)."""
    return np.stack([prompt_renders(list(prompts), seed + 1000 * k) for k in range(n)], axis=1)


def draws(generate: Callable, prompts: Sequence[str], n: int, seed: int) -> np.ndarray:
    """``n`` images of each prompt, one call per draw (seeds ``seed .. seed + n - 1``): (P, n, 32, 32, 3)."""
    return np.stack([B.check_images(generate(list(prompts), seed + k), prompts) for k in range(n)], axis=1)


def category_shares(judged: Sequence[verdicts.Verdict]) -> dict[str, float]:
    """The share of each benchmark category's checks that pass, for the categories the verdicts have."""
    out = {}
    for category in verdicts.CATEGORIES:
        checks = [v.checks[category] for v in judged if category in v.checks]
        if checks:
            out[category] = float(np.mean(checks))
    return out


def val_scores(generate: Callable, profile: str) -> dict[str, float]:
    """The monitoring: per-category shares, the share of correct images, and the diversity of the draws of a
    prompt relative to the world's (1: as varied as the world; 0: one image per prompt, mode collapse)."""
    prompts = list(val_prompts(profiles.pick(VAL_PROMPTS, profile)))
    images = draws(generate, prompts, VAL_SAMPLES, EVAL_SEED)
    judged = verdicts.score_batch([p for p in prompts for _ in range(VAL_SAMPLES)], images.reshape(-1, 32, 32, 3))
    world = pixel_spread(world_draws(prompts, VAL_SAMPLES))
    return {**{f"val_{k}": v for k, v in category_shares(judged).items()},
            "val_correct": float(np.mean([B.correct(v) for v in judged])),
            "val_diversity": float(pixel_spread(images).mean() / max(world.mean(), 1e-9))}
