"""Sampling the GAN: one pass of the generator per image, from a noise vector and the prompt.

A GAN has no sampling steps and no guidance: an image is ``G(z, caption)``,
with ``z`` drawn from a generator seeded with ``seed`` alone (the same prompts
and seed give the same images, whatever ran before). The generator runs in
evaluation mode, its batch normalisation using the statistics it gathered in
training, so an image never depends on the other prompts of its batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from text2image.models import gan as G
from text2image.pipelines.prompts import SamplingError, encode_prompts
from text2image.world.tensors import RESOLUTION, to_uint8


def noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    return torch.randn((n, z_dim), generator=torch.Generator().manual_seed(int(seed)))


class GanPipeline:
    """A text-to-image generator for the benchmark: ``pipeline(prompts, seed) -> uint8 (P, 32, 32, 3)``."""

    def __init__(self, generator: G.Generator):
        self.generator = generator.eval()

    @torch.no_grad()
    def tensors(self, prompts: Sequence[str], seed: int) -> torch.Tensor:
        """Images (P, 3, 32, 32) in [-1, 1]."""
        ids, mask = encode_prompts(list(prompts))
        device = next(self.generator.parameters()).device
        z = noise(len(ids), self.generator.z_dim, seed).to(device)
        return self.generator(z, ids.to(device), mask.to(device))

    def __call__(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        if isinstance(prompts, str):
            raise SamplingError("pass a list of prompts, not one string")
        if not len(prompts):
            return np.zeros((0, RESOLUTION, RESOLUTION, 3), np.uint8)
        return to_uint8(self.tensors(prompts, seed))
