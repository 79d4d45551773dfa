"""Rendering scenes to small RGB images with exact per-object masks.

Anti-aliasing is done *at* the target resolution: every pixel is split into a
``samples x samples`` grid of sub-pixel points, each point is tested against
the shape's exact geometry, and the pixel's coverage is the share of points
inside. Nothing is drawn large and blurred down, so a 32 px image is as sharp
as 32 px allows. An object's mask is ``coverage >= 0.5``.

The work is vectorised over objects: each object is rendered in a fixed-size
box around its centre, all boxes of a shape at once.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from text2image.world.scene import (ALL_SHAPES, BACKGROUND, COLOURS, EXTENT, MAX_OBJECTS, RADIUS,
                                    Scene, WorldError, check_shape)

SAMPLES = 4
RESOLUTIONS = (32, 64)
CHUNK = 512  # objects rendered together (bounds the memory of the sub-pixel grids)

# Geometry in units of the size radius r, y pointing down.
SQUARE_HALF = 0.82
DIAMOND_HALF = 1.15
CROSS_ARM, CROSS_HALF_WIDTH = 1.05, 0.35
TRIANGLE_R = 1.2  # circumradius; the centroid is the centre
# The concept star: five points, one up. Its outer radius is the triangle's (no render box grows);
# the inner radius keeps each point 2 STAR_INNER sin 36 deg = 0.71 r wide at its root (2.3 px for a
# small star at 32 px) and its area, 5 R rho sin 36 deg = 2.1 r^2, between the triangle's and the cross's.
STAR_POINTS = 5
STAR_OUTER, STAR_INNER = 1.2, 0.6


def inside(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Exact inside-test of ``shape`` (centred at 0, size radius 1) at offsets ``dx``, ``dy`` (broadcast)."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= 1.0
    if shape == "square":
        return (ax <= SQUARE_HALF) & (ay <= SQUARE_HALF)
    if shape == "diamond":
        return ax + ay <= DIAMOND_HALF
    if shape == "cross":
        return ((ax <= CROSS_ARM) & (ay <= CROSS_HALF_WIDTH)) | ((ax <= CROSS_HALF_WIDTH) & (ay <= CROSS_ARM))
    if shape == "triangle":  # pointing up; three edges at distance R/2 from the centre
        return (dy <= TRIANGLE_R / 2) & (math.sqrt(3) * ax - dy <= TRIANGLE_R)
    if shape == "star":
        return _inside_star(dx, dy)
    raise WorldError(f"unknown shape {shape!r}; the shapes are: {', '.join(ALL_SHAPES)}")


def _inside_star(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The star is five copies of one kite: fold the angle (from straight up) into half a point,
    ``[0, 36]`` degrees, and test the side of the edge from the tip ``(R, 0)`` to the inner
    corner ``(rho cos 36, rho sin 36)`` in coordinates along and across the point."""
    half = math.pi / STAR_POINTS
    angle = np.arctan2(dx, -dy)  # 0 straight up (y points down)
    folded = np.abs(np.mod(angle + half, 2 * half) - half)
    radius = np.hypot(dx, dy)
    along, across = radius * np.cos(folded), radius * np.sin(folded)
    r, rho = STAR_OUTER, STAR_INNER
    # The edge's normal (rho sin 36, R - rho cos 36) points away from the centre.
    return rho * math.sin(half) * along + (r - rho * math.cos(half)) * across <= r * rho * math.sin(half)


def box_size(resolution: int) -> int:
    """Side, in pixels, of the box that holds any object at this resolution."""
    largest = max(EXTENT.values()) * max(RADIUS.values())
    return int(math.ceil(2 * largest * resolution)) + 3


def _sum_subpixels(block: np.ndarray, side: int, samples: int) -> np.ndarray:
    """Count the inside sub-pixels of each pixel: (m, side*S, side*S) bool -> (m, side, side) uint8."""
    m = len(block)
    grid = block.view(np.uint8).reshape(m, side * samples, side, samples)
    rows = grid[..., 0].copy()
    for k in range(1, samples):
        rows += grid[..., k]
    rows = rows.reshape(m, side, samples, side)
    total = rows[:, :, 0].copy()
    for k in range(1, samples):
        total += rows[:, :, k]
    return total


