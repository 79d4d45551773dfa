"""Scenes of the shapes world: a few coloured shapes on a plain dark canvas.

A scene is a tuple of objects. Each object has a shape, a colour, a size
(``small`` or ``large``) and a centre ``(x, y)`` in normalised coordinates:
``x`` grows to the right and ``y`` grows *downwards* (image rows), both in
``[0, 1]``. The centre is the centroid of the shape, so an oracle that
measures the centroid of a blob measures the position we stored.

Placement rules keep the ground truth unambiguous:

* every shape lies inside its *extent* circle (radius ``extent(shape, size)``);
  extent circles stay ``EDGE`` away from the borders and ``GAP`` away from
  each other, so objects never touch and always form separate blobs;
* a scene requested with a spatial relation ("A left of B") puts B inside a
  cone of half-angle ``atan(CONE)`` around the named direction, so the
  relation holds with a clear margin and no other relation could be read.

Everything is drawn from a ``numpy.random.Generator``: the same seed gives
the same scene, bit for bit.

``CONCEPT_SHAPES`` are shapes the base world never draws (the star that the
pivotal-tuning chapter teaches a trained model): :func:`place`, the renderer
and, on request, the oracle know them, but no sampler, split, caption or
tokenizer word does, so the base world stays what the shipped models saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
CONCEPT_SHAPES = ("star",)  # never sampled: the new concept of the pivotal-tuning chapter
ALL_SHAPES = SHAPES + CONCEPT_SHAPES  # the base shapes keep their indices
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles",
           "diamond": "diamonds", "cross": "crosses", "star": "stars"}

# Six hues 60 degrees apart at the same saturation and value: every pair is far
# apart in RGB, and a hue survives blending with the neutral background (edges,
# blur), which is what the oracle reads.
COLOURS = {
    "red": (230, 34, 34),
    "yellow": (230, 230, 34),
    "green": (34, 230, 34),
    "cyan": (34, 230, 230),
    "blue": (34, 34, 230),
    "magenta": (230, 34, 230),
}
COLOUR_NAMES = tuple(COLOURS)
HUES = {"red": 0.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0, "blue": 240.0, "magenta": 300.0}
HUE_STEP = 360.0 / len(HUES)  # degrees between two neighbouring hues of the palette (a test checks the spacing)
BACKGROUND = (0, 0, 0)  # black: chroma zero, and the largest luma step to every colour

SIZES = ("small", "large")
RADIUS = {"small": 0.10, "large": 0.16}  # the size unit r, in canvas widths
# Extent of each shape in units of r (radius of the smallest centred circle that holds it).
# The star's outer radius is the triangle's circumradius: no extent grows, so render boxes stay the same.
EXTENT = {"circle": 1.0, "square": 0.82 * math.sqrt(2), "triangle": 1.2,
          "diamond": 1.15, "cross": math.hypot(1.05, 0.35), "star": 1.2}
GAP = 0.08    # minimum distance between two extent circles (2.6 px at 32 px)
EDGE = 0.03   # minimum distance between an extent circle and the border
CONE = 0.5    # |perpendicular offset| <= CONE * |offset along the relation|

RELATIONS = ("left", "right", "above", "below")
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}

MAX_OBJECTS = 5
# How many large objects fit next to the others, by number of objects. Found by
# experiment: within these limits the rejection sampler below finds a placement
# (tests/test_world_scene.py samples the tight cases); beyond them it often does not.
MAX_LARGE = {1: 1, 2: 2, 3: 3, 4: 3, 5: 1}

PLACEMENT_TRIES = 200  # restarts of a whole scene before giving up
CANDIDATES = 64        # candidate centres drawn at once for one object


class WorldError(ValueError):
    """A request the shapes world cannot satisfy (unknown word, too many objects, ...)."""


class Draws:
    """Scalar random draws taken in blocks from a ``numpy.random.Generator``.

    Python loops over single draws are slow through the Generator; this reads
    ``block`` uniforms at a time. The stream is still fixed by the seed.
    """

    def __init__(self, rng: np.random.Generator, block: int = 64):
        self.rng, self.block = rng, block
        self.buffer: list[float] = []
        self.position = 0

    def random(self) -> float:
        if self.position >= len(self.buffer):
            self.buffer, self.position = self.rng.random(self.block).tolist(), 0
        self.position += 1
        return self.buffer[self.position - 1]

    def uniforms(self, n: int) -> list[float]:
        return [self.random() for _ in range(n)] if n <= 8 else self.rng.random(n).tolist()

    def integers(self, low: int, high: int | None = None) -> int:
        """An integer in ``[low, high)`` (or ``[0, low)``), like ``Generator.integers``."""
        if high is None:
            low, high = 0, low
        return min(low + int(self.random() * (high - low)), high - 1)

    def pick(self, options):
        return options[self.integers(len(options))]

    def shuffle(self, items: list) -> None:
        for k in range(len(items) - 1, 0, -1):
            j = self.integers(k + 1)
            items[k], items[j] = items[j], items[k]


def draws(rng) -> Draws:
    return rng if isinstance(rng, Draws) else Draws(rng)


def extent(shape: str, size: str) -> float:
    return EXTENT[shape] * RADIUS[size]


@dataclass(frozen=True)
class Object:
    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def radius(self) -> float:
        return RADIUS[self.size]

    @property
    def extent(self) -> float:
        return extent(self.shape, self.size)

    def describe(self) -> str:
        return f"{self.size} {self.colour} {self.shape} at ({self.x:.2f}, {self.y:.2f})"


@dataclass(frozen=True)
class Scene:
    objects: tuple[Object, ...]

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):
        return iter(self.objects)

    def __getitem__(self, index: int) -> Object:
        return self.objects[index]


def _check(kind: str, value: str, allowed) -> str:
    """``value`` if the world knows it, else an error that lists what it knows."""
    if value not in allowed:
        raise WorldError(f"unknown {kind} {value!r}; the {kind}s are: {', '.join(allowed)}")
    return value


def check_shape(shape: str, shapes: Sequence[str] = SHAPES) -> str:
    """``shape`` if it is one of ``shapes`` (the base shapes unless told: captions never name a concept)."""
    return _check("shape", shape, shapes)


def check_colour(colour: str) -> str:
    return _check("colour", colour, COLOUR_NAMES)


def check_size(size: str) -> str:
    return _check("size", size, SIZES)


def check_relation(relation: str) -> str:
    return _check("relation", relation, RELATIONS)


def check_fits(sizes: Sequence[str]) -> None:
    """Raise a ``WorldError`` if objects of these sizes cannot all be placed."""
    n = len(sizes)
    if n == 0:
        raise WorldError("a scene needs at least one object")
    if n > MAX_OBJECTS:
        raise WorldError(f"{n} objects do not fit: a scene holds at most {MAX_OBJECTS}")
    large = sum(s == "large" for s in sizes)
    if large > MAX_LARGE[n]:
        raise WorldError(f"{n} objects with {large} large ones do not fit: "
                         f"with {n} objects at most {MAX_LARGE[n]} can be large")


def holds(a: Object | tuple[float, float], relation: str, b: Object | tuple[float, float]) -> bool:
    """Does ``a <relation> b`` hold, reading the dominant direction of the offset between centres?"""
    ax, ay = (a.x, a.y) if isinstance(a, Object) else a
    bx, by = (b.x, b.y) if isinstance(b, Object) else b
    dx, dy = bx - ax, by - ay  # from a to b
    if relation == "left":
        return dx > abs(dy)
    if relation == "right":
        return -dx > abs(dy)
    if relation == "above":
        return dy > abs(dx)
    if relation == "below":
        return -dy > abs(dx)
    raise WorldError(f"unknown relation {relation!r}; the relations are: {', '.join(RELATIONS)}")


# For "a <rel> b": the direction from a to b, and the perpendicular one.
DIRECTIONS = {"left": ((1.0, 0.0), (0.0, 1.0)), "right": ((-1.0, 0.0), (0.0, 1.0)),
              "above": ((0.0, 1.0), (1.0, 0.0)), "below": ((0.0, -1.0), (1.0, 0.0))}


def in_cone(ax: float, ay: float, bx: float, by: float, relation: str) -> bool:
    """Is b placed for ``a <relation> b`` with the generation margin?"""
    dx, dy = bx - ax, by - ay
    along, across = {"left": (dx, dy), "right": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[relation]
    return along > 0 and abs(across) <= CONE * along


def place(rng: np.random.Generator | Draws, items: Sequence[tuple[str, str, str]],
          relation: tuple[int, str, int] | None = None) -> Scene:
    """Place objects ``(shape, colour, size)`` on the canvas at random, following the rules above.

    ``relation = (i, "left", j)`` asks that object ``i`` be left of object ``j``.
    Objects are placed one by one, each at the first of ``CANDIDATES`` uniform
    centres that keeps its distances; a dead end restarts the scene. A concept
    shape (``"star"``) may be asked for: the samplers never ask.
    """
    for shape, colour, size in items:
        check_shape(shape, ALL_SHAPES), check_colour(colour), check_size(size)
    check_fits([size for _, _, size in items])
    if relation is not None:
        i, rel, j = relation
        check_relation(rel)
        if len(items) < 2:
            raise WorldError(f"the relation {rel!r} needs two objects; the scene has {len(items)}")
        if not (0 <= i < len(items) and 0 <= j < len(items)) or i == j:
            raise WorldError(f"the relation {relation} must link two different objects among {len(items)}")
    extents = [extent(shape, size) for shape, _, size in items]
    # Place the big ones first: they are the hard ones to fit.
    order = sorted(range(len(items)), key=lambda k: -extents[k])
    if relation is not None:  # the two related objects first, so the cone test has both ends
        i, _, j = relation
        order = [i, j] + [k for k in order if k not in (i, j)]
    n = len(items)
    rng = draws(rng)
    for _ in range(PLACEMENT_TRIES):
        u = rng.uniforms(2 * CANDIDATES * n)
        xy: list[tuple[float, float] | None] = [None] * n
        placed: list[int] = []
        if relation is not None and not _place_pair(u, extents, relation, xy, placed):
            continue
        for step, k in enumerate(order):
            if xy[k] is not None:
                continue
            low = EDGE + extents[k]
            span = 1 - 2 * low
            base = 2 * CANDIDATES * step
            for c in range(CANDIDATES):
                x = low + span * u[base + 2 * c]
                y = low + span * u[base + 2 * c + 1]
                for p in placed:
                    px, py = xy[p]
                    if (x - px) ** 2 + (y - py) ** 2 < (extents[k] + extents[p] + GAP) ** 2:
                        break
                else:
                    xy[k] = (x, y)
                    placed.append(k)
                    break
            else:
                break
        else:
            return Scene(tuple(Object(shape, colour, size, x, y)
                               for (shape, colour, size), (x, y) in zip(items, xy)))
    raise WorldError(f"could not place {len(items)} objects {[s for _, _, s in items]} "
                     f"after {PLACEMENT_TRIES} attempts")


def _place_pair(u: list[float], extents: list[float], relation: tuple[int, str, int],
                xy: list, placed: list) -> bool:
    """Place the two objects of ``a <rel> b`` together: first the offset inside the cone, then
    the pair anywhere it fits. Uses the uniforms of the first two placement steps."""
    i, rel, j = relation
    (ux, uy), (vx, vy) = DIRECTIONS[rel]
    low_a, low_b = EDGE + extents[i], EDGE + extents[j]
    near = extents[i] + extents[j] + GAP
    far = 1 - low_a - low_b
    for c in range(CANDIDATES):
        along = near + (far - near) * u[2 * CANDIDATES + 2 * c]
        across = (2 * u[2 * CANDIDATES + 2 * c + 1] - 1) * CONE * along
        if along * along + across * across < near * near:
            continue
        dx, dy = along * ux + across * vx, along * uy + across * vy
        x0, x1 = max(low_a, low_b - dx), min(1 - low_a, 1 - low_b - dx)
        y0, y1 = max(low_a, low_b - dy), min(1 - low_a, 1 - low_b - dy)
        if x0 > x1 or y0 > y1:
            continue
        x, y = x0 + (x1 - x0) * u[2 * c], y0 + (y1 - y0) * u[2 * c + 1]
        xy[i], xy[j] = (x, y), (x + dx, y + dy)
        placed += [i, j]
        return True
    return False


def random_sizes(rng: np.random.Generator | Draws, n: int, p_large: float = 0.4) -> list[str]:
    """Sizes for ``n`` objects, each large with probability ``p_large`` within the limits that fit."""
    check_fits(["small"] * n)
    rng = draws(rng)
    sizes = ["large" if rng.random() < p_large else "small" for _ in range(n)]
    while sum(s == "large" for s in sizes) > MAX_LARGE[n]:
        sizes[sizes.index("large")] = "small"
    return sizes


def random_scene(rng: np.random.Generator | Draws, n_objects: int | None = None) -> Scene:
    """A scene of 1 to 4 random objects (any colours, shapes and sizes that fit)."""
    rng = draws(rng)
    n = rng.integers(1, 5) if n_objects is None else n_objects
    sizes = random_sizes(rng, n)
    items = [(rng.pick(SHAPES), rng.pick(COLOUR_NAMES), s) for s in sizes]
    return place(rng, items)


def naive_overlap_rate(n_objects: int = 3, trials: int = 10_000, seed: int = 0, size: str = "large") -> float:
    """Share of scenes that would have touching or overlapping objects if centres were drawn
    uniformly with no placement rule (what the rules above prevent)."""
    rng = np.random.default_rng(seed)
    e = max(EXTENT[s] for s in SHAPES) * RADIUS[size]
    xy = rng.uniform(e, 1 - e, size=(trials, n_objects, 2))
    d = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1)
    d[:, np.arange(n_objects), np.arange(n_objects)] = np.inf
    return float(np.mean((d < 2 * e).any(axis=(1, 2))))
