"""Torch datasets of captioned scenes, generated deterministically and cached on disk.

Item ``i`` of ``ShapesDataset(split, size, resolution, start)`` is example
``start + i`` of the split (see :mod:`text2image.world.splits`): the same
image, caption and masks on every machine. Examples are generated in chunks of
``CHUNK`` (rendered together, which is fast), and each chunk is cached as
``data/world/<hash>.npz``, the hash covering everything that shapes its
content (split, chunk, resolution, caption mix, the world's constants and
``CACHE_VERSION``). ``data/`` is ignored by git.

An item is a dict of tensors, ready for the default ``DataLoader`` collation:

* ``image``: float32 (3, H, W) in [0, 1];
* ``caption``: the text; ``input_ids``, ``attention_mask``: (MAX_LENGTH,) from :mod:`text2image.text`;
* ``masks``: bool (MAX_OBJECTS, H, W), one exact mask per object (empty past ``n_objects``);
* ``objects``: float32 (MAX_OBJECTS, 5): shape, colour and size indices, x, y (-1 past ``n_objects``);
* ``token_masks``: bool (MAX_LENGTH, H, W): for each token that is a noun, the union of the
  masks of the objects it names (what TokenCompose supervises attention with); ``noun_tokens``:
  bool (MAX_LENGTH,) marks those tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from text2image import paths
from text2image.world import scene as S
from text2image.world import splits as SP
from text2image.world.render import SAMPLES, render

CACHE_VERSION = "1"
CHUNK = 1024
FIXED_SIZES = {"val": 2048, "test": 10_000, "heldout_pairs": 2048, "heldout_relations": 2048, "multigen": 1024}


def cache_dir():
    return paths.cache_dir("world")  # data/world in a writable clone


def fingerprint() -> str:
    """A digest of the world's constants: cached chunks made with other rules are not reused.

    Only the base shapes count: the datasets never hold a concept shape, and adding one must not
    invalidate the caches."""
    state = {"shapes": S.SHAPES, "colours": S.COLOURS, "background": S.BACKGROUND, "radius": S.RADIUS,
             "extent": {shape: S.EXTENT[shape] for shape in S.SHAPES}, "gap": S.GAP, "edge": S.EDGE,
             "cone": S.CONE, "max_large": S.MAX_LARGE,
             "heldout": [SP.HELDOUT_PAIRS, SP.HELDOUT_RELATIONS], "seeds": SP.SEED_BASE,
             "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generate_chunk(split: str, start: int, stop: int, resolution: int, mix: Mapping[str, float] | None = None):
    """Arrays for examples ``start`` to ``stop - 1`` of ``split`` (see the module's docstring)."""
    from text2image import text

    examples = SP.examples(split, start, stop, mix)
    images, masks = render([e.scene for e in examples], resolution)
    n, L = len(examples), text.MAX_LENGTH
    objects = np.full((n, S.MAX_OBJECTS, 5), -1, dtype=np.float32)
    token_objects = np.zeros((n, L), dtype=np.uint8)  # bit k: the token names object k
    for i, e in enumerate(examples):
        for k, o in enumerate(e.scene.objects):
            objects[i, k] = (S.SHAPES.index(o.shape), S.COLOUR_NAMES.index(o.colour), S.SIZES.index(o.size), o.x, o.y)
        for g in e.caption.nouns:
            token_objects[i, g.token_index] = sum(1 << k for k in g.objects)
    captions = [e.caption.text for e in examples]
    ids = text.encode(captions, return_tensors="np")
    return {"images": images, "masks": masks, "objects": objects, "token_objects": token_objects,
            "captions": np.array(captions), "input_ids": ids["input_ids"].astype(np.int16),
            "attention_mask": ids["attention_mask"].astype(np.int8)}


class ShapesDataset(Dataset):
    """Captioned scenes ``start`` to ``start + size - 1`` of ``split`` at ``resolution`` px."""

    def __init__(self, split: str = "train", size: int = 10_000, resolution: int = 32, start: int = 0,
                 mix: Mapping[str, float] | None = None, cache: bool = True, keep_chunks: int = 4):
        SP.check_split(split)
        if size <= 0 or start < 0 or start + size > SP.SPAN:
            raise S.WorldError(f"examples {start} to {start + size - 1} are outside split {split!r}")
        self.split, self.size, self.resolution, self.start = split, size, resolution, start
        self.mix = dict(mix) if mix else None
        self.cache = cache
        self.keep_chunks = keep_chunks
        self._chunks: OrderedDict[int, dict] = OrderedDict()

    def __len__(self) -> int:
        return self.size

    def _range(self, chunk: int) -> tuple[int, int]:
        """Examples of ``chunk`` that this dataset uses (a small dataset does not make a whole chunk)."""
        return max(chunk * CHUNK, self.start), min((chunk + 1) * CHUNK, self.start + self.size)

    def chunk_path(self, chunk: int):
        key = json.dumps([fingerprint(), self.split, self._range(chunk), self.resolution, SAMPLES,
                          sorted((self.mix or SP.DEFAULT_MIX).items())])
        return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"

    def _chunk(self, chunk: int) -> dict:
        if chunk in self._chunks:
            self._chunks.move_to_end(chunk)
            return self._chunks[chunk]
        path = self.chunk_path(chunk)
        arrays = None
        if self.cache and path.is_file():
            try:
                with np.load(path) as stored:
                    arrays = {k: stored[k] for k in stored.files}
            except (OSError, ValueError):  # a broken file: make it again
                arrays = None
        if arrays is None:
            arrays = generate_chunk(self.split, *self._range(chunk), self.resolution, self.mix)
            if self.cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, **arrays)
                os.replace(tmp, path)
        self._chunks[chunk] = arrays
        while len(self._chunks) > self.keep_chunks:
            self._chunks.popitem(last=False)
        return arrays

    def arrays(self, index: int) -> dict:
        """The raw arrays of item ``index`` (numpy, uint8 image)."""
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size}")
        index %= self.size
        absolute = self.start + index
        chunk = absolute // CHUNK
        row = absolute - self._range(chunk)[0]
        arrays = self._chunk(chunk)
        return {k: v[row] for k, v in arrays.items()}

    def __getitem__(self, index: int) -> dict:
        a = self.arrays(index)
        masks = torch.from_numpy(a["masks"].copy())
        bits = torch.from_numpy(a["token_objects"].astype(np.int64))
        named = ((bits[:, None] >> torch.arange(masks.shape[0])[None, :]) & 1).bool()  # (L, K)
        token_masks = (named[:, :, None, None] & masks[None]).any(dim=1)
        return {
            "image": torch.from_numpy(a["images"].copy()).permute(2, 0, 1).float() / 255.0,
            "caption": str(a["captions"]),
            "input_ids": torch.from_numpy(a["input_ids"].astype(np.int64)),
            "attention_mask": torch.from_numpy(a["attention_mask"].astype(np.int64)),
            "masks": masks,
            "n_objects": int((a["objects"][:, 0] >= 0).sum()),
            "objects": torch.from_numpy(a["objects"].copy()),
            "token_masks": token_masks,
            "noun_tokens": bits > 0,
        }

    def example(self, index: int) -> SP.Example:
        """The scene and caption objects of item ``index`` (regenerated; cheap)."""
        return SP.example(self.split, self.start + index % self.size, self.mix)

    def column(self, name: str) -> np.ndarray:
        """One array for all items, e.g. ``column("images")`` (N, H, W, 3) uint8."""
        first, last = self.start // CHUNK, (self.start + self.size - 1) // CHUNK
        return np.concatenate([self._chunk(c)[name] for c in range(first, last + 1)])

    def images(self) -> np.ndarray:
        return self.column("images")


def fixed(split: str, resolution: int = 32, size: int | None = None) -> ShapesDataset:
    """The book's fixed evaluation set of ``split`` (``val``, ``test``, ``heldout_*``, ``multigen``)."""
    if split not in FIXED_SIZES:
        raise S.WorldError(f"no fixed set for split {split!r}; there are: {', '.join(FIXED_SIZES)}")
    return ShapesDataset(split, size or FIXED_SIZES[split], resolution)
