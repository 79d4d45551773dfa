"""A Fréchet distance in a feature space the project trained: the image tower of the shipped CLIP.

FID compares the mean and covariance of Inception features of generated and
real images; no Inception weights can be downloaded here, and Inception never
saw this world anyway. The baseline CLIP's image embeddings know exactly what
matters in it (shapes, colours, places), so they stand in for Inception, and
torchmetrics' ``FrechetInceptionDistance`` does the arithmetic on them.

Every distance comes with its *noise floor*: the distance between two sets of
world renders of the same prompts, which a perfect generator would reach.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from text2image import checkpoints, recipes
from text2image.models import clip as M
from text2image.world.tensors import prompt_renders

FEATURE_MODEL = "clip"
REAL_SEEDS = (7_000_001, 7_000_002)  # the two sets of world renders: the reference, and the floor's second sample


class Features(torch.nn.Module):
    """Images (N, 3, H, W) uint8 -> unit-norm CLIP image embeddings; ``num_features`` tells torchmetrics their size."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        self.num_features = model.config.projection_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return M.embed_images(self.model, images.permute(0, 2, 3, 1).cpu().numpy())


def clip_features(profile: str) -> tuple[Features, str]:
    """The feature network of the profile's baseline CLIP, and the digest of its weights."""
    model, _ = recipes.load_or_train(FEATURE_MODEL, profile, progress=False)
    return Features(model), checkpoints.weights_digest(recipes.checkpoint_folder(FEATURE_MODEL, profile))


def distance(features: Callable, a: np.ndarray, b: np.ndarray, batch: int = 512) -> float:
    """The Fréchet distance between the features of two sets of uint8 images (N, H, W, 3)."""
    # Imported here: torchmetrics takes 2 s to import, and a chapter that reads its
    # distances from the cache (every chapter re-rendered from shipped checkpoints) never computes one.
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=features, normalize=False)
    for images, real in ((a, True), (b, False)):
        for start in range(0, len(images), batch):
            metric.update(torch.from_numpy(np.ascontiguousarray(images[start:start + batch])).permute(0, 3, 1, 2),
                          real=real)
    return float(metric.compute())


def against_world(features: Callable, images: np.ndarray, prompts: Sequence[str]) -> dict[str, float]:
    """The distance of generated ``images`` to world renders of their ``prompts``, and the floor: the
    distance between two independent sets of world renders of the same prompts."""
    reference = prompt_renders(list(prompts), REAL_SEEDS[0])
    second = prompt_renders(list(prompts), REAL_SEEDS[1])
    return {"distance": distance(features, reference, images), "floor": distance(features, reference, second)}
