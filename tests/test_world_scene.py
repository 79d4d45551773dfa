"""Scenes: determinism, placement rules, and clear errors for impossible requests."""

import itertools

import numpy as np
import pytest

from text2image.world import scene as S
from text2image.world import splits


def test_same_seed_same_scene_and_different_seeds_differ():
    a = S.random_scene(np.random.default_rng(42))
    b = S.random_scene(np.random.default_rng(42))
    c = S.random_scene(np.random.default_rng(43))
    assert a == b
    assert a != c
    assert splits.example("train", 17) == splits.example("train", 17)


def _check_rules(scene):
    for o in scene:
        assert S.EDGE + o.extent - 1e-12 <= o.x <= 1 - S.EDGE - o.extent + 1e-12
        assert S.EDGE + o.extent - 1e-12 <= o.y <= 1 - S.EDGE - o.extent + 1e-12
    for a, b in itertools.combinations(scene.objects, 2):
        assert np.hypot(a.x - b.x, a.y - b.y) >= a.extent + b.extent + S.GAP - 1e-12


def test_placement_rules_hold_on_many_scenes():
    for i in range(600):
        e = splits.example("train", i)
        _check_rules(e.scene)
        assert 1 <= len(e.scene) <= 4
        if e.prompt.relation is not None:
            a, rel, b = e.prompt.relation
            first, second = e.scene[a], e.scene[b]
            assert S.holds(first, rel, second)
            assert S.in_cone(first.x, first.y, second.x, second.y, rel)
            assert not S.holds(first, S.INVERSE[rel], second)


@pytest.mark.parametrize("sizes", [["large"] * 3 + ["small"], ["large"] + ["small"] * 4, ["small"] * 5, ["large"] * 3])
def test_tight_scenes_always_fit(sizes):
    for seed in range(40):
        scene = S.place(np.random.default_rng(seed), [("triangle", "red", s) for s in sizes])
        _check_rules(scene)
        assert [o.size for o in scene] == sizes


@pytest.mark.parametrize("items, relation, words", [
    ([("circle", "red", "small")] * 6, None, "at most 5"),
    ([("circle", "red", "large")] * 4, None, "large"),
    ([("circle", "red", "large")] * 2 + [("circle", "red", "small")] * 3, None, "large"),
    ([("blob", "red", "small")], None, "unknown shape 'blob'"),
    ([("circle", "purple", "small")], None, "unknown colour 'purple'"),
    ([("circle", "red", "huge")], None, "unknown size 'huge'"),
    ([("circle", "red", "small")], (0, "left", 1), "needs two objects"),
    ([("circle", "red", "small")] * 2, (0, "beside", 1), "unknown relation 'beside'"),
    ([], None, "at least one object"),
])
def test_impossible_requests_name_the_problem(items, relation, words):
    with pytest.raises(S.WorldError, match=words):
        S.place(np.random.default_rng(0), items, relation)


def test_holds_reads_the_dominant_direction():
    assert S.holds((0.2, 0.5), "left", (0.8, 0.6))
    assert S.holds((0.8, 0.5), "right", (0.2, 0.4))
    assert S.holds((0.5, 0.2), "above", (0.55, 0.8))  # y grows downwards
    assert S.holds((0.5, 0.8), "below", (0.45, 0.2))
    assert not S.holds((0.2, 0.2), "left", (0.4, 0.8))  # mostly below, not right


def test_naive_placement_collides_often():
    assert S.naive_overlap_rate(3, trials=2000) > 0.5


def test_french_names_agree_with_the_shape_and_keep_french_word_order():
    from text2image.world import names

    assert names.phrase("cross", "blue", "large", lang="fr") == "grande croix bleue"
    assert names.phrase("circle", "green", "small", lang="fr") == "petit cercle vert"
    assert names.phrase("cross", "green", lang="fr") == "croix verte"
    assert names.phrase("cross", "blue", "large", lang="en") == "large blue cross"
    assert names.phrase("square", lang="en") == "square"
    assert names.colour("blue", lang="fr") == "bleu" and names.size("small", "cross", lang="fr") == "petite"
    for shape_ in S.SHAPES:  # every object of the world has a French phrase
        for colour_ in S.COLOUR_NAMES:
            for size_ in S.SIZES:
                assert len(names.phrase(shape_, colour_, size_, lang="fr").split()) == 3


def test_the_palettes_hues_are_evenly_spaced_by_hue_step():
    hues = sorted(S.HUES.values())
    assert S.HUE_STEP == 60.0 and len(hues) == len(S.COLOURS)
    assert np.allclose(np.diff(hues + [hues[0] + 360]), S.HUE_STEP)
