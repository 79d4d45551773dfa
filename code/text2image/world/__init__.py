"""The shapes world: scenes, rendering, captions, splits, the oracle, the torch datasets, and the
tensor side every image model uses (:mod:`.tensors`: images to and from tensors, a step's batch,
the fixed test set).

The bottom layer of the package: it imports nothing from text2image but
``profiles``, ``paths`` and the tokenizer (``text``). Every model of the book
is trained on it; the oracle (:mod:`.oracle`) scores what they draw. The main
entry points::

    from text2image.world import example, parse, render_scenes
    ex = example("train", 0)                    # a scene and its caption
    images, masks = render_scenes([ex.scene])   # (1, 32, 32, 3) uint8, (1, 5, 32, 32) bool
    parse(images[0])                            # back to objects

(``text2image.world.render`` is the rendering module; its function ``render`` is
exported here as ``render_scenes`` so the two names do not clash.)
"""

from text2image.world.captions import Caption, Prompt, Spec
from text2image.world.captions import parse as parse_caption
from text2image.world.oracle import parse, parse_batch
from text2image.world.render import render as render_scenes
from text2image.world.render import render_one
from text2image.world.scene import (ALL_SHAPES, COLOUR_NAMES, COLOURS, CONCEPT_SHAPES, SHAPES, SIZES, Object,
                                    Scene, WorldError, place, random_scene)
from text2image.world.splits import SPLITS, Example, example, examples

__all__ = ["ALL_SHAPES", "Caption", "COLOUR_NAMES", "COLOURS", "CONCEPT_SHAPES", "Example", "Object", "Prompt",
           "SHAPES", "SIZES", "SPLITS", "Scene", "Spec", "WorldError", "example", "examples", "parse", "parse_batch",
           "parse_caption", "place", "random_scene", "render_scenes", "render_one"]
