"""Scores of generated images against their prompts, read by the oracle.

``score(prompt, image)`` parses the image with :mod:`text2image.world.oracle`
and returns a :class:`Verdict`:

* GenEval-style checks, by prompt kind: *single object* (the shape is there)
  and *colours* (a shape of the right colour is there) for one-object prompts;
  *counting* (exactly ``n`` objects of that colour and shape); *two objects*
  (both shapes are there) and *colour attribution* (both shapes with their own
  colours) for two-object lists; *position* (both objects, with their colours,
  and the relation holds) for relation prompts;
* ``found`` for MG-k: how many of the prompted objects (shape and colour) the
  image holds, each detected object counting for one prompted object at most;
* ``relation``: for relation prompts where both objects are found, whether the
  relation holds (``None`` otherwise), which is VISOR's conditional accuracy.

``summary(verdicts)`` averages them: one accuracy per category, ``overall``
(mean of the categories present, as GenEval), MG-1 to MG-5 and relation accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from text2image.evaluate import intervals
from text2image.world import captions as C
from text2image.world import oracle
from text2image.world.scene import SHAPES, Object, holds

CATEGORIES = ("single_object", "two_objects", "counting", "colours", "position", "colour_attribution")


@dataclass(frozen=True)
class Verdict:
    prompt: C.Prompt
    detected: tuple[Object, ...]
    checks: dict[str, bool]
    found: int
    wanted: int
    relation: bool | None = None
    sizes: bool | None = None  # named sizes right, among the objects found (None if no size named)
    matches: tuple[tuple[int, int], ...] = field(default=())  # (spec index, detected index)

    @property
    def correct(self) -> bool:
        """All the GenEval-style checks of this prompt pass."""
        return all(self.checks.values())


def as_prompt(prompt, shapes: Sequence[str] = SHAPES) -> C.Prompt:
    if isinstance(prompt, C.Prompt):
        return C.check_prompt(prompt, shapes)
    if isinstance(prompt, C.Caption):
        return prompt.prompt
    if isinstance(prompt, str):
        return C.parse(prompt).prompt
    raise TypeError(f"a prompt is a Prompt, a Caption or a string, not {type(prompt).__name__}")


def match(specs: Sequence[C.Spec], detected: Sequence[Object], colour: bool = True,
          size: bool = False) -> list[tuple[int, int]]:
    """The largest one-to-one matching of specs to detected objects (shape, and colour / size if asked)."""
    if not specs or not detected:
        return []
    ok = np.array([[o.shape == s.shape and (not colour or s.colour is None or o.colour == s.colour)
                    and (not size or s.size is None or o.size == s.size) for o in detected] for s in specs])
    rows, cols = linear_sum_assignment(-ok.astype(float))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]


def judge(prompt, detected: Sequence[Object], shapes: Sequence[str] = SHAPES) -> Verdict:
    """The verdict on objects already read from an image (``shapes``: those the prompt may name, e.g.
    ``ALL_SHAPES`` for the concept's)."""
    prompt = as_prompt(prompt, shapes)
    detected = tuple(detected)
    checks: dict[str, bool] = {}
    relation = sizes = None
    if prompt.kind == "count":
        spec = prompt.specs[0]
        n = sum(o.shape == spec.shape and spec.colour in (None, o.colour) for o in detected)
        checks["counting"] = n == prompt.count
        found = min(n, prompt.count)
        pairs = []
    else:
        pairs = match(prompt.specs, detected)
        found = len(pairs)
        shapes_found = len(match(prompt.specs, detected, colour=False))
        both = found == len(prompt.specs)
        if prompt.kind == "single":
            checks["single_object"] = shapes_found == 1
            checks["colours"] = found == 1
        elif prompt.kind == "list" and len(prompt.specs) == 2:
            checks["two_objects"] = shapes_found == 2
            checks["colour_attribution"] = both
        elif prompt.kind == "relation":
            i, rel, j = prompt.relation
            where = dict(pairs)
            if i in where and j in where:
                relation = holds(detected[where[i]], rel, detected[where[j]])
            checks["position"] = bool(both and relation)
        named = [(s, d) for s, d in pairs if prompt.specs[s].size is not None]
        if named:
            sizes = all(detected[d].size == prompt.specs[s].size for s, d in named)
    return Verdict(prompt, detected, checks, found, prompt.n_objects, relation, sizes, tuple(pairs))


def score(prompt, image: np.ndarray) -> Verdict:
    """Read ``image`` (H, W, 3) with the oracle and judge it against ``prompt`` (Prompt, Caption or text)."""
    return judge(prompt, oracle.parse(image))


def score_batch(prompts: Sequence, images: np.ndarray) -> list[Verdict]:
    """``score`` for many images (N, H, W, 3) at once."""
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
    return [judge(p, found) for p, found in zip(prompts, oracle.parse_batch(np.asarray(images)))]


def mg(verdicts: Iterable[Verdict], k: int) -> float | None:
    """MG-k: share of images, among prompts with at least ``k`` objects, holding at least ``k`` of them."""
    pool = [v for v in verdicts if v.wanted >= k]
    return sum(v.found >= k for v in pool) / len(pool) if pool else None


def summary(verdicts: Sequence[Verdict]) -> dict[str, float | int | None]:
    """Accuracy per GenEval category, ``overall``, ``mg1``..``mg5``, ``relation`` accuracy and counts."""
    out: dict[str, float | int | None] = {}
    present = []
    for category in CATEGORIES:
        pool = [v.checks[category] for v in verdicts if category in v.checks]
        out[category] = sum(pool) / len(pool) if pool else None
        out[f"n_{category}"] = len(pool)
        if pool:
            present.append(out[category])
    out["overall"] = sum(present) / len(present) if present else None
    for k in range(1, 6):
        out[f"mg{k}"] = mg(verdicts, k)
    related = [v.relation for v in verdicts if v.relation is not None]
    out["relation"] = sum(related) / len(related) if related else None
    out["n_relation"] = len(related)
    return out


def overall_share(summed: dict) -> dict:
    """The ``overall`` of a :func:`summary` with its 95 % interval, as the benchmark gives its own
    (:func:`intervals.mean_of` of each category's Wilson interval)."""
    return intervals.mean_of([intervals.share(round(summed[c] * summed[f"n_{c}"]), summed[f"n_{c}"])
                              for c in CATEGORIES if summed[f"n_{c}"]])
