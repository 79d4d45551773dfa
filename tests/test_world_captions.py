"""Captions: phrasings, structured prompts, word-to-object links, and reading prompts back."""

import numpy as np
import pytest

from text2image.world import captions as C
from text2image.world import splits
from text2image.world.scene import WorldError


def test_every_caption_reads_back_to_its_prompt_and_groundings():
    kinds = set()
    for split in ("train", "test", "heldout_pairs", "heldout_relations", "multigen"):
        for e in splits.examples(split, 0, 150):
            assert C.parse(e.caption.text) == e.caption
            kinds.add(e.prompt.kind)
            assert set(e.caption.words) <= set(C.vocabulary())
    assert kinds == set(C.KINDS)


def test_nouns_point_to_the_objects_they_name():
    for e in splits.examples("train", 0, 300):
        nouns = e.caption.nouns
        assert len(nouns) == len(e.prompt.specs)
        named = set()
        for g in nouns:
            assert e.caption.words[g.word_index] == g.word
            assert g.token_index == g.word_index + 1
            for k in g.objects:
                assert e.scene[k].shape == C.SINGULAR.get(g.word, g.word)
                named.add(k)
        assert named == set(range(len(e.scene)))  # captions describe every object
        for g in e.caption.groundings:
            if g.role == "colour":
                assert all(e.scene[k].colour == g.word for k in g.objects)
            if g.role == "size":
                assert all(e.scene[k].size == g.word for k in g.objects)


def test_several_phrasings_of_one_prompt():
    prompt = C.Prompt("relation", (C.Spec("circle", "red"), C.Spec("square", "blue")), 1, (0, "left", 1))
    texts = {C.write(prompt, np.random.default_rng(s)).text for s in range(60)}
    assert len(texts) >= 4
    assert "a red circle to the left of a blue square" in texts


@pytest.mark.parametrize("text, prompt", [
    ("a large red circle", C.Prompt("single", (C.Spec("circle", "red", "large"),))),
    ("three green triangles", C.Prompt("count", (C.Spec("triangle", "green"),), 3)),
    ("a red circle, a blue square and a green cross",
     C.Prompt("list", (C.Spec("circle", "red"), C.Spec("square", "blue"), C.Spec("cross", "green")))),
    ("a blue square is on the right of a red circle",
     C.Prompt("relation", (C.Spec("square", "blue"), C.Spec("circle", "red")), 1, (0, "right", 1))),
    ("a circle", C.Prompt("single", (C.Spec("circle"),))),
])
def test_parse_hand_written_prompts(text, prompt):
    assert C.parse(text).prompt == prompt


@pytest.mark.parametrize("text, words", [
    ("a purple circle", "unknown word.*'purple'.*vocabulary is"),
    ("a red circle above", "cannot read"),
    ("two red circle", "disagree"),
    ("six red circles", "unknown word.*'six'"),
    ("", "empty"),
])
def test_bad_prompts_raise_clear_errors(text, words):
    with pytest.raises(WorldError, match=words):
        C.parse(text)


def test_check_prompt_rejects_impossible_prompts():
    with pytest.raises(WorldError, match="two objects"):
        C.check_prompt(C.Prompt("relation", (C.Spec("circle", "red"),), 1, (0, "left", 1)))
    with pytest.raises(WorldError, match="at most 5"):
        C.check_prompt(C.Prompt("list", tuple(C.Spec("circle", c) for c in
                                              ("red", "blue", "green", "cyan", "yellow", "magenta"))))