def coverage(shapes: np.ndarray, radii: np.ndarray, xs: np.ndarray, ys: np.ndarray,
             resolution: int, samples: int = SAMPLES):
    """Coverage boxes of many objects.

    ``shapes`` holds indices into ``ALL_SHAPES``; ``radii``, ``xs``, ``ys`` are in canvas
    units. Returns ``(cov, top, left)``: ``cov[n]`` is a ``(B, B)`` float32 box
    whose pixel ``(0, 0)`` is the canvas pixel ``(top[n], left[n])``. Boxes are
    shifted to lie inside the canvas (objects do, so nothing is lost).
    """
    if samples * samples > 255:
        raise WorldError(f"samples={samples} is too many (at most 15 x 15 per pixel)")
    n = len(shapes)
    side = min(box_size(resolution), resolution)
    px, py = xs * resolution, ys * resolution
    left = np.clip(np.floor(px).astype(np.int64) - side // 2, 0, resolution - side)
    top = np.clip(np.floor(py).astype(np.int64) - side // 2, 0, resolution - side)
    offsets = (np.arange(side * samples) + 0.5) / samples  # sub-pixel positions inside the box
    cov = np.empty((n, side, side), dtype=np.float32)
    for start in range(0, n, CHUNK):
        sl = slice(start, start + CHUNK)
        scale = (1.0 / (radii[sl] * resolution))[:, None]
        dx = (((left[sl, None] + offsets[None, :]) - px[sl, None]) * scale).astype(np.float32)  # (m, B*S)
        dy = (((top[sl, None] + offsets[None, :]) - py[sl, None]) * scale).astype(np.float32)
        block = np.empty((len(dx), side * samples, side * samples), dtype=bool)
        for s, name in enumerate(ALL_SHAPES):
            rows = np.flatnonzero(shapes[sl] == s)
            if rows.size:
                block[rows] = inside(name, dx[rows, None, :], dy[rows, :, None])
        cov[sl] = _sum_subpixels(block, side, samples) * np.float32(1.0 / (samples * samples))
    return cov, top, left


def render(scenes: Sequence[Scene], resolution: int = 32, samples: int = SAMPLES,
           max_objects: int = MAX_OBJECTS):
    """Render scenes to ``images`` (N, H, W, 3) uint8 and ``masks`` (N, max_objects, H, W) bool.

    ``masks[n, k]`` is the exact mask of object ``k`` of scene ``n`` (all False past the last object).
    """
    if resolution < 16:
        raise WorldError(f"resolution {resolution} is too small; use 32 or 64")
    if any(len(s) > max_objects for s in scenes):
        raise WorldError(f"a scene has more than max_objects={max_objects} objects")
    for scene in scenes:
        for o in scene.objects:
            check_shape(o.shape, ALL_SHAPES)
    shape_index = {s: i for i, s in enumerate(ALL_SHAPES)}  # the base shapes keep their indices
    rows = [(n, j, shape_index[o.shape], o.colour, RADIUS[o.size], o.x, o.y)
            for n, scene in enumerate(scenes) for j, o in enumerate(scene.objects)]
    if rows:
        scene_of, slot, shape_id, colours, radius, xs, ys = zip(*rows)
    else:
        scene_of = slot = shape_id = colours = radius = xs = ys = ()
    colour = np.array([COLOURS[c] for c in colours], dtype=np.float32).reshape(-1, 3)
    return compose(len(scenes), np.array(scene_of, dtype=np.int64), np.array(slot, dtype=np.int64),
                   np.array(shape_id, dtype=np.int64), colour, np.array(radius, dtype=float),
                   np.array(xs, dtype=float), np.array(ys, dtype=float), resolution, samples, max_objects)


def compose(n_scenes, scene_of, slot, shape_id, colour, radius, xs, ys, resolution,
            samples=SAMPLES, max_objects=MAX_OBJECTS):
    """Paint objects given as flat arrays (one entry per object) onto ``n_scenes`` canvases."""
    side = min(box_size(resolution), resolution)
    cover = np.zeros((n_scenes, max_objects, resolution, resolution), dtype=np.float32)
    colours = np.zeros((n_scenes, max_objects, 3), dtype=np.float32)
    bg = np.asarray(BACKGROUND, dtype=np.float32)
    if len(scene_of):
        cov, top, left = coverage(shape_id, radius, xs, ys, resolution, samples)
        r = (top[:, None] + np.arange(side)[None, :])[:, :, None]  # (n, B, 1)
        c = (left[:, None] + np.arange(side)[None, :])[:, None, :]  # (n, 1, B)
        cover[scene_of[:, None, None], slot[:, None, None], r, c] = cov  # one (scene, slot) per object
        colours[scene_of, slot] = colour - bg
    used = int(slot.max()) + 1 if len(slot) else 1
    masks = cover >= 0.5
    canvas = np.einsum("nkhw,nkc->nhwc", cover[:, :used], colours[:, :used], optimize=True) + bg
    images = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images, masks


def render_one(scene: Scene, resolution: int = 32, samples: int = SAMPLES):
    """One image (H, W, 3) uint8 and its masks (n_objects, H, W) bool."""
    images, masks = render([scene], resolution, samples)
    return images[0], masks[0, :len(scene)]
