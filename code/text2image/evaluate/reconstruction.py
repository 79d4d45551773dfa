"""Reconstruction measurements of the autoencoders: PSNR, oracle agreement (does the oracle read
back exactly the input's scene?), the first error it finds, shape confusions, codebook use.

They run on the fixed test scenes of :mod:`text2image.world.tensors` and go
through the one interface of :mod:`text2image.models.autoencoders`, so they
judge every family the same way; :func:`measure` caches them next to a
recipe's checkpoint.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from text2image import checkpoints, profiles, recipes
from text2image.models import autoencoders as ae
from text2image.models.autoencoders import codebook_size, codes, reconstruct, unwrap
from text2image.world.tensors import RESOLUTION, TEST_IMAGES, fixed_set, test_set, to_uint8


# ----------------------------------------------------------------------------- the oracle (adapter)

def _oracle_parse() -> Callable | None:
    """The oracle as ``images -> list of objects per image``, or ``None`` if the world has none (metric left out)."""
    try:
        from text2image.world import oracle
    except ImportError:
        return None
    if hasattr(oracle, "parse_batch"):
        return oracle.parse_batch
    if hasattr(oracle, "parse"):
        return lambda images: [oracle.parse(image) for image in images]
    return None


def _objects(parsed: Any) -> list:
    if hasattr(parsed, "objects"):
        return list(parsed.objects)
    return list(parsed)


def _attr(obj: Any, name: str):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def same_scene(parsed: Any, scene: Any, tolerance: float = 1.0 / RESOLUTION) -> bool:
    """Same objects (shape, colour, size) at the same places (within ``tolerance`` canvas units)."""
    found, truth = _objects(parsed), _objects(scene)
    if len(found) != len(truth):
        return False
    left = list(found)
    for obj in truth:
        key = (_attr(obj, "shape"), _attr(obj, "colour"), _attr(obj, "size"))
        match = next((k for k, f in enumerate(left)
                      if (_attr(f, "shape"), _attr(f, "colour"), _attr(f, "size")) == key
                      and abs(_attr(f, "x") - obj.x) <= tolerance and abs(_attr(f, "y") - obj.y) <= tolerance), None)
        if match is None:
            return False
        left.pop(match)
    return True


def oracle_agreement(reconstructions: torch.Tensor, scenes: Sequence) -> float | None:
    """Share of reconstructions in which the oracle reads back exactly the input's scene."""
    parse = _oracle_parse()
    if parse is None:
        return None
    parsed = parse(to_uint8(reconstructions))
    return float(np.mean([same_scene(found, scene) for found, scene in zip(parsed, scenes)]))


ERRORS = ("exact", "count", "colour", "shape", "size", "position")


def matched(parsed: Any, scene: Any) -> list[tuple[Any, Any]]:
    """Pairs ``(true object, object found)``: each true object, in turn, takes the nearest object left."""
    found, pairs = list(_objects(parsed)), []
    for obj in _objects(scene):
        k = min(range(len(found)), key=lambda i: (_attr(found[i], "x") - obj.x) ** 2 + (_attr(found[i], "y") - obj.y) ** 2)
        pairs.append((obj, found.pop(k)))
    return pairs


def first_error(parsed: Any, scene: Any, tolerance: float = 1.0 / RESOLUTION) -> str:
    """What the oracle gets wrong first in a reconstruction: the number of objects, else (matching each
    true object to the nearest one found) a colour, a shape, a size, a position; ``"exact"`` if nothing."""
    if len(_objects(parsed)) != len(_objects(scene)):
        return "count"
    errors = set()
    for obj, f in matched(parsed, scene):
        for key in ("colour", "shape", "size"):
            if _attr(f, key) != getattr(obj, key):
                errors.add(key)
        if abs(_attr(f, "x") - obj.x) > tolerance or abs(_attr(f, "y") - obj.y) > tolerance:
            errors.add("position")
    return next((e for e in ERRORS[2:] if e in errors), "exact")


def oracle_errors(model: torch.nn.Module, n: int | None = None, profile: str | None = None) -> dict[str, float]:
    """Share of test reconstructions by first error (:func:`first_error`); empty without an oracle."""
    parse = _oracle_parse()
    if parse is None:
        return {}
    scenes, images, _ = test_set(n, profile)
    parsed = parse(to_uint8(reconstruct(model, images)))
    verdicts = [first_error(p, s) for p, s in zip(parsed, scenes)]
    return {e: verdicts.count(e) / len(verdicts) for e in ERRORS}


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: torch.nn.Module, n: int | None = None, profile: str | None = None,
             split: str = "test") -> dict[str, float]:
    """PSNR, oracle agreement (when the oracle exists) and, for discrete models, codebook usage/perplexity,
    on the fixed ``split`` ("test" for the chapters' tables, "val" while training)."""
    model = unwrap(model).eval()
    scenes, images, _ = fixed_set(split, n, profile)
    rec = reconstruct(model, images)
    metrics = {"psnr": float(ae.psnr(images, rec).mean()), "mse": float(((images - rec) / 2).pow(2).mean())}
    agreement = oracle_agreement(rec, scenes)
    if agreement is not None:
        metrics["oracle_agreement"] = agreement
    grid = codes(model, images)
    if grid is not None:
        metrics.update({f"codebook_{k}": v for k, v in ae.codebook_stats(grid, codebook_size(model)).items()})
    return metrics


def shape_confusions(model: torch.nn.Module, n: int | None = None, profile: str | None = None) -> list[list]:
    """Which shapes the oracle misreads in reconstructions: ``[size, true shape, shape read, count]``,
    most frequent first, over the test scenes whose first error is a shape (objects matched to the nearest found)."""
    parse = _oracle_parse()
    if parse is None:
        return []
    scenes, images, _ = test_set(n, profile)
    counts: dict[tuple, int] = {}
    for found, scene in zip(parse(to_uint8(reconstruct(model, images))), scenes):
        if first_error(found, scene) != "shape":
            continue
        for obj, read in matched(found, scene):
            if _attr(read, "shape") != obj.shape:
                key = (obj.size, obj.shape, _attr(read, "shape"))
                counts[key] = counts.get(key, 0) + 1
    return [[*key, count] for key, count in sorted(counts.items(), key=lambda kv: -kv[1])]


def count_confusions(confusions: Sequence[Sequence], size: str | None = None, truth: str | None = None,
                     read: str | None = None) -> int:
    """How many misread objects in :func:`shape_confusions` rows match the given size, true shape and shape read."""
    wanted = (size, truth, read)
    return sum(row[3] for row in confusions if all(w is None or w == v for w, v in zip(wanted, row[:3])))


MEASURE_VERSION = 2  # bump when evaluate(), oracle_errors() or shape_confusions() change what they report


def measure(name: str, model: torch.nn.Module, profile: str | None = None) -> dict[str, Any]:
    """:func:`evaluate`, the oracle's first errors (``"errors"``) and its shape confusions for a recipe's
    model, cached next to its weights: the chapter reads the file instead of re-running the oracle."""
    profile = profiles.check(profile) if profile else profiles.current()
    n = profiles.pick(TEST_IMAGES, profile)
    folder = recipes.checkpoint_folder(name, profile)
    return checkpoints.cached_result(
        folder, f"measured-{n}.json", [n, MEASURE_VERSION],
        lambda: {**evaluate(model, n), "errors": oracle_errors(model, n),
                 "shape_confusions": shape_confusions(model, n)})
