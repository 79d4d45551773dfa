"""The concept star: the base world does not move, the star is a well-formed shape the renderer draws and
the opt-in oracle reads as well as the others, and the concept's few training images are what they claim."""

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from text2image import text
from text2image.world import captions as C
from text2image.world import concept, datasets, degrade, names, oracle, splits
from text2image.world import render as R
from text2image.world import scene as S
from text2image.world.bench import CLEAN_TOLERANCE, same_scene, shape_accuracy
from text2image.world.scene import ALL_SHAPES, COLOURS, SHAPES, SIZES, Object, Scene, WorldError


def _star(size="large", colour="red", x=0.5, y=0.5, resolution=32):
    image, masks = R.render_one(Scene((Object("star", colour, size, x, y),)), resolution)
    return image, masks[0]


# ----------------------------------------------------------------------------- the base world

def test_the_base_shapes_keep_their_names_and_indices():
    assert SHAPES == ("circle", "square", "triangle", "diamond", "cross")
    assert S.CONCEPT_SHAPES == ("star",) and ALL_SHAPES[:len(SHAPES)] == SHAPES and "star" not in SHAPES


def test_no_split_draws_a_star_and_no_caption_word_names_one():
    for split in splits.SPLITS:
        for e in splits.examples(split, 0, 200):
            assert all(o.shape in SHAPES for o in e.scene), (split, e.index)
            assert not {"star", "stars"} & set(e.caption.words)
    assert not {"star", "stars"} & set(C.vocabulary())
    assert "stars" not in C.SINGULAR
    with pytest.raises(text.UnknownWordError, match="unknown word.*'star'"):
        text.tokenizer().check("a red star")
    with pytest.raises(WorldError, match="unknown shape 'star'"):  # a caption cannot name the concept
        C.write(C.Prompt("single", (C.Spec("star", "red"),)), np.random.default_rng(0))


def test_the_star_changes_no_constant_the_base_world_is_keyed_or_boxed_by(monkeypatch):
    """With the star's entries taken out of the world's tables, the caches' fingerprint, the render box
    and the overlap measure come out the same: the concept leaves no trace in them."""
    with_star = (datasets.fingerprint(), R.box_size(32), R.box_size(64), S.naive_overlap_rate(3, trials=500))
    base_extent = {s: S.EXTENT[s] for s in SHAPES}
    monkeypatch.setattr(S, "EXTENT", base_extent)
    monkeypatch.setattr(R, "EXTENT", base_extent)
    assert (datasets.fingerprint(), R.box_size(32), R.box_size(64), S.naive_overlap_rate(3, trials=500)) == with_star


def test_base_renders_do_not_move_when_stars_share_the_batch():
    scenes = [e.scene for e in splits.examples("test", 0, 100)]
    stars = [Scene((Object("star", c, s, 0.3 + 0.1 * k, 0.6),)) for k, (c, s) in
             enumerate(itertools.product(list(COLOURS)[:3], SIZES))]
    alone, masks_alone = R.render(scenes, 32)
    mixed, masks_mixed = R.render(stars[:3] + scenes[:50] + stars[3:] + scenes[50:], 32)
    keep = [k for k in range(len(mixed)) if k not in (0, 1, 2, 53, 54, 55)]
    assert np.array_equal(alone, mixed[keep]) and np.array_equal(masks_alone, masks_mixed[keep])


def test_the_oracle_reads_the_base_world_as_before_unless_asked():
    examples = splits.examples("test", 0, 300)
    images, _ = R.render([e.scene for e in examples], 32)
    noisy = degrade.degrade(images, "noise", np.random.default_rng(0), **degrade.STRONG["noise"])
    for res in (32, 64):  # the base templates are the first ones of the extended bank, bit for bit
        base, extended = oracle.templates(res), oracle.templates(res, ALL_SHAPES)
        assert base.shape[0] == len(SHAPES) and np.array_equal(extended[:len(SHAPES)], base)
    for seen in (images, noisy):
        default = oracle.parse_batch(seen, details=True)
        assert default == oracle.parse_batch(seen, details=True, shapes=SHAPES)
        assert all(d["object"].shape != "star" for found in default for d in found)
    exact = [same_scene(e.scene.objects, f, CLEAN_TOLERANCE / 32)
             for e, f in zip(examples, oracle.parse_batch(images))]
    assert all(exact)
    # Offered the star, the oracle still reads every clean base object as it was.
    assert oracle.parse_batch(images, shapes=ALL_SHAPES) == oracle.parse_batch(images)


# ----------------------------------------------------------------------------- the star's geometry

def test_the_star_fits_its_extent_and_no_render_box_grows():
    assert R.STAR_OUTER == S.EXTENT["star"] <= max(S.EXTENT[s] for s in SHAPES)
    t = np.linspace(-1.3, 1.3, 1201)
    inside = R.inside("star", t[None, :], t[:, None])
    far = np.hypot(t[None, :], t[:, None])[inside].max()
    assert S.EXTENT["star"] - 0.01 < far <= S.EXTENT["star"]  # the smallest centred circle that holds it


