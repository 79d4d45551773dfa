"""The networks of the book and their losses, one module per family (``neuron``, ``autoencoders``
with its perceptual network, ``clip``, ``dalle``, ``gan``, ``diffusion``, ``text_encoder``, the caption
encoder the last two share, and ``latent``, the UNet and DiT of latent diffusion).

No recipe, no cache, no chapter here: a model module may import the world and
the tokenizer (``text``), nothing above them.
"""

from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def seeded(make: Callable[[], T], seed: int = 0) -> T:
    """``make()`` under a fixed torch seed, the global generator left as it was: a model's initial
    weights never depend on what ran before it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()
