"""Splits: disjoint seeds, held-out compositions absent from training and present where promised."""

import numpy as np
import pytest

from text2image.world import parse_caption
from text2image.world import splits as SP
from text2image.world.scene import INVERSE, WorldError, holds


def test_seed_ranges_are_disjoint():
    ranges = sorted((SP.SEED_BASE[s], SP.SEED_BASE[s] + SP.SPAN) for s in SP.SPLITS)
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    with pytest.raises(WorldError, match="unknown split"):
        SP.example("training", 0)
    with pytest.raises(WorldError, match="outside"):
        SP.seed("train", SP.SPAN)


def test_training_never_shows_heldout_compositions():
    for split in ("train", "val", "test"):
        for e in SP.examples(split, 0, 700 if split == "train" else 200):
            assert not {(o.colour, o.shape) for o in e.scene} & set(SP.HELDOUT_PAIRS)
            assert SP.relation_of(e.prompt) not in SP.HELDOUT_RELATIONS
            assert not SP.is_heldout(e.prompt)


def test_heldout_splits_hold_what_they_promise():
    for e in SP.examples("heldout_pairs", 0, 150):
        assert {(o.colour, o.shape) for o in e.scene} & set(SP.HELDOUT_PAIRS)
    orders = set()
    for e in SP.examples("heldout_relations", 0, 150):
        assert SP.relation_of(e.prompt) in SP.HELDOUT_RELATIONS
        assert not {(o.colour, o.shape) for o in e.scene} & set(SP.HELDOUT_PAIRS)
        orders.add(e.prompt.relation[1])
    assert orders == {"left", "right", "above", "below"}  # said both ways round
    for e in SP.examples("multigen", 0, 50):
        assert len(e.scene) == 5 and len({o.shape for o in e.scene}) == 5


def test_canonical_relations():
    assert SP.canonical("square", "right", "circle") == ("circle", "left", "square")
    assert SP.canonical("cross", "below", "triangle") == ("triangle", "above", "cross")
    assert SP.canonical("circle", "above", "cross") == ("circle", "above", "cross")


def test_mix_changes_kinds():
    only = SP.examples("train", 0, 40, mix={"count": 1.0})
    assert {e.prompt.kind for e in only} == {"count"}
    with pytest.raises(WorldError, match="mix"):
        SP.example("train", 0, mix={"poem": 1.0})


def test_a_shape_twin_changes_one_shape_and_nothing_else():
    for e in SP.examples("train", 0, 300):
        twin = SP.shape_twin(e, np.random.default_rng([5, e.index]))
        assert twin.prompt.kind == e.prompt.kind and twin.prompt.count == e.prompt.count
        assert twin.prompt.relation == e.prompt.relation
        changed = [(a, b) for a, b in zip(e.prompt.specs, twin.prompt.specs) if a != b]
        assert len(changed) == 1
        (before, after), = changed
        assert before.shape != after.shape and (before.colour, before.size) == (after.colour, after.size)
        assert not SP.is_heldout(twin.prompt)
        assert [o.colour for o in twin.scene] == [o.colour for o in e.scene]
        assert [o.size for o in twin.scene] == [o.size for o in e.scene]
        assert all(spec.matches(o) for o, spec in zip(twin.scene, twin.prompt.specs * twin.prompt.count))
        assert parse_caption(twin.caption.text).prompt.specs == twin.prompt.specs
    again = SP.shape_twin(e, np.random.default_rng([5, e.index]))
    assert again == twin  # a pure function of its random stream


def test_a_relation_twin_swaps_where_the_two_objects_stand():
    seen = 0
    for e in SP.examples("train", 0, 200):
        twin = SP.relation_twin(e, np.random.default_rng([5, e.index]))
        if e.prompt.kind != "relation":
            assert twin is None
            continue
        if twin is None:  # only when the reversed fact is held out
            i, rel, j = e.prompt.relation
            assert SP.is_heldout(SP.replace(e.prompt, relation=(i, INVERSE[rel], j)))
            continue
        seen += 1
        i, rel, j = e.prompt.relation
        assert twin.prompt.relation == (i, INVERSE[rel], j) and twin.prompt.specs == e.prompt.specs
        assert [(o.shape, o.colour, o.size) for o in twin.scene] == [(o.shape, o.colour, o.size) for o in e.scene]
        assert holds(twin.scene[i], INVERSE[rel], twin.scene[j]) and not holds(twin.scene[i], rel, twin.scene[j])
        assert parse_caption(twin.caption.text).prompt.relation == twin.prompt.relation
        assert not SP.is_heldout(twin.prompt)
    assert seen > 30


def test_no_relation_twin_for_a_held_out_relation():
    caption = parse_caption("a red square to the left of a blue circle")  # reversed: a circle left of a square
    scene = SP.place(np.random.default_rng(0), [("square", "red", "small"), ("circle", "blue", "small")],
                     caption.prompt.relation)
    assert SP.relation_twin(SP.Example("train", 0, scene, caption), np.random.default_rng(0)) is None


def test_no_shape_twin_when_every_change_is_forbidden():
    caption = parse_caption("a red circle, a red square, a red cross and a red diamond")
    items = [(s.shape, s.colour, "small") for s in caption.prompt.specs]
    scene = SP.place(np.random.default_rng(0), items)
    example = SP.Example("train", 0, scene, caption)
    assert SP.shape_twin(example, np.random.default_rng(0)) is None  # only a held-out red triangle is left