def test_the_stars_area_lies_among_the_base_shapes_and_its_arms_are_two_pixels_wide():
    t = np.linspace(-1.3, 1.3, 1301)
    cell = (t[1] - t[0]) ** 2
    area = {s: R.inside(s, t[None, :], t[:, None]).sum() * cell for s in ALL_SHAPES}
    analytic = R.STAR_POINTS * R.STAR_OUTER * R.STAR_INNER * math.sin(math.pi / R.STAR_POINTS)
    assert abs(area["star"] - analytic) / analytic < 0.01
    assert 0.55 < area["star"] / area["circle"] < 0.85
    assert min(area[s] for s in SHAPES) <= area["star"] <= max(area[s] for s in SHAPES)
    assert area["star"] >= oracle.smallest_area(32) / (S.RADIUS["small"] * 32) ** 2  # not taken for a speck
    arm = 2 * R.STAR_INNER * math.sin(math.pi / R.STAR_POINTS)  # width at the root of a point, in r
    assert arm * S.RADIUS["small"] * 32 >= 2.0


@pytest.mark.parametrize("res", [32, 64])
def test_rendered_stars_have_their_centroid_at_the_centre_and_one_piece(res):
    yy, xx = np.mgrid[0:res, 0:res] + 0.5
    for size in SIZES:
        for k in range(8):
            x, y = 0.45 + 0.0137 * k, 0.52 - 0.0091 * k
            image, mask = _star(size, x=x, y=y, resolution=res)
            cover = (image[..., 0].astype(float) - S.BACKGROUND[0]) / (COLOURS["red"][0] - S.BACKGROUND[0])
            cx, cy = (cover * xx).sum() / cover.sum(), (cover * yy).sum() / cover.sum()
            assert max(abs(cx - x * res), abs(cy - y * res)) <= 1 / 8, (size, k)
            assert ndimage.label(mask)[1] == 1, (size, k)  # 4-connected: the points hold to the body


def test_the_star_points_up():
    """Straight up from the centre runs a point (to R), straight down the notch between the two lower
    points (at the inner radius)."""
    image, _ = _star(resolution=64)
    column = np.nonzero(image[:, 32, 0] > S.BACKGROUND[0])[0] + 0.5  # any ink in the centre column
    up, down = 32 - column.min(), column.max() - 32
    r = S.RADIUS["large"] * 64
    assert up > 0.9 * R.STAR_OUTER * r and down < 1.1 * R.STAR_INNER * r + 1


# ----------------------------------------------------------------------------- rendering and reading stars

@pytest.mark.parametrize("res", [32, 64])
def test_stars_of_both_sizes_and_every_colour_render_and_read_back(res):
    scenes = [Scene((Object("star", colour, "small", 0.25, 0.3), Object("star", colour, "large", 0.65, 0.68),
                     Object("circle", colour, "small", 0.75, 0.2)))
              for colour in COLOURS]
    images, masks = R.render(scenes, res)
    for scene, image, mask in zip(scenes, images, masks):
        assert mask[0].sum() < mask[1].sum() and (mask[:3].sum(axis=0) <= 1).all()
        found = oracle.parse(image, shapes=ALL_SHAPES)
        assert same_scene(scene.objects, found, CLEAN_TOLERANCE / res), found
        assert "star" not in {o.shape for o in oracle.parse(image)}  # opt-in: by default it is never seen


def test_adding_the_star_reads_it_right_and_costs_the_other_shapes_nothing():
    """Measured on 200 single-object renders of each shape (clean) and 60 under each moderate degradation,
    the same images for the base oracle and the one that also considers the star."""
    clean_all = shape_accuracy(200, 32, ALL_SHAPES, ALL_SHAPES)["clean"]
    clean_base = shape_accuracy(200, 32, SHAPES, SHAPES)["clean"]
    names_ = list(degrade.DEGRADATIONS)
    bad_all = shape_accuracy(60, 32, ALL_SHAPES, ALL_SHAPES, names_)
    bad_base = shape_accuracy(60, 32, SHAPES, SHAPES, names_)

    def pooled(acc, shape):  # over the five degradations: 300 renders of each shape
        return float(np.mean([acc[name][shape] for name in names_]))

    assert clean_all["star"] >= 0.98, clean_all
    assert pooled(bad_all, "star") >= 0.98, bad_all
    for shape in SHAPES:
        assert clean_all[shape] >= clean_base[shape] - 0.01, (shape, clean_all, clean_base)
        assert pooled(bad_all, shape) >= pooled(bad_base, shape) - 0.01, (shape, bad_all, bad_base)
    # The base oracle has no word for the star: it cannot read one right, so the measure can fail.
    assert shape_accuracy(20, 32, ("star",), SHAPES)["clean"]["star"] == 0.0


