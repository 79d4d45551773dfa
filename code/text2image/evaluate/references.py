"""The three reference rows of every generative table, as generators the benchmark can call.

* ``world``: the world's own renders of each prompt, a new scene per seed
  (the ceiling: the oracle must read them all right);
* ``retrieval``: the training image whose caption lies closest to the prompt
  in the text space of the shipped CLIP (what memorising the training set
  buys: strong where a training caption says the same, weak on held-out
  compositions, which no training caption says);
* ``random``: a random training image (the floor).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from text2image import profiles, recipes
from text2image.evaluate import benchmark as B
from text2image.models import clip as M
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, prompt_renders

TRAINING_POOL = {"smoke": 256, "cpu": 20_000, "gpu": 100_000}  # training examples the two last rows draw from
RETRIEVAL_MODEL = "clip"


@functools.lru_cache(maxsize=2)
def training_pool(n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The first ``n`` training captions and their images."""
    examples = splits.examples("train", 0, n)
    images, _ = render([e.scene for e in examples], RESOLUTION)
    return tuple(e.caption.text for e in examples), images


class RandomTraining:
    """A random training image for each prompt, whatever it says."""

    def __init__(self, n: int):
        self.images = training_pool(n)[1]

    def __call__(self, prompts: list[str], seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.images[rng.integers(0, len(self.images), len(prompts))]


class Retrieval:
    """For each prompt, the training image whose caption is nearest in CLIP's text space (cosine)."""

    def __init__(self, model, n: int):
        self.model = model.eval()
        captions, self.images = training_pool(n)
        self.keys = M.embed_texts(self.model, list(captions))

    @torch.no_grad()
    def __call__(self, prompts: list[str], seed: int) -> np.ndarray:
        queries = M.embed_texts(self.model, prompts)
        return self.images[(queries @ self.keys.T).argmax(dim=1).numpy()]


def _world(profile: str) -> B.Generator:
    return B.Generator("world", lambda: prompt_renders, recipes.checkpoint_folder(RETRIEVAL_MODEL, profile),
                       {"reference": "world"})


def _retrieval(profile: str) -> B.Generator:
    n = profiles.pick(TRAINING_POOL, profile)

    def make():
        model, _ = recipes.load_or_train(RETRIEVAL_MODEL, profile, progress=False)
        return Retrieval(model, n)
    return B.Generator("retrieval", make, recipes.checkpoint_folder(RETRIEVAL_MODEL, profile),
                       {"reference": "retrieval", "pool": n})


def _random(profile: str) -> B.Generator:
    n = profiles.pick(TRAINING_POOL, profile)
    return B.Generator("random", lambda: RandomTraining(n), recipes.checkpoint_folder(RETRIEVAL_MODEL, profile),
                       {"reference": "random", "pool": n})


REFERENCES = {"world": _world, "retrieval": _retrieval, "random": _random}
for _name, _factory in REFERENCES.items():
    B.register_generator(_name, _factory)
