"""The pivotal-tuning chapter's measures (issue: pivotal tuning) on drawers whose answer is known: the world's own
scenes score full marks, a drawer that copies the training images is caught copying and keeping their sizes, a
drawer that paints diamonds for stars reconstructs nothing but composes everything, the base reference swaps in a
base shape the prompts allow; and the shells of the text states, with the layer norm that pins their norms."""

import dataclasses

import numpy as np
import pytest
import torch

from text2image.evaluate import concept as E
from text2image.world import concept
from text2image.world.scene import SHAPES, Scene
from text2image.world.splits import HELDOUT_PAIRS

from test_textual_inversion import tiny_pipe

N = 24


drawer = E.drawing


def with_shape(scene: Scene, shape: str) -> Scene:
    return Scene((dataclasses.replace(scene[0], shape=shape), *scene[1:]))


def test_the_attribute_prompts_take_every_colour_and_size_in_turn():
    prompts = concept.attribute_prompts(N, seed=3)
    pairs = [(p.prompt.specs[0].colour, p.prompt.specs[0].size) for p in prompts]
    assert len(set(pairs[:12])) == 12 and pairs[12:] == pairs[:12]
    assert prompts[0].text() == f"a {pairs[0][1]} {pairs[0][0]} <star>"
    assert prompts[0].text("diamond").endswith("diamond")
    assert all(p.scene[0].shape == "star" and (p.scene[0].colour, p.scene[0].size) == q for p, q in zip(prompts, pairs))
    seen = {(s[0].colour, s[0].size) for s in concept.training_examples().scenes}
    assert sum(q in seen for q in pairs[:12]) == 6  # half the pairs the examples showed, half not


def test_a_round_trip_is_applied_to_every_batch():
    prompts = concept.attribute_prompts(E.BATCH + 5, seed=5)
    calls = []
    generate = E.drawing([p.scene for p in prompts], through=lambda images: calls.append(len(images)) or images * 0)
    result = E.reconstruction(generate, len(prompts), seed=5)
    assert calls == [E.BATCH, 5] and result["star"]["p"] == 0.0 and result["read_as"]["nothing"] == len(prompts)


def test_the_world_scenes_score_full_marks():
    prompts = concept.attribute_prompts(N, seed=5)
    result = E.reconstruction(drawer([p.scene for p in prompts]), N, seed=5)
    for key in ("star", "colour", "size_seen", "size_unseen"):
        assert result[key]["p"] == 1.0, key
    assert result["copied"] == result["copied_world"] and result["read_as"]["star"] == N
    relations = concept.relation_prompts(N, seed=5)
    edit = E.editability(drawer([p.scene for p in relations]), N, seed=5)
    assert edit["position"]["p"] == edit["composed"]["p"] == edit["relation"]["p"] == 1.0


def test_a_drawer_that_copies_the_examples_is_caught():
    examples = concept.training_examples()
    by_colour = {s[0].colour: s for s in examples.scenes}
    prompts = concept.attribute_prompts(N, seed=5)
    result = E.reconstruction(drawer([by_colour[p.prompt.specs[0].colour] for p in prompts]), N, seed=5)
    assert result["star"]["p"] == result["colour"]["p"] == result["copied"]["p"] == 1.0
    assert result["size_seen"]["p"] == 1.0 and result["size_unseen"]["p"] == 0.0  # the example's size, not the asked
    assert result["copied_world"]["p"] < 0.25


def test_diamonds_for_stars_reconstruct_nothing_but_compose():
    prompts = concept.attribute_prompts(N, seed=5)
    result = E.reconstruction(drawer([with_shape(p.scene, "diamond") for p in prompts]), N, seed=5)
    assert result["star"]["p"] == 0.0 and result["read_as"]["diamond"] == N and result["size_unseen"]["n"] == 0
    relations = concept.relation_prompts(N, seed=5)
    edit = E.editability(drawer([with_shape(p.scene, "diamond") for p in relations]), N, seed=5)
    assert edit["position"]["p"] == 0.0 and edit["composed"]["p"] == 1.0 and edit["second"]["p"] == 1.0


def test_the_base_reference_swaps_in_an_allowed_base_shape():
    relations = concept.relation_prompts(N, seed=5)
    words = [E.stand_in(p, k) for k, p in enumerate(relations)]
    for word, p in zip(words, relations):
        star, other = p.prompt.specs
        assert word in SHAPES and word != other.shape and (star.colour, word) not in HELDOUT_PAIRS
    assert len(set(words)) > 2
    edit = E.base_editability(drawer([with_shape(p.scene, w) for w, p in zip(words, relations)]), N, seed=5)
    assert edit["position"]["p"] == 1.0
    wrong = E.base_editability(drawer([p.scene for p in relations]), N, seed=5)  # stars where base shapes are asked
    assert wrong["position"]["p"] == 0.0 and wrong["composed"]["p"] == 1.0


# ----------------------------------------------------------------------------- the shells

def test_a_cap_of_a_sphere_varies_less_from_the_origin_than_from_its_centre():
    g = torch.Generator().manual_seed(0)
    pole = torch.zeros(16)
    pole[0] = 1.0
    points = torch.nn.functional.normalize(pole + 0.4 * torch.randn(2000, 16, generator=g), dim=-1) * 5.0
    found = E.shells(points)
    assert found["raw"]["norm_cv"] < 1e-5 and found["raw"]["centre_shift"] > 0.5
    assert found["centred"]["norm_cv"] > 0.1 and found["centred"]["centre_shift"] < 1e-5
    assert found["raw"]["variance"] == pytest.approx(found["centred"]["variance"], rel=1e-4)


def test_the_layer_norm_pins_the_norms_of_the_text_states():
    pipe = tiny_pipe()
    radius = E.layer_norm_radius(pipe.text_encoder)
    norm = next(m for n, m in pipe.text_encoder.named_modules() if n.endswith("final_layer_norm"))
    assert radius == pytest.approx(float((norm.weight ** 2 + norm.bias ** 2).sum().sqrt()))
    captions = ["a small red circle", "a large blue square to the left of a green cross", "two red circles"]
    found = E.state_shells(pipe.text_encoder, pipe.tokenizer, captions, position=4)
    assert found["captions"] == 2  # "two red circles" has no word at the fifth place
    assert found["inner"]["raw"]["norm_mean"] == pytest.approx(radius, rel=0.15)
    assert found["eos"]["raw"]["norm_mean"] == pytest.approx(radius, rel=0.15)
    assert np.isfinite(found["inner"]["centred"]["norm_cv"])
