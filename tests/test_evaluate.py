"""GenEval-style verdicts, MG-k and relation accuracy on hand-built scenes."""

import numpy as np
import pytest

from text2image.evaluate import verdicts as E
from text2image.world import splits
from text2image.world.render import render
from text2image.world.scene import Object, Scene


def image(*objects, res=32):
    images, _ = render([Scene(tuple(objects))], res)
    return images[0]


RED_CIRCLE_L = Object("circle", "red", "small", 0.25, 0.5)
BLUE_SQUARE_R = Object("square", "blue", "small", 0.75, 0.5)


def test_single_object_and_colours():
    v = E.score("a red circle", image(RED_CIRCLE_L))
    assert v.checks == {"single_object": True, "colours": True} and v.correct and v.found == 1
    v = E.score("a red circle", image(Object("circle", "green", "small", 0.5, 0.5)))
    assert v.checks == {"single_object": True, "colours": False} and v.found == 0
    v = E.score("a red circle", image(BLUE_SQUARE_R))
    assert v.checks == {"single_object": False, "colours": False}
    v = E.score("a large red circle", image(RED_CIRCLE_L))
    assert v.correct and v.sizes is False


@pytest.mark.parametrize("n, ok", [(2, False), (3, True), (4, False)])
def test_counting(n, ok):
    spots = [(0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)]
    objs = [Object("triangle", "green", "small", x, y) for x, y in spots[:n]]
    objs.append(Object("triangle", "red", "small", 0.5, 0.5))  # another colour does not count
    v = E.score("three green triangles", image(*objs))
    assert v.checks == {"counting": ok}


def test_two_objects_and_colour_attribution():
    prompt = "a red circle and a blue square"
    assert E.score(prompt, image(RED_CIRCLE_L, BLUE_SQUARE_R)).checks == {"two_objects": True, "colour_attribution": True}
    swapped = image(Object("circle", "blue", "small", 0.25, 0.5), Object("square", "red", "small", 0.75, 0.5))
    assert E.score(prompt, swapped).checks == {"two_objects": True, "colour_attribution": False}
    assert E.score(prompt, image(RED_CIRCLE_L)).checks == {"two_objects": False, "colour_attribution": False}


def test_position_and_relation_accuracy():
    right = E.score("a red circle to the left of a blue square", image(RED_CIRCLE_L, BLUE_SQUARE_R))
    assert right.checks == {"position": True} and right.relation is True
    wrong = E.score("a red circle to the right of a blue square", image(RED_CIRCLE_L, BLUE_SQUARE_R))
    assert wrong.checks == {"position": False} and wrong.relation is False
    above = E.score("a blue square above a red circle", image(Object("square", "blue", "small", 0.5, 0.2),
                                                              Object("circle", "red", "small", 0.55, 0.8)))
    assert above.relation is True
    missing = E.score("a red circle left of a blue square", image(RED_CIRCLE_L))
    assert missing.checks == {"position": False} and missing.relation is None and missing.found == 1
    s = E.summary([right, wrong, missing])
    assert s["position"] == pytest.approx(1 / 3) and s["relation"] == pytest.approx(1 / 2) and s["n_relation"] == 2


def test_mg_k_on_five_object_prompts():
    e = splits.example("multigen", 0)
    full = image(*e.scene.objects)
    partial = image(*e.scene.objects[:3])
    verdicts = [E.score(e.caption, full), E.score(e.caption, partial)]
    assert [v.found for v in verdicts] == [5, 3]
    assert E.mg(verdicts, 3) == 1.0 and E.mg(verdicts, 4) == 0.5 and E.mg(verdicts, 5) == 0.5


def test_summary_right_pairs_versus_shuffled():
    examples = splits.examples("test", 0, 200)
    images, _ = render([e.scene for e in examples], 32)
    captions = [e.caption for e in examples]
    good = E.summary(E.score_batch(captions, images))
    assert good["overall"] == 1.0 and good["mg1"] == 1.0 and good["relation"] == 1.0
    bad = E.summary(E.score_batch(captions[1:] + captions[:1], images))
    assert bad["overall"] < 0.5
    # the overall gets the benchmark's interval: around the same mean, open below a perfect score, tighter with more images
    shares = [E.overall_share(good), E.overall_share(bad)]
    assert [s["p"] for s in shares] == pytest.approx([good["overall"], bad["overall"]])
    assert shares[0]["lo"] < 1.0 == shares[0]["hi"] and shares[1]["lo"] < bad["overall"] < shares[1]["hi"]
    fewer = E.overall_share(E.summary(E.score_batch(captions[1:51] + captions[:1], images[:51])))
    assert fewer["hi"] - fewer["lo"] > shares[1]["hi"] - shares[1]["lo"]
    with pytest.raises(ValueError):
        E.score_batch(captions[:3], images[:2])
