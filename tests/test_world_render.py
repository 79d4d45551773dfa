"""Rendering: supersampled at the target size, exact masks, fixed background, bit-for-bit repeatable."""

import math

import numpy as np
import pytest

from text2image.world import render as R
from text2image.world import splits
from text2image.world.scene import BACKGROUND, COLOURS, RADIUS, Object, Scene


def _one(shape, size="large", colour="red", x=0.5, y=0.5, resolution=32):
    image, masks = R.render_one(Scene((Object(shape, colour, size, x, y),)), resolution)
    return image, masks[0]


def test_shapes_types_and_background():
    scenes = [e.scene for e in splits.examples("test", 0, 50)]
    for res in (32, 64):
        images, masks = R.render(scenes, res)
        assert images.shape == (50, res, res, 3) and images.dtype == np.uint8
        assert masks.shape == (50, 5, res, res) and masks.dtype == bool
        for scene, image, mask in zip(scenes, images, masks):
            assert not mask[len(scene):].any()
            assert mask[:len(scene)].any(axis=(1, 2)).all()
            assert (mask[:len(scene)].sum(axis=0) <= 1).all()  # disjoint
            outside = ~mask.any(axis=0)
            far = outside.copy()
            for k in range(len(scene)):  # away from anti-aliased edges
                grown = np.zeros_like(mask[k])
                ys, xs = np.nonzero(mask[k])
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        grown[np.clip(ys + dy, 0, res - 1), np.clip(xs + dx, 0, res - 1)] = True
                far &= ~grown
            assert (image[far] == BACKGROUND).all()


def test_same_scenes_same_bits():
    scenes = [e.scene for e in splits.examples("val", 0, 20)]
    a, ma = R.render(scenes, 32)
    b, mb = R.render(scenes, 32)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    # batching does not change a scene's pixels
    c, _ = R.render(scenes[5:6], 32)
    assert np.array_equal(a[5], c[0])


@pytest.mark.parametrize("res", [32, 64])
def test_circle_area_and_antialiasing(res):
    image, mask = _one("circle", resolution=res, x=0.503, y=0.497)
    area = math.pi * (RADIUS["large"] * res) ** 2
    assert abs(mask.sum() - area) / area < 0.06
    red = image[..., 0].astype(int)
    assert (red[mask] >= 115).all()  # coverage >= 0.5
    inner = red[(red > BACKGROUND[0]) & (red < COLOURS["red"][0])]
    assert 0 < len(inner) < 0.5 * mask.sum()  # a thin anti-aliased rim, not a blur
    assert (image[image[..., 0] == COLOURS["red"][0]] == COLOURS["red"]).all()


AREAS = {  # in units of r squared, from the geometry in render.py
    "circle": math.pi,
    "square": (2 * R.SQUARE_HALF) ** 2,
    "diamond": 2 * R.DIAMOND_HALF ** 2,
    "triangle": 3 * math.sqrt(3) / 4 * R.TRIANGLE_R ** 2,
    "cross": 2 * (2 * R.CROSS_ARM) * (2 * R.CROSS_HALF_WIDTH) - (2 * R.CROSS_HALF_WIDTH) ** 2,
}


@pytest.mark.parametrize("res, tolerance", [(32, 0.05), (64, 0.03)])  # 4 x 4 samples: edges to 1/4 px
def test_coverage_matches_the_analytic_area(res, tolerance):
    for shape, unit in AREAS.items():
        image, mask = _one(shape, resolution=res, x=0.4871, y=0.5123)
        coverage = (image[..., 0].astype(float) - BACKGROUND[0]) / (COLOURS["red"][0] - BACKGROUND[0])
        area = unit * (RADIUS["large"] * res) ** 2
        assert abs(coverage.sum() - area) / area < tolerance, shape
        assert abs(mask.sum() - area) / area < 0.15, shape


def test_triangle_points_up():
    _, tri = _one("triangle", resolution=64)
    rows = np.nonzero(tri)[0]
    assert (rows >= 32).sum() > (rows < 32).sum()


def test_small_objects_are_smaller():
    _, small = _one("square", "small")
    _, large = _one("square", "large")
    ratio = large.sum() / small.sum()
    assert abs(ratio - (RADIUS["large"] / RADIUS["small"]) ** 2) < 0.6