def test_unknown_shapes_are_refused_with_the_known_ones_listed():
    with pytest.raises(WorldError, match=r"unknown shape 'hexagon'.*star"):
        R.render([Scene((Object("hexagon", "red", "small", 0.5, 0.5),))])
    with pytest.raises(WorldError, match=r"unknown shape 'hexagon'.*star"):
        R.inside("hexagon", np.zeros(1), np.zeros(1))
    with pytest.raises(WorldError, match=r"unknown shape 'hexagon'.*star"):
        S.place(np.random.default_rng(0), [("hexagon", "red", "small")])
    with pytest.raises(WorldError, match=r"unknown shape 'hexagon'.*star"):
        oracle.templates(32, ("circle", "hexagon"))
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(WorldError, match="a shape to consider"):
        oracle.parse(image, shapes=())
    with pytest.raises(WorldError, match="repeat"):
        oracle.parse(image, shapes=("star", "star"))
    assert S.place(np.random.default_rng(0), [("star", "red", "small")])[0].shape == "star"


def test_the_star_has_a_feminine_french_name():
    assert names.phrase("star", "blue", "large", lang="fr") == "grande étoile bleue"
    assert names.phrase("star", "green", "small", lang="fr") == "petite étoile verte"
    assert names.phrase("star", "blue", "large", lang="en") == "large blue star"


# ----------------------------------------------------------------------------- the concept's images

def test_the_training_examples_are_a_few_varied_stars_fixed_by_the_seed():
    ex = concept.training_examples()
    assert concept.MIN_EXAMPLES <= len(ex) <= concept.MAX_EXAMPLES
    assert ex.images.shape == (len(ex), 32, 32, 3) and ex.images.dtype == np.uint8
    assert ex.masks.shape == (len(ex), 32, 32) and ex.masks.any(axis=(1, 2)).all()
    assert all(len(s) == 1 and s[0].shape == "star" for s in ex.scenes)
    objs = [s[0] for s in ex.scenes]
    assert len({o.colour for o in objs}) == len(objs) and {o.size for o in objs} == set(SIZES)
    xs, ys = np.array([o.x for o in objs]), np.array([o.y for o in objs])
    assert np.ptp(xs) > 0.25 and np.ptp(ys) > 0.25
    assert min(math.dist(a, b) for a, b in itertools.combinations(zip(xs, ys), 2)) >= concept.SPREAD
    for scene, image in zip(ex.scenes, ex.images):
        assert same_scene(scene.objects, oracle.parse(image, shapes=ALL_SHAPES), CLEAN_TOLERANCE / 32)
    again = concept.training_examples()
    assert again.scenes == ex.scenes and np.array_equal(again.images, ex.images)
    assert concept.training_examples(seed=1).scenes != ex.scenes


@pytest.mark.parametrize("n", [4, 8])
def test_any_allowed_count_keeps_colours_sizes_and_positions_varied(n):
    for seed in range(5):
        objs = [s[0] for s in concept.training_examples(n, seed=seed).scenes]
        assert len(objs) == n and len({o.colour for o in objs}) == min(n, len(COLOURS))
        assert {o.size for o in objs} == set(SIZES)
        assert min(math.dist((a.x, a.y), (b.x, b.y)) for a, b in itertools.combinations(objs, 2)) >= concept.SPREAD


@pytest.mark.parametrize("n", [3, 9])
def test_too_few_or_too_many_training_examples_are_refused(n):
    with pytest.raises(WorldError, match="4 to 8"):
        concept.training_examples(n)


def test_relation_prompts_put_the_star_beside_a_base_shape_as_they_say():
    prompts = concept.relation_prompts(40, seed=3)
    assert [p.prompt for p in prompts] == [p.prompt for p in concept.relation_prompts(40, seed=3)]
    assert len({p.prompt.relation[1] for p in prompts}) == len(S.RELATIONS)
    images, _ = R.render([p.scene for p in prompts], 32)
    vocabulary = set(C.vocabulary())
    for p, image in zip(prompts, images):
        star, other = p.prompt.specs
        i, relation, j = p.prompt.relation
        assert star.shape == "star" and other.shape in SHAPES and star.colour != other.colour
        assert (other.colour, other.shape) not in splits.HELDOUT_PAIRS
        assert star.matches(p.scene[0]) and other.matches(p.scene[1]) and len(p.scene) == 2
        assert S.holds(p.scene[i], relation, p.scene[j])
        words = p.text().split()
        assert words.count(concept.PLACEHOLDER) == 1 and set(words) - {concept.PLACEHOLDER} <= vocabulary
        assert other.shape in words and "sks" in p.text("sks").split()
        assert same_scene(p.scene.objects, oracle.parse(image, shapes=ALL_SHAPES), CLEAN_TOLERANCE / 32)
    first = prompts[0]
    star, other = first.prompt.specs
    assert first.text().startswith(f"a {star.size} {star.colour} <star> ")
    assert first.text().endswith(f" a {other.size} {other.colour} {other.shape}")
