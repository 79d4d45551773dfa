"""The concept star: the few images textual inversion learns it from, and scenes that put it in context.

The star (``scene.CONCEPT_SHAPES``) is a shape no split, caption or tokenizer
word of the base world holds, so a model trained on the base world has never
seen one. The pivotal-tuning chapter teaches it from a handful of images, as
DreamBooth and textual inversion do from a few photographs, then asks for it in
new contexts ("a small blue <star> above a red circle") to see whether the
learned concept composes with what the model already knew. The caption word of
the star is the chapter's placeholder token, so it is a parameter here: the
world's vocabulary never learns it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from text2image.world import captions as C
from text2image.world.render import render
from text2image.world.scene import (COLOUR_NAMES, RELATIONS, SHAPES, SIZES, Object, Scene, WorldError,
                                    draws, place)
from text2image.world.splits import HELDOUT_PAIRS, scene_for

STAR = "star"
MIN_EXAMPLES, MAX_EXAMPLES = 4, 8  # as few images as the method papers learn a concept from
TRAINING_SEED = 20_240_617  # any fixed number: the same few images on every machine
PLACEHOLDER = "<star>"  # how the prompt texts write the concept unless told another word
SPREAD = 0.15  # least distance between the centres of two training stars, in canvas widths
SPREAD_TRIES = 100  # placements drawn for one star before giving up


@dataclass(frozen=True)
class ConceptImages:
    """Scenes of the concept and their renders: ``images`` (N, H, W, 3) uint8, ``masks`` (N, H, W) bool."""
    scenes: tuple[Scene, ...]
    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.scenes)

    def captions(self, word: str = PLACEHOLDER) -> list[str]:
        """Each image's caption in the world's style, the star written ``word``: "a small red <star>". Size
        and colour are named, so a word learned from these captions has no reason to hold either."""
        return [C.text_of(_noun_phrase(C.Spec(o.shape, o.colour, o.size), word)) for o in (s[0] for s in self.scenes)]


def training_examples(n: int = 6, seed: int = TRAINING_SEED, resolution: int = 32) -> ConceptImages:
    """``n`` (4 to 8) single-star scenes and their renders, the images the concept is learned from.

    Colours go through the palette in a shuffled order (all different up to six), sizes alternate
    from a random start, and positions are drawn by :func:`~text2image.world.scene.place` until each
    centre lies ``SPREAD`` away from the earlier ones, so no attribute but the shape is shared by the
    images and the concept is not learned as "a star in that corner".
    """
    if not MIN_EXAMPLES <= n <= MAX_EXAMPLES:
        raise WorldError(f"the concept is learned from {MIN_EXAMPLES} to {MAX_EXAMPLES} images, not {n}")
    rng = draws(np.random.default_rng(seed))
    colours = list(COLOUR_NAMES)
    rng.shuffle(colours)
    first = rng.integers(len(SIZES))
    scenes: list[Scene] = []
    for k in range(n):
        item = (STAR, colours[k % len(colours)], SIZES[(first + k) % len(SIZES)])
        for _ in range(SPREAD_TRIES):
            scene = place(rng, [item])
            if all(math.dist((scene[0].x, scene[0].y), (s[0].x, s[0].y)) >= SPREAD for s in scenes):
                break
        else:
            raise WorldError(f"no place {SPREAD} away from the other stars after {SPREAD_TRIES} draws")
        scenes.append(scene)
    images, masks = render(scenes, resolution, max_objects=1)
    return ConceptImages(tuple(scenes), images, masks[:, 0])


@dataclass(frozen=True)
class ConceptPrompt:
    """A prompt that puts the star beside a base object: its ``prompt`` (specs and relation, the star
    first) and a ``scene`` the world draws for it (the reference an edited model's image is judged by)."""
    prompt: C.Prompt
    scene: Scene

    def text(self, word: str = PLACEHOLDER) -> str:
        """The prompt in words, the star written ``word``: "a small blue <star> above a red circle", or
        "a large red <star>" for a prompt of the star alone."""
        star = self.prompt.specs[0]
        if self.prompt.relation is None:
            return C.text_of(_noun_phrase(star, word))
        other, (_, relation, _) = self.prompt.specs[1], self.prompt.relation
        phrase = C.RELATION_PHRASES[relation][0]
        return C.text_of([*_noun_phrase(star, word), *phrase, *_noun_phrase(other, other.shape)])


def _noun_phrase(spec: C.Spec, noun: str) -> list[str]:
    return ["a", *(w for w in (spec.size, spec.colour) if w is not None), noun]


def attribute_prompts(n: int, seed: int = 0) -> list[ConceptPrompt]:
    """``n`` prompts "a <size> <colour> <star>" with their scenes, the twelve colour-size pairs in turn.

    Half the pairs are shown by the training images (each colour there has one size) and half are not:
    a model that learned the examples' sizes with the shape draws a red star at the size of the red example,
    whatever the prompt asks. Positions are drawn by :func:`~text2image.world.scene.place` from ``seed``.
    """
    if n < 1:
        raise WorldError(f"ask for at least one prompt, not {n}")
    rng = draws(np.random.default_rng(seed))
    pairs = [(c, s) for c in COLOUR_NAMES for s in SIZES]
    out = []
    for k in range(n):
        colour, size = pairs[k % len(pairs)]
        out.append(ConceptPrompt(C.Prompt("single", (C.Spec(STAR, colour, size),)),
                                 place(rng, [(STAR, colour, size)])))
    return out


def relation_prompts(n: int, seed: int = 0) -> list[ConceptPrompt]:
    """``n`` prompts "a <size> <colour> <star> <relation> a <size> <colour> <base shape>" with their scenes.

    The relation, the other shape and every colour and size are drawn from ``seed``; the two colours
    differ, so a colour names one object, and the other object is never a held-out colour-shape pair
    (a failure must be the star's, not a composition the base model never saw). Scenes are placed by :func:`~text2image.world.splits.scene_for`,
    the sampler of the base world, so the relation holds with the world's margin.
    """
    if n < 1:
        raise WorldError(f"ask for at least one prompt, not {n}")
    rng = draws(np.random.default_rng(seed))
    out = []
    for _ in range(n):
        star_colour = rng.pick(COLOUR_NAMES)
        other_shape = rng.pick(SHAPES)
        other_colour = rng.pick([c for c in COLOUR_NAMES
                                 if c != star_colour and (c, other_shape) not in HELDOUT_PAIRS])
        specs = (C.Spec(STAR, star_colour, rng.pick(SIZES)), C.Spec(other_shape, other_colour, rng.pick(SIZES)))
        prompt = C.Prompt("relation", specs, 1, (0, rng.pick(RELATIONS), 1))
        out.append(ConceptPrompt(prompt, scene_for(prompt, rng)))
    return out


def overlap_with_star(resolution: int = 32) -> dict[str, float]:
    """``{base shape: IoU of its mask with the star's}``, both centred, averaged over the two sizes: which word of
    the base world already draws the pixels closest to a star's (a class word to start an inversion from)."""
    out = {}
    for shape in SHAPES:
        ious = []
        for size in SIZES:
            scenes = [Scene((Object(s, COLOUR_NAMES[0], size, 0.5, 0.5),)) for s in (shape, STAR)]
            _, masks = render(scenes, resolution, max_objects=1)
            a, b = masks[0, 0], masks[1, 0]
            ious.append(float((a & b).sum() / (a | b).sum()))
        out[shape] = sum(ious) / len(ious)
    return out
