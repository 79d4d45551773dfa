"""The oracle: exact on clean renders, robust to moderate degradations, honest about bad input."""

import numpy as np
import pytest

from text2image.world import degrade, oracle, splits
from text2image.world.bench import CLEAN_TOLERANCE, DEGRADED_TOLERANCE, oracle_accuracy, same_scene
from text2image.world.render import render
from text2image.world.scene import BACKGROUND, COLOURS, SHAPES, Object, Scene, WorldError


@pytest.mark.parametrize("res, n", [(32, 1500), (64, 400)])
def test_exact_on_clean_test_scenes(res, n):
    examples = splits.examples("test", 0, n)
    images, _ = render([e.scene for e in examples], res)
    found = oracle.parse_batch(images)
    wrong = [i for i, (e, f) in enumerate(zip(examples, found))
             if not same_scene(e.scene.objects, f, CLEAN_TOLERANCE / res)]
    assert wrong == []


def test_every_small_shape_and_colour_at_32px():
    for colour in COLOURS:
        objs = tuple(Object(shape, colour, "small", 0.15 + 0.175 * k, 0.5 + 0.2 * (k % 2)) for k, shape in enumerate(SHAPES))
        images, _ = render([Scene(objs)], 32)
        assert same_scene(objs, oracle.parse(images[0]), CLEAN_TOLERANCE / 32)


@pytest.mark.parametrize("name", list(degrade.DEGRADATIONS))
def test_moderate_degradations(name):
    acc = oracle_accuracy(300, 32, degradations=[name])
    assert acc["clean"] == 1.0
    assert acc[name] >= 0.98, acc


def test_degradations_change_images_and_repeat_with_the_seed():
    images, _ = render([e.scene for e in splits.examples("test", 0, 8)], 32)
    for name in degrade.DEGRADATIONS:
        a = degrade.degrade(images, name, np.random.default_rng(1))
        b = degrade.degrade(images, name, np.random.default_rng(1))
        assert a.shape == images.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert not np.array_equal(a, images)
    with pytest.raises(WorldError, match="unknown degradation"):
        degrade.degrade(images, "rain", np.random.default_rng(0))


def test_strong_degradations_do_hurt():
    acc = oracle_accuracy(300, 32, degradations=["specks", "blur"], strengths=degrade.STRONG)
    assert min(acc["specks"], acc["blur"]) < 0.99  # the measure can fail


def test_empty_and_bad_inputs():
    empty = np.full((32, 32, 3), BACKGROUND, dtype=np.uint8)
    assert oracle.parse(empty) == []
    with pytest.raises(WorldError, match=r"\[0, 1\]"):
        oracle.parse(empty.astype(np.float32) / 255 + 0.01)
    with pytest.raises(WorldError, match="RGB"):
        oracle.parse_batch(np.zeros((2, 32, 32)))


def test_reading_order_and_positions():
    objs = (Object("cross", "blue", "large", 0.75, 0.25), Object("circle", "yellow", "small", 0.25, 0.75))
    images, _ = render([Scene(objs)], 64)
    found = oracle.parse(images[0])
    assert [o.shape for o in found] == ["cross", "circle"]  # top first
    assert same_scene(objs, found, 0.2 / 64)
    assert not same_scene(objs, found[:1], DEGRADED_TOLERANCE)
