"""The colour readings of the benchmark's images: colour apart from shape."""

import dataclasses

import numpy as np
import pytest

from text2image.evaluate import benchmark as B
from text2image.evaluate import readings as R
from text2image.world import captions as C
from text2image.world import splits
from text2image.world.render import render
from text2image.world.scene import Object
from text2image.world.tensors import RESOLUTION, prompt_renders


def objects(*specs):
    return [Object(shape, colour, "large", x, y) for shape, colour, x, y in specs]


def test_a_blob_of_the_right_colour_passes_by_colour_and_fails_by_shape():
    prompt = C.parse("a red circle").prompt
    square = objects(("square", "red", 0.5, 0.5))
    assert R.read(prompt, square) == {"colour": True}
    assert R.read(prompt, square + objects(("circle", "blue", 0.2, 0.2))) == {"colour": False}  # another colour too
    assert R.read(prompt, []) == {"colour": False}


def test_two_colours_and_their_relation():
    pair = C.parse("a red circle and a blue square").prompt
    assert R.read(pair, objects(("cross", "red", 0.2, 0.5), ("cross", "blue", 0.8, 0.5))) == {"both_colours": True}
    assert R.read(pair, objects(("circle", "red", 0.2, 0.5))) == {"both_colours": False}
    left = C.parse("a red circle to the left of a blue square").prompt
    assert R.read(left, objects(("cross", "red", 0.2, 0.5), ("cross", "blue", 0.8, 0.5))) == {"relation": True}
    assert R.read(left, objects(("cross", "red", 0.8, 0.5), ("cross", "blue", 0.2, 0.5))) == {"relation": False}
    assert R.read(left, objects(("cross", "red", 0.2, 0.5))) == {}  # not both colours: the relation is not read


def test_prompts_without_two_named_colours_are_not_read():
    assert R.read(C.parse("a circle").prompt, objects(("circle", "red", 0.5, 0.5))) == {}
    same = C.parse("a red circle and a red square").prompt
    assert R.read(same, objects(("circle", "red", 0.2, 0.5))) == {}


def test_world_renders_read_right_and_recoloured_shapes_keep_their_colour(tmp_path):
    def wrong_shapes(prompts, seed):
        """The world's scenes with every shape changed: right colours, wrong shapes."""
        shapes = ("circle", "square", "triangle", "diamond", "cross")
        scenes = []
        for i, text in enumerate(prompts):
            scene = splits.scene_for(C.parse(text).prompt, np.random.default_rng([seed, i]))
            moved = [dataclasses.replace(o, shape=shapes[(shapes.index(o.shape) + 1) % len(shapes)])
                     for o in scene.objects]
            scenes.append(dataclasses.replace(scene, objects=tuple(moved)))
        return render(scenes, RESOLUTION)[0]

    world = R.run(prompt_renders, "smoke", progress=False)
    assert all(world[name]["p"] == 1.0 for name in ("colour", "both_colours")) and world["relation"]["n"] > 0
    assert world["relation"]["p"] == 1.0
    shifted = R.run(wrong_shapes, "smoke", progress=False)
    assert shifted["colour"]["p"] == 1.0 and shifted["both_colours"]["p"] == 1.0
    strict = B.run(wrong_shapes, "smoke", progress=False, groups=["single"])
    assert strict["categories"]["colours"]["p"] < 0.5  # the benchmark, which wants the shape, fails them
    black = R.run(lambda p, s: np.zeros((len(p), RESOLUTION, RESOLUTION, 3), np.uint8), "smoke", progress=False)
    assert black["colour"]["p"] == 0.0 and black["relation"]["n"] == 0 and black["colour"]["hi"] > 0


def test_readings_are_cached_in_the_checkpoint_folder(tmp_path):
    calls = []

    def counted(prompts, seed):
        calls.append(seed)
        return prompt_renders(prompts, seed)

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = R.readings(counted, "smoke", tmp_path, {"steps": 2}, progress=False)
    n = len(calls)
    assert n == len(B.calls("smoke", R.GROUPS)) and list(tmp_path.glob("readings-*.json"))
    assert R.readings(counted, "smoke", tmp_path, {"steps": 2}, progress=False) == first and len(calls) == n
    R.readings(counted, "smoke", tmp_path, {"steps": 4}, progress=False)  # other settings: measured again
    assert len(calls) == 2 * n


def test_a_wrong_generator_output_is_one_clear_error():
    with pytest.raises(B.GeneratorError, match="expected a uint8 array"):
        R.run(lambda p, s: np.zeros((len(p), 8, 8, 3), np.uint8), "smoke", progress=False)


def test_a_reading_with_no_image_to_read_shows_a_dash_not_nan():
    from text2image.evaluate import intervals
    from text2image.tables import interval

    assert interval(intervals.share(0, 0).as_dict()) == "–"
    assert interval(intervals.share(3, 4).as_dict()).startswith("75")
