"""The tensor side of the world, shared by every image model: images to and from tensors, the
images of a training step, and the fixed test set, with the resolution and data seeds they use.

Images travel as ``(N, H, W, 3)`` uint8 arrays in the world (what the oracle
and the figures read) and as ``(N, 3, H, W)`` float tensors in ``[-1, 1]`` in
the models. A step's batch is a pure function of ``(seed, step)``, so a resumed
training run sees exactly the images it would have seen.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from text2image import profiles
from text2image.world import captions, splits
from text2image.world.render import render
from text2image.world.scene import random_scene

RESOLUTION = 32
TRAIN_SEED = 4        # data seed of every autoencoder's training batches
TEST_SEED = 1_000_003  # a disjoint stream for the test scenes
VAL_SEED = 3_000_017   # and another for the validation scenes that training runs are monitored on
TEST_IMAGES = {"smoke": 32, "cpu": 2048, "gpu": 4096}  # the size of the test set the chapters measure on


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


FIXED_SEEDS = {"test": TEST_SEED, "val": VAL_SEED}


@functools.lru_cache(maxsize=8)
def _fixed_set(split: str, n: int) -> tuple[tuple, np.ndarray, np.ndarray]:
    scenes = scenes_at(FIXED_SEEDS[split], 0, n)
    images, masks = render(scenes, RESOLUTION)
    return tuple(scenes), images, masks


def fixed_set(split: str, n: int | None = None, profile: str | None = None) -> tuple[list, torch.Tensor, np.ndarray]:
    """The fixed ``"test"`` or ``"val"`` scenes, their images in [-1, 1] and their masks (never trained on).

    Training runs are monitored on ``val``; ``test`` is kept for the chapters' final tables.
    """
    if split not in FIXED_SEEDS:
        raise ValueError(f"no fixed set {split!r}; the fixed sets are: {', '.join(FIXED_SEEDS)}")
    n = n or profiles.pick(TEST_IMAGES, profile)
    scenes, images, masks = _fixed_set(split, n)
    return list(scenes), to_tensor(images), masks


def test_set(n: int | None = None, profile: str | None = None) -> tuple[list, torch.Tensor, np.ndarray]:
    """The fixed test scenes (see :func:`fixed_set`)."""
    return fixed_set("test", n, profile)


def val_set(n: int | None = None, profile: str | None = None) -> tuple[list, torch.Tensor, np.ndarray]:
    """The fixed validation scenes (see :func:`fixed_set`)."""
    return fixed_set("val", n, profile)


def prompt_renders(prompts: list[str], seed: int) -> np.ndarray:
    """A new world scene for each prompt (drawn from ``(seed, position)``), rendered: uint8 (N, 32, 32, 3)."""
    scenes = [splits.scene_for(captions.parse(text).prompt, np.random.default_rng([seed, i]))
              for i, text in enumerate(prompts)]
    images, _ = render(scenes, RESOLUTION)
    return images
