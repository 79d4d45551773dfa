"""Captioned scenes by split: train, validation, test, and held-out compositions.

Example ``i`` of split ``s`` is drawn from ``numpy.random.default_rng(SEED_BASE[s] + i)``:
the seed ranges of the splits never meet, and the same ``(split, index)`` always
gives the same scene and caption, whatever batch it is generated in.

Compositional generalisation needs things the training set never shows:

* ``HELDOUT_PAIRS``: colour-shape pairs that no training, validation or test
  image contains (every colour and every shape still appears, just not together);
* ``HELDOUT_RELATIONS``: ordered shape relations that no training caption states
  ("a circle to the left of a square", or the same fact said the other way
  round); the reverse order is seen.

``heldout_pairs`` and ``heldout_relations`` are made of exactly those, and
``multigen`` holds five-object prompts in the style of TokenCompose's MultiGen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from text2image.world import captions as C
from text2image.world.scene import (COLOUR_NAMES, INVERSE, MAX_LARGE, RELATIONS, SHAPES, Scene,
                                    WorldError, draws, place, random_sizes)

SPLITS = ("train", "val", "test", "heldout_pairs", "heldout_relations", "multigen")
SPAN = 1_000_000_000  # indices per split
SEED_BASE = {name: k * SPAN for k, name in enumerate(SPLITS)}

HELDOUT_PAIRS = (("red", "triangle"), ("yellow", "square"), ("blue", "cross"))  # (colour, shape)
HELDOUT_RELATIONS = (("circle", "left", "square"), ("triangle", "above", "cross"))  # a rel b

DEFAULT_MIX = {"single": 0.25, "count": 0.15, "list": 0.3, "relation": 0.3}
MAX_TRAIN_OBJECTS = 4
P_SIZE_WORD = 0.5  # share of captions that name sizes


@dataclass(frozen=True)
class Example:
    split: str
    index: int
    scene: Scene
    caption: C.Caption

    @property
    def prompt(self) -> C.Prompt:
        return self.caption.prompt


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise WorldError(f"unknown split {split!r}; the splits are: {', '.join(SPLITS)}")
    return split


def seed(split: str, index: int) -> int:
    check_split(split)
    if not 0 <= index < SPAN:
        raise WorldError(f"index {index} is outside [0, {SPAN}) for split {split!r}")
    return SEED_BASE[split] + index


def canonical(a: str, rel: str, b: str) -> tuple[str, str, str]:
    """The same fact said with ``left`` or ``above``: (square, right, circle) -> (circle, left, square)."""
    return (b, INVERSE[rel], a) if rel in ("right", "below") else (a, rel, b)


def pairs_of(prompt: C.Prompt) -> set[tuple[str, str]]:
    return {(s.colour, s.shape) for s in prompt.specs}


def relation_of(prompt: C.Prompt) -> tuple[str, str, str] | None:
    if prompt.relation is None:
        return None
    i, rel, j = prompt.relation
    return canonical(prompt.specs[i].shape, rel, prompt.specs[j].shape)


def is_heldout(prompt: C.Prompt) -> bool:
    """Does the prompt contain a held-out colour-shape pair or state a held-out relation?"""
    return bool(pairs_of(prompt) & set(HELDOUT_PAIRS)) or relation_of(prompt) in HELDOUT_RELATIONS


def _pick(rng, options: Sequence):
    return rng.pick(options)


def _distinct_pairs(rng: np.random.Generator, n: int, shapes: Sequence[str] | None = None):
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        shape = shapes[len(pairs)] if shapes is not None else _pick(rng, SHAPES)
        pair = (_pick(rng, COLOUR_NAMES), shape)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def sample_prompt(rng, kind: str, n_objects: int | None = None):
    """A random prompt of ``kind`` and the sizes of its objects: ``(prompt, items)``.

    ``items`` lists ``(shape, colour, size)`` for the scene, in the prompt's order.
    ``rng`` is a ``numpy.random.Generator`` or a :class:`~text2image.world.scene.Draws`.
    """
    rng = draws(rng)
    if kind == "single":
        (colour, shape), = _distinct_pairs(rng, 1)
        size = _pick(rng, ("small", "large"))
        named = size if rng.random() < P_SIZE_WORD else None
        return C.Prompt("single", (C.Spec(shape, colour, named),)), [(shape, colour, size)]
    if kind == "count":
        n = n_objects or rng.integers(2, MAX_TRAIN_OBJECTS + 1)
        (colour, shape), = _distinct_pairs(rng, 1)
        sizes = random_sizes(rng, n)
        return C.Prompt("count", (C.Spec(shape, colour),), n), [(shape, colour, s) for s in sizes]
    if kind in ("list", "relation"):
        n = 2 if kind == "relation" else n_objects or rng.integers(2, MAX_TRAIN_OBJECTS + 1)
        if kind == "relation" and n_objects not in (None, 2):
            raise WorldError(f"a relation links two objects, not {n_objects}")
        pairs = _distinct_pairs(rng, n)
        sizes = random_sizes(rng, n)
        name_sizes = rng.random() < P_SIZE_WORD
        specs = tuple(C.Spec(shape, colour, size if name_sizes else None)
                      for (colour, shape), size in zip(pairs, sizes))
        relation = (0, _pick(rng, RELATIONS), 1) if kind == "relation" else None
        return (C.Prompt(kind, specs, 1, relation),
                [(shape, colour, size) for (colour, shape), size in zip(pairs, sizes)])
    raise WorldError(f"unknown prompt kind {kind!r}; the kinds are: {', '.join(C.KINDS)}")


def _heldout_relation_prompt(rng: np.random.Generator):
    a, rel, b = _pick(rng, HELDOUT_RELATIONS)
    if rng.random() < 0.5:  # say it the other way round half of the time
        a, rel, b = b, INVERSE[rel], a
    while True:
        (ca, _), (cb, _) = _distinct_pairs(rng, 2, [a, b])
        if not {(ca, a), (cb, b)} & set(HELDOUT_PAIRS):
            break
    sizes = random_sizes(rng, 2)
    name_sizes = rng.random() < P_SIZE_WORD
    specs = (C.Spec(a, ca, sizes[0] if name_sizes else None), C.Spec(b, cb, sizes[1] if name_sizes else None))
    return C.Prompt("relation", specs, 1, (0, rel, 1)), [(a, ca, sizes[0]), (b, cb, sizes[1])]


def _multigen_prompt(rng: np.random.Generator):
    shapes = list(SHAPES)
    rng.shuffle(shapes)  # Draws.shuffle
    while True:
        pairs = _distinct_pairs(rng, len(shapes), shapes)
        if not set(pairs) & set(HELDOUT_PAIRS):
            break
    sizes = random_sizes(rng, len(shapes))
    assert sum(s == "large" for s in sizes) <= MAX_LARGE[len(shapes)]
    specs = tuple(C.Spec(shape, colour) for colour, shape in pairs)
    return C.Prompt("list", specs), [(shape, colour, size) for (colour, shape), size in zip(pairs, sizes)]


def example(split: str, index: int, mix: Mapping[str, float] | None = None) -> Example:
    """Example ``index`` of ``split``: a scene and its caption, the same on every call."""
    rng = draws(np.random.default_rng(seed(split, index)))
    mix = dict(mix or DEFAULT_MIX)
    kinds = [k for k in C.KINDS if mix.get(k, 0) > 0]
    if not kinds or any(k not in C.KINDS for k in mix):
        raise WorldError(f"a mix gives weights to some of the kinds {', '.join(C.KINDS)}, not {mix}")
    cumulative = np.cumsum([mix[k] for k in kinds]).tolist()
    draw = rng.random() * cumulative[-1]
    kind = kinds[min(sum(draw >= c for c in cumulative), len(kinds) - 1)]
    for _ in range(1000):
        if split == "heldout_relations":
            prompt, items = _heldout_relation_prompt(rng)
        elif split == "multigen":
            prompt, items = _multigen_prompt(rng)
        else:
            prompt, items = sample_prompt(rng, kind)
            wanted = split == "heldout_pairs"
            if wanted != bool(pairs_of(prompt) & set(HELDOUT_PAIRS)) or relation_of(prompt) in HELDOUT_RELATIONS:
                continue
        scene = place(rng, items, prompt.relation)
        return Example(split, index, scene, C.write(prompt, rng))
    raise WorldError(f"no acceptable prompt for split {split!r} after 1000 draws")


def examples(split: str, start: int, stop: int, mix: Mapping[str, float] | None = None) -> list[Example]:
    return [example(split, i, mix) for i in range(start, stop)]


def shape_twin(example: Example, rng) -> Example | None:
    """The same prompt with one noun's shape changed, its objects placed afresh (``None`` if no change is allowed).

    A twin and its original share kind, colours, sizes and count; among the
    words that describe the scene, only a shape tells their captions apart.
    Put side by side in a batch, they make a contrastive model look at shapes,
    which random batches never force (there, colours and counts alone often
    tell the captions apart). The twin is never a held-out composition, and two
    of its nouns never name the same colour and shape; when every change would
    break one of these rules ("a red circle, a red square, a red cross and a
    red diamond" can only become a held-out red triangle), there is no twin.
    """
    prompt = example.prompt

    def changed(k: int, shape: str) -> C.Prompt:
        return replace(prompt, specs=tuple(replace(s, shape=shape) if i == k else s for i, s in enumerate(prompt.specs)))

    def allowed(twin: C.Prompt) -> bool:
        return len(pairs_of(twin)) == len(twin.specs) and not is_heldout(twin)

    if not any(allowed(changed(k, shape)) for k, spec in enumerate(prompt.specs) for shape in SHAPES
               if shape != spec.shape):
        return None
    rng = draws(rng)
    while True:  # a random noun and a random new shape, until the change is allowed (one exists)
        k = int(rng.integers(0, len(prompt.specs)))
        twin = changed(k, _pick(rng, [s for s in SHAPES if s != prompt.specs[k].shape]))
        if allowed(twin):
            break
    items = [(twin.specs[i].shape, o.colour, o.size) for o, i in zip(example.scene, _spec_of_objects(prompt))]
    return Example(example.split, example.index, place(rng, items, prompt.relation), C.write(twin, rng))


def relation_twin(example: Example, rng) -> Example | None:
    """The same two objects with the relation reversed ("left of" becomes "right of"), placed afresh.

    ``None`` for an example that states no relation, or when the reversed fact
    is a held-out relation. Beside its original in a batch, only where the two
    objects stand tells the captions apart: the image encoder must keep it.
    """
    prompt = example.prompt
    if prompt.relation is None:
        return None
    i, rel, j = prompt.relation
    twin = replace(prompt, relation=(i, INVERSE[rel], j))
    if is_heldout(twin):
        return None
    rng = draws(rng)
    items = [(o.shape, o.colour, o.size) for o in example.scene]
    return Example(example.split, example.index, place(rng, items, twin.relation), C.write(twin, rng))


def _spec_of_objects(prompt: C.Prompt) -> list[int]:
    """The spec each scene object answers (scenes list their objects in spec order)."""
    return [0] * prompt.count if prompt.kind == "count" else list(range(len(prompt.specs)))


def scene_for(prompt: C.Prompt, rng) -> Scene:
    """A new scene that ``prompt`` describes: its named colours and sizes kept, the others drawn as the
    world draws them (within what fits), the objects placed at random under the prompt's relation.

    What the world itself would draw for a prompt: the benchmark's ceiling, and the
    real images its Fréchet distance compares generated ones against.
    """
    rng = draws(rng)
    specs = [prompt.specs[i] for i in _spec_of_objects(prompt)]
    sizes = [spec.size or drawn for spec, drawn in zip(specs, random_sizes(rng, len(specs)))]
    for k, spec in enumerate(specs):  # named large objects leave less room: drawn large ones shrink first
        if sum(s == "large" for s in sizes) <= MAX_LARGE.get(len(sizes), 0):
            break
        if spec.size is None and sizes[k] == "large":
            sizes[k] = "small"
    colours = [spec.colour or _pick(rng, COLOUR_NAMES) for spec in specs]
    items = [(spec.shape, colour, size) for spec, colour, size in zip(specs, colours, sizes)]
    return place(rng, items, prompt.relation)
