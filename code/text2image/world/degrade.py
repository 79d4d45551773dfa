"""Degradations that imitate the defects of generated images, to test the oracle against.

Each function takes images (N, H, W, 3) uint8 (or one image (H, W, 3)), a
``numpy.random.Generator`` where it draws anything, and a strength, and returns
uint8 images of the same shape. Strengths in pixels are given at 32 px and
scaled with the resolution, so "blur 0.7" means the same thing at 32 and 64 px.
``MODERATE`` holds the strengths the oracle is held to.
"""

from __future__ import annotations

import io

import numpy as np
from scipy import ndimage

from text2image.world.scene import WorldError


def _batch(images: np.ndarray):
    images = np.asarray(images)
    single = images.ndim == 3
    return (images[None] if single else images), single


def _out(x: np.ndarray, single: bool) -> np.ndarray:
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x[0] if single else x


def gaussian_noise(images, rng: np.random.Generator, sigma: float = 0.06):
    """Add white noise of standard deviation ``sigma`` (fraction of 255) to every channel."""
    x, single = _batch(images)
    return _out(x + rng.normal(0.0, sigma * 255, size=x.shape), single)


def blur(images, rng: np.random.Generator | None = None, sigma: float = 0.7):
    """Gaussian blur of ``sigma`` pixels at 32 px (scaled with the resolution)."""
    x, single = _batch(images)
    s = sigma * x.shape[1] / 32
    return _out(ndimage.gaussian_filter(x.astype(np.float32), sigma=(0, s, s, 0), mode="nearest"), single)


def colour_drift(images, rng: np.random.Generator, strength: float = 0.12):
    """A colour cast per image: each channel scaled by ``1 ± strength`` and shifted by ``± strength * 128``."""
    x, single = _batch(images)
    n = len(x)
    gain = 1 + rng.uniform(-strength, strength, size=(n, 1, 1, 3))
    shift = rng.uniform(-strength, strength, size=(n, 1, 1, 3)) * 128
    return _out(x.astype(np.float32) * gain + shift, single)


def spurious_blobs(images, rng: np.random.Generator, count: int = 3, radius: float = 0.7):
    """``count`` small soft specks of random colours at random places (radius in pixels at 32 px)."""
    x, single = _batch(images)
    x = x.astype(np.float32).copy()
    n, h, w, _ = x.shape
    r = radius * h / 32
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for k in range(n):
        for _ in range(count):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            colour = rng.uniform(0, 255, size=3)
            alpha = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            x[k] = x[k] * (1 - alpha) + colour * alpha
    return _out(x, single)


def jpeg(images, rng: np.random.Generator | None = None, quality: int = 50):
    """A real JPEG round trip (Pillow's encoder, 4:2:0 chroma subsampling) at ``quality``."""
    from PIL import Image

    x, single = _batch(images)
    out = np.empty_like(x)
    for k, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=int(quality))
        out[k] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out[0] if single else out


DEGRADATIONS = {
    "noise": gaussian_noise,
    "blur": blur,
    "colour_drift": colour_drift,
    "specks": spurious_blobs,
    "jpeg": jpeg,
}
MODERATE = {"noise": {"sigma": 0.06}, "blur": {"sigma": 0.7}, "colour_drift": {"strength": 0.12},
            "specks": {"count": 3, "radius": 0.7}, "jpeg": {"quality": 75}}
STRONG = {"noise": {"sigma": 0.12}, "blur": {"sigma": 1.2}, "colour_drift": {"strength": 0.25},
          "specks": {"count": 8, "radius": 1.0}, "jpeg": {"quality": 50}}


# The strength each degradation is swept over (its main parameter), from mild to destructive: where the
# oracle breaks tells which artefacts of a generator it can still judge.
SWEEP = {"noise": ("sigma", (0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4)),
         "blur": ("sigma", (0.5, 0.7, 1.0, 1.3, 1.6, 2.0, 2.5)),
         "colour_drift": ("strength", (0.12, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
         "specks": ("radius", (0.7, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0)),
         "jpeg": ("quality", (90, 75, 50, 30, 20, 10, 5))}


def degrade(images, name: str, rng: np.random.Generator, **strength):
    """Apply the degradation ``name`` (moderate strength unless given)."""
    if name not in DEGRADATIONS:
        raise WorldError(f"unknown degradation {name!r}; the degradations are: {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[name](images, rng, **(strength or MODERATE[name]))
