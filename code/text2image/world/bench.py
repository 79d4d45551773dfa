"""Benchmarks of the shapes world: generation speed and oracle accuracy. They print their numbers.

``python -m text2image bench`` calls them; the chapter uses :func:`oracle_table`.
:func:`shape_accuracy` measures the oracle shape by shape on single-object renders, which is how a
new shape (the concept star) is shown to be read as well as the others.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from text2image.world import degrade, oracle, splits
from text2image.world.render import render
from text2image.world.scene import ALL_SHAPES, COLOUR_NAMES, SIZES, Scene, place

CLEAN_TOLERANCE = 0.5    # pixels: a clean render must give every centre to half a pixel
DEGRADED_TOLERANCE = 0.03  # canvas widths (1 px at 32, 2 px at 64) under degradations


def same_scene(truth, found, tolerance: float) -> bool:
    """Same objects (shape, colour, size), each centre within ``tolerance`` canvas widths."""
    if len(truth) != len(found):
        return False
    if not truth:
        return True
    d = np.array([[np.hypot(a.x - b.x, a.y - b.y) for b in found] for a in truth])
    rows, cols = linear_sum_assignment(d)
    return all((truth[i].shape, truth[i].colour, truth[i].size) == (found[j].shape, found[j].colour, found[j].size)
               and d[i, j] <= tolerance for i, j in zip(rows, cols))


def scenes_per_second(n: int = 2000, resolution: int = 32, split: str = "train") -> float:
    """Captioned scenes with masks generated per second (sampling, captions, rendering)."""
    start = time.perf_counter()
    examples = splits.examples(split, 0, n)
    render([e.scene for e in examples], resolution)
    return n / (time.perf_counter() - start)


def oracle_accuracy(n: int = 10_000, resolution: int = 32, degradations=None, n_degraded: int | None = None,
                    strengths=None, seed: int = 0) -> dict[str, float]:
    """Share of test scenes the oracle reads exactly: ``clean`` and one entry per degradation."""
    examples = splits.examples("test", 0, n)
    truth = [e.scene.objects for e in examples]
    images, _ = render([e.scene for e in examples], resolution)
    out = {"clean": float(np.mean([same_scene(t, f, CLEAN_TOLERANCE / resolution)
                                   for t, f in zip(truth, oracle.parse_batch(images))]))}
    m = n if n_degraded is None else min(n, n_degraded)
    strengths = strengths or degrade.MODERATE
    for name in degradations if degradations is not None else degrade.DEGRADATIONS:
        bad = degrade.degrade(images[:m], name, np.random.default_rng(seed), **strengths[name])
        found = oracle.parse_batch(bad)
        out[name] = float(np.mean([same_scene(t, f, DEGRADED_TOLERANCE) for t, f in zip(truth[:m], found)]))
    return out


def single_object_scenes(shape: str, n: int, seed: int = 0) -> list[Scene]:
    """``n`` scenes of one ``shape`` each, every colour and size in turn, placed at random by :func:`place`."""
    rng = np.random.default_rng([seed, ALL_SHAPES.index(shape)])
    combos = [(colour, size) for size in SIZES for colour in COLOUR_NAMES]
    return [place(rng, [(shape, *combos[k % len(combos)])]) for k in range(n)]


def shape_accuracy(n: int = 300, resolution: int = 32, shapes=ALL_SHAPES, read_with=ALL_SHAPES,
                   degradations=(), strengths=None, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per shape, the share of ``n`` single-object renders the oracle reads exactly (shape, colour, size,
    centre) when it considers the shapes ``read_with``: ``out["clean"][shape]`` and one entry per
    degradation. The renders and their degradations depend on ``shapes``, ``n`` and ``seed`` only,
    so two readers compare on the same images."""
    shapes = oracle.check_shapes(shapes)
    scenes = [scene for shape in shapes for scene in single_object_scenes(shape, n, seed)]
    truth = [scene.objects for scene in scenes]
    images, _ = render(scenes, resolution)
    strengths = strengths or degrade.MODERATE
    out = {}
    for name in ("clean", *degradations):
        seen = images if name == "clean" else degrade.degrade(images, name, np.random.default_rng(seed),
                                                              **strengths[name])
        tolerance = CLEAN_TOLERANCE / resolution if name == "clean" else DEGRADED_TOLERANCE
        right = np.array([same_scene(t, f, tolerance)
                          for t, f in zip(truth, oracle.parse_batch(seen, shapes=read_with))])
        out[name] = {shape: float(right[k * n:(k + 1) * n].mean()) for k, shape in enumerate(shapes)}
    return out


def degradation_sweep(n: int = 300, resolution: int = 32, seed: int = 0) -> dict[str, list[tuple[float, int, int]]]:
    """For each degradation, ``(strength, scenes read exactly, scenes)`` at every strength of
    :data:`degrade.SWEEP` (the other parameters at their moderate value), on ``n`` test scenes."""
    examples = splits.examples("test", 0, n)
    truth = [e.scene.objects for e in examples]
    images, _ = render([e.scene for e in examples], resolution)
    out = {}
    for name, (parameter, values) in degrade.SWEEP.items():
        out[name] = []
        for value in values:
            strength = {**degrade.MODERATE[name], parameter: value}
            found = oracle.parse_batch(degrade.degrade(images, name, np.random.default_rng(seed), **strength))
            exact = sum(same_scene(t, f, DEGRADED_TOLERANCE) for t, f in zip(truth, found))
            out[name].append((value, int(exact), n))
    return out


def breaking_point(points, level: float = 0.9):
    """The mildest strength at which fewer than ``level`` of the scenes are read exactly (``None`` if none)."""
    return next((value for value, exact, n in points if exact < level * n), None)


def bench_generation(n: int = 4000) -> dict[int, float]:
    """Print and return scenes per second at 32 and 64 px."""
    splits.examples("train", 0, 50)  # warm up imports and caches
    out = {}
    for resolution in (32, 64):
        out[resolution] = scenes_per_second(n, resolution)
        print(f"world generation, {resolution} px: {out[resolution]:,.0f} captioned scenes with masks per second "
              f"({n} scenes, 1 process)")
    return out


def bench_oracle(n: int = 10_000, n_degraded: int = 2000) -> dict[int, dict[str, float]]:
    """Print and return the oracle's exact-recovery rate on ``n`` clean test scenes at 32 and 64 px,
    and its accuracy on ``n_degraded`` of them under each moderate degradation."""
    out = {}
    for resolution in (32, 64):
        start = time.perf_counter()
        acc = oracle_accuracy(n, resolution, n_degraded=n_degraded)
        seconds = time.perf_counter() - start
        out[resolution] = acc
        print(f"oracle, {resolution} px: exact on {acc['clean']:.2%} of {n:,} clean test scenes")
        for name in degrade.DEGRADATIONS:
            print(f"  {name:>12} ({degrade.MODERATE[name]}): {acc[name]:.2%} of {min(n, n_degraded):,}")
        print(f"  ({seconds:.1f} s)")
    return out


def run() -> None:
    bench_generation()
    bench_oracle()


if __name__ == "__main__":
    run()
