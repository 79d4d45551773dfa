"""The oracle: read an image of the shapes world back into objects.

``parse(image)`` returns the objects it sees (shape, colour, size, centre);
``parse_batch(images)`` does the same for many images at once. It is exact on
clean renders and meant to stay right on what generators produce (noise, blur,
colour casts, stray specks, compression), so that later chapters can score a
model's images as GenEval scores real ones with a detector.

How it reads an image, in five steps:

1. **Background.** The median colour of the border pixels (objects keep away
   from the border), so a colour cast on the whole image is subtracted.
2. **Chroma.** Every pixel goes to the chromatic plane
   ``u = (2R - G - B) / 2``, ``v = sqrt(3) / 2 (G - B)`` (the plane of hue and
   saturation, where any grey is 0). The background is grey and every palette
   colour has the same chroma, so a pixel's chroma divided by the palette's is
   the share of the pixel the object covers, whatever its colour.
3. **Blobs.** The chroma is lightly smoothed (against noise), thresholded, and
   cut into 4-connected components; specks smaller than a fraction of the
   smallest object are dropped.
4. **Colour.** The hue of a blob's summed chroma vector, rounded to the nearest
   palette hue (60 degrees apart): blending with a grey background keeps the hue.
5. **Shape and size, by analysis by synthesis.** Each blob's coverage (its
   pixels' chroma projected on its hue) is compared with rendered templates of
   every shape and size, centred at the blob's centroid to 1/8 pixel, sharp or
   blurred, with a free contrast within bounds; the closest template wins. The
   centroid is the position (the centre of every shape is its centroid).

Which shapes step 5 considers is a choice: the base ``SHAPES`` by default, so
that every reading of the base world stays what it was; ``shapes=ALL_SHAPES``
adds the concept star (a base shape could then, in principle, be read as one).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

from text2image.world.render import SAMPLES, box_size, inside
from text2image.world.scene import (ALL_SHAPES, BACKGROUND, COLOURS, HUES, RADIUS, SHAPES, SIZES, Object,
                                    WorldError, check_shape)

PALETTE_CHROMA = float(max(COLOURS["red"]) - min(COLOURS["red"]))  # the same for every colour
THRESHOLD = 0.35        # coverage above which a pixel belongs to a blob
SMOOTH = 0.6            # sigma (pixels at 32 px) of the smoothing before thresholding
MIN_AREA = 0.4          # blobs with less ink than this share of the smallest object are specks
OFFSETS = 8             # sub-pixel positions of the templates, per axis
BLURS = (0.0, 0.6, 1.0, 1.5)  # template blurs, in pixels at 32 px
CONTRAST = (0.7, 1.3)   # allowed contrast of a blob against a template
CHUNK = 1024            # blobs fitted together
LUMA_WEIGHT = 3.0       # weight of the luma view against the chroma view

HUE_NAMES = tuple(HUES)
HUE_ANGLES = np.deg2rad([HUES[name] for name in HUE_NAMES])


def chroma(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(u, v)`` chromatic coordinates of RGB images (..., 3), in palette-chroma units."""
    x = np.asarray(images, dtype=np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    u = (r - 0.5 * (g + b)) / PALETTE_CHROMA
    v = (math.sqrt(3) / 2) * (g - b) / PALETTE_CHROMA
    return u, v


def hue_name(u: float, v: float) -> str:
    angle = math.atan2(v, u)
    gaps = np.abs(np.angle(np.exp(1j * (angle - HUE_ANGLES))))
    return HUE_NAMES[int(np.argmin(gaps))]


def smallest_area(resolution: int) -> float:
    """Area, in pixels, of the smallest object (a small triangle) at this resolution."""
    r = RADIUS["small"] * resolution
    return (3 * math.sqrt(3) / 4) * (1.2 * r) ** 2


def check_shapes(shapes) -> tuple[str, ...]:
    """The shapes the oracle is asked to consider, as a tuple: known ones, at least one, no repeat."""
    shapes = (shapes,) if isinstance(shapes, str) else tuple(shapes)
    if not shapes:
        raise WorldError(f"the oracle needs a shape to consider; the shapes are: {', '.join(ALL_SHAPES)}")
    if len(set(shapes)) != len(shapes):
        raise WorldError(f"the shapes to consider repeat one: {shapes}")
    for shape in shapes:
        check_shape(shape, ALL_SHAPES)
    return shapes


def templates(resolution: int, shapes=SHAPES) -> np.ndarray:
    """Coverage templates ``[shape, size, blur, dy, dx, W, W]`` (float32) of ``shapes``, in that order.

    The object sits at ``(W // 2 + (dy + 0.5) / OFFSETS, W // 2 + (dx + 0.5) / OFFSETS)``
    in window pixel coordinates (pixel ``i`` spans ``[i, i + 1)``).
    """
    return _templates(resolution, check_shapes(shapes))


@lru_cache(maxsize=8)
def _templates(resolution: int, shapes: tuple[str, ...]) -> np.ndarray:
    side = box_size(resolution)
    s = SAMPLES
    grid = (np.arange(side * s) + 0.5) / s  # sub-pixel sample positions in the window
    out = np.zeros((len(shapes), len(SIZES), len(BLURS), OFFSETS, OFFSETS, side, side), np.float32)
    frac = (np.arange(OFFSETS) + 0.5) / OFFSETS
    for a, shape in enumerate(shapes):
        for b, size in enumerate(SIZES):
            r = RADIUS[size] * resolution
            dx = (grid[None, :] - (side // 2 + frac[:, None])) / r  # (offset, samples)
            cov = inside(shape, dx[None, :, None, :], dx[:, None, :, None])  # (oy, ox, rows, cols)
            cov = cov.reshape(OFFSETS, OFFSETS, side, s, side, s).mean(axis=(3, 5))
            for c, blur in enumerate(BLURS):
                sigma = blur * resolution / 32
                out[a, b, c] = cov if sigma == 0 else ndimage.gaussian_filter(
                    cov, sigma=(0, 0, sigma, sigma), mode="constant")
    return out


def _background(images: np.ndarray) -> np.ndarray:
    border = np.concatenate([images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1)
    return np.median(border.astype(np.float32), axis=1)  # (N, 3)


def parse_batch(images: np.ndarray, details: bool = False, shapes=SHAPES):
    """Objects seen in each image of ``images`` (N, H, W, 3), uint8 or float in [0, 255].

    Returns one list of :class:`~text2image.world.scene.Object` per image, or with
    ``details=True`` a list of dicts per image (object, fit, contrast, blur, area): ``fit`` is
    the share of the blob's energy the template explains (1 is perfect). Every blob is read as
    one of ``shapes`` (the base shapes unless told; ``ALL_SHAPES`` to see stars too).
    """
    shapes = check_shapes(shapes)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise WorldError(f"expected square RGB images (N, H, W, 3), got shape {images.shape}")
    if images.dtype != np.uint8 and images.size and float(np.max(images)) <= 1.0 + 1e-6:
        raise WorldError("float images must be in [0, 255]; this one looks like [0, 1]: multiply by 255")
    n, res = images.shape[0], images.shape[1]
    u, v = chroma(images)
    bu, bv = chroma(_background(images))
    u -= bu[:, None, None]
    v -= bv[:, None, None]
    sigma = SMOOTH * res / 32
    su = ndimage.gaussian_filter(u, sigma=(0, sigma, sigma), mode="nearest")
    sv = ndimage.gaussian_filter(v, sigma=(0, sigma, sigma), mode="nearest")
    strength = np.hypot(su, sv)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected, never across images
    labels, count = ndimage.label(strength >= THRESHOLD, structure=structure)
    results: list[list] = [[] for _ in range(n)]
    if count == 0:
        return results
    index = np.arange(1, count + 1)
    area = ndimage.sum_labels(np.ones_like(strength), labels, index)
    keep = area >= 0.5 * MIN_AREA * smallest_area(res)  # a first cut on the pixel count
    # Hue of each blob: its summed chroma vector.
    hu = ndimage.sum_labels(u, labels, index)
    hv = ndimage.sum_labels(v, labels, index)
    norm = np.hypot(hu, hv) + 1e-9
    hu, hv = hu / norm, hv / norm
    # Coverage seen along the blob's hue, on the blob grown by one pixel.
    grown = ndimage.grey_dilation(labels, footprint=structure)
    grown = np.where(labels > 0, labels, grown)
    ids = np.flatnonzero(keep) + 1
    if ids.size == 0:
        return results
    lookup_u = np.zeros(count + 1, np.float32)
    lookup_v = np.zeros(count + 1, np.float32)
    lookup_u[1:], lookup_v[1:] = hu, hv
    along = u * lookup_u[grown] + v * lookup_v[grown]  # projection on the own blob's hue
    weight = np.clip(along, 0, None) * (grown > 0)
    mass = ndimage.sum_labels(weight, grown, ids)
    solid = mass >= MIN_AREA * smallest_area(res)  # specks have too little ink to be an object
    ids, mass = ids[solid], mass[solid]
    if ids.size == 0:
        return results
    boxes = ndimage.find_objects(labels)
    image_of = np.array([boxes[i - 1][0].start for i in ids], dtype=np.int64)
    rows = np.broadcast_to((np.arange(res) + 0.5)[None, :, None], labels.shape)
    cy = ndimage.sum_labels(weight * rows, grown, ids) / np.maximum(mass, 1e-9)
    cx = ndimage.sum_labels(weight * np.swapaxes(rows, 1, 2), grown, ids) / np.maximum(mass, 1e-9)
    colours = [hue_name(lookup_u[blob], lookup_v[blob]) for blob in ids]
    luma = _luma(images) - _luma(_background(images))[:, None, None]
    gain = np.array([LUMA_CONTRAST[c] for c in colours], dtype=np.float32)
    fits = _fit(u, v, luma, grown, ids, image_of, cy, cx, lookup_u[ids], lookup_v[ids], gain, res, shapes)
    for k, blob in enumerate(ids):
        shape, size, blur, contrast, fit = fits[k]
        obj = Object(shape, colours[k], size, float(cx[k] / res), float(cy[k] / res))
        if details:
            results[image_of[k]].append({"object": obj, "fit": fit, "contrast": contrast,
                                         "blur": blur, "area": float(area[blob - 1])})
        else:
            results[image_of[k]].append(obj)
    for found in results:  # reading order: top to bottom, left to right
        found.sort(key=lambda o: ((o["object"] if details else o).y, (o["object"] if details else o).x))
    return results


def _luma(images: np.ndarray) -> np.ndarray:
    """BT.601 luma (what JPEG keeps at full resolution), in palette-chroma units."""
    x = np.asarray(images, dtype=np.float32)
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]) / PALETTE_CHROMA


# Luma step from the background to each palette colour, in palette-chroma units.
LUMA_CONTRAST = {name: float(_luma(np.array(rgb)) - _luma(np.array(BACKGROUND))) for name, rgb in COLOURS.items()}


def _best(x, t, names):
    """Least-squares fit of windows ``x`` (m, P) by templates ``t`` (m, K, P) with a bounded contrast.

    Returns residuals (m, K) and contrasts (m, K)."""
    tt = np.einsum("mkp,mkp->mk", t, t)
    xt = np.einsum("mkp,mp->mk", t, x)
    xx = np.einsum("mp,mp->m", x, x)
    a = np.clip(xt / np.maximum(tt, 1e-9), *CONTRAST)
    return xx[:, None] - 2 * a * xt + a * a * tt, a


def _fit(u, v, luma, grown, ids, image_of, cy, cx, hu, hv, gain, res, shapes=SHAPES):
    """Closest template for each blob: ``(shape, size, blur, contrast, residual)``.

    Two views of the blob are fitted: its chroma along its hue, and its luma (what
    JPEG keeps sharp) scaled by the colour's luma step; each view picks its own
    blur and contrast, and the residuals add up (in the same units), so a colour
    with little luma contrast (blue on dark grey) leans on its chroma.
    """
    side = box_size(res)
    bank = templates(res, shapes)  # [shape, size, blur, oy, ox, W, W]
    pad = side
    up = np.pad(u, ((0, 0), (pad, pad), (pad, pad)))
    vp = np.pad(v, ((0, 0), (pad, pad), (pad, pad)))
    gp = np.pad(grown, ((0, 0), (pad, pad), (pad, pad)))
    lp = np.pad(luma, ((0, 0), (pad, pad), (pad, pad)))
    iy, ix = np.floor(cy).astype(np.int64), np.floor(cx).astype(np.int64)
    oy = np.clip(((cy - iy) * OFFSETS).astype(np.int64), 0, OFFSETS - 1)
    ox = np.clip(((cx - ix) * OFFSETS).astype(np.int64), 0, OFFSETS - 1)
    top, left = iy - side // 2 + pad, ix - side // 2 + pad
    out = []
    names = [(a, b, c) for a in range(len(shapes)) for b in range(len(SIZES)) for c in range(len(BLURS))]
    for start in range(0, len(ids), CHUNK):
        sl = slice(start, start + CHUNK)
        r = top[sl, None] + np.arange(side)[None, :]
        c = left[sl, None] + np.arange(side)[None, :]
        img = image_of[sl][:, None, None]
        at = (img, r[:, :, None], c[:, None, :])
        own = gp[at]
        visible = (own == ids[sl, None, None]) | (own == 0)  # hide the neighbours
        x = np.where(visible, up[at] * hu[sl, None, None] + vp[at] * hv[sl, None, None], 0)
        y = np.where(visible, lp[at] / gain[sl, None, None], 0)
        m = len(x)
        t = bank[:, :, :, oy[sl], ox[sl]]  # [shape, size, blur, m, W, W]
        t = np.moveaxis(t, 3, 0).reshape(m, len(names), -1)  # (m, K, W*W)
        rc, ac = _best(x.reshape(m, -1), t, names)
        rl, _ = _best(y.reshape(m, -1), t, names)
        nb = len(BLURS)
        rc, ac, rl = rc.reshape(m, -1, nb), ac.reshape(m, -1, nb), rl.reshape(m, -1, nb)
        bc = np.argmin(rc, axis=2)  # each view picks its blur
        total = np.min(rc, axis=2) + LUMA_WEIGHT * (gain[sl, None] ** 2) * np.min(rl, axis=2)
        energy = np.einsum("mp,mp->m", x.reshape(m, -1), x.reshape(m, -1)) + LUMA_WEIGHT * gain[sl] ** 2 * \
            np.einsum("mp,mp->m", y.reshape(m, -1), y.reshape(m, -1))
        best = np.argmin(total, axis=1)
        for k, j in enumerate(best):
            shape, size = divmod(int(j), len(SIZES))
            blur = int(bc[k, j])
            fit = 1.0 - float(total[k, j]) / max(float(energy[k]), 1e-9)
            out.append((shapes[shape], SIZES[size], BLURS[blur], float(ac[k, j, blur]), fit))
    return out


def parse(image: np.ndarray, shapes=SHAPES) -> list[Object]:
    """Objects seen in one image (H, W, 3), top to bottom then left to right, each one of ``shapes``."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise WorldError(f"expected one RGB image (H, W, 3), got shape {image.shape}")
    return parse_batch(image[None], shapes=shapes)[0]


def background_colour() -> tuple[int, int, int]:
    return BACKGROUND
