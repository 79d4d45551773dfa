"""The text-to-image benchmark: its intervals, its fixed prompt set, its cache, its errors, its reference rows."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from text2image import text
from text2image.charts import benchmark as charts
from text2image.evaluate import benchmark as B
from text2image.evaluate import frechet, intervals, references, verdicts
from text2image.models import clip as M
from text2image.world import captions as C
from text2image.world import splits
from text2image.world.scene import Object
from text2image.world.tensors import prompt_renders


def test_wilson_interval_matches_the_published_formula():
    assert intervals.wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert intervals.wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    lo, hi = intervals.wilson(10, 10)
    assert lo == pytest.approx(0.72247, abs=1e-5) and hi == pytest.approx(1.0)
    assert intervals.wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        intervals.wilson(11, 10)


@pytest.mark.parametrize("n", [1, 12, 600])
def test_an_interval_at_the_edge_holds_its_share(n):
    """At k = 0 (or n) the bound is the share itself, exactly: an error bar never gets a negative length."""
    assert intervals.wilson(0, n)[0] == 0.0 and intervals.wilson(n, n)[1] == 1.0


def test_the_chart_draws_a_share_whose_cached_bound_lies_a_rounding_above_it():
    zero = {"p": 0.0, "lo": 2.8e-17, "hi": 0.24}  # as an earlier interval function stored it
    result = {"categories": {c: zero for c in verdicts.CATEGORIES}, "overall": zero}
    charts.chart({"model": result})


def test_600_images_per_category_give_at_most_four_points():
    prompts, images = B.size("pair", "cpu")
    lo, hi = intervals.wilson(prompts * images // 2, prompts * images)  # the widest case, p = 1/2
    assert (hi - lo) / 2 <= 0.04


def test_mean_of_shares_and_ties():
    a, b = intervals.share(50, 100), intervals.share(60, 100)
    mean = intervals.mean_of([a, b])
    assert mean["p"] == pytest.approx(0.55) and mean["lo"] < 0.55 < mean["hi"]
    assert a.ties(b) and not intervals.share(10, 100).ties(intervals.share(90, 100))
    perfect = intervals.mean_of([intervals.share(600, 600)] * 6)
    assert perfect["p"] == 1.0 and perfect["lo"] < 1.0  # a perfect score still has an uncertainty


def test_the_prompt_set_is_fixed_held_out_and_readable():
    first, again = B.prompt_set("smoke"), B.prompt_set("smoke")
    assert first == again
    cpu = B.prompt_set("cpu")
    for group in B.GROUPS:
        prompts = cpu[group.name]
        assert len(prompts) == B.size(group.name, "cpu")[0] == len(set(prompts))
        parsed = [C.parse(p).prompt for p in prompts]
        if group.kind:
            assert {p.kind for p in parsed} == {group.kind}
        if group.split == "test":
            assert not any(splits.is_heldout(p) for p in parsed)
        elif group.split != "multigen":
            assert all(splits.is_heldout(p) for p in parsed)
    text.tokenizer().check([p for prompts in cpu.values() for p in prompts])


def test_calls_cover_every_image_with_seeds_that_do_not_depend_on_the_generator():
    plan = B.calls("smoke")
    assert sum(len(prompts) for _, prompts, _ in plan) == sum(
        np.prod(B.size(g.name, "smoke")) for g in B.GROUPS)
    seeds = [seed for _, _, seed in plan]
    assert len(set(seeds)) == len(seeds) and seeds == [seed for _, _, seed in B.calls("smoke")]


def test_a_part_of_the_set_makes_the_same_calls_as_the_full_set():
    full = B.calls("cpu")
    part = B.calls("cpu", groups=("pair", "relation"), repeats=1)
    assert part and all(call in full for call in part)
    assert {group for group, _, _ in part} == {"pair", "relation"}
    assert sum(len(prompts) for _, prompts, _ in part) == 2 * B.size("pair", "cpu")[0]
    with pytest.raises(KeyError, match="no benchmark group named 'colour'"):
        B.calls("cpu", groups=("colour",))
    with pytest.raises(ValueError, match="at least one group"):
        B.calls("cpu", groups=())
    with pytest.raises(ValueError, match="integer >= 1"):
        B.calls("cpu", repeats=0)


def test_a_part_is_cached_apart_from_the_full_set(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    sizes = []

    def generate(prompts, seed):
        sizes.append(len(prompts))
        return prompt_renders(prompts, seed)

    part = B.benchmark(generate, "smoke", folder, frechet=False, groups=("single",), repeats=1)
    assert part["images"] == B.size("single", "smoke")[0] and part["groups"] == ["single"]
    full = B.benchmark(generate, "smoke", folder, frechet=False)
    assert full["images"] == sum(np.prod(B.size(g.name, "smoke")) for g in B.GROUPS)
    calls = len(sizes)
    B.benchmark(generate, "smoke", folder, frechet=False, groups=("single",), repeats=1)
    assert len(sizes) == calls  # read from its own cache entry


def test_world_renders_are_read_exactly_and_random_images_are_not():
    world = B.run(prompt_renders, "smoke", progress=False)
    assert all(c["p"] == 1.0 for c in world["categories"].values())
    assert world["overall"]["p"] == 1.0 and world["mg"]["5"]["p"] == 1.0 and world["failures"] == {}
    assert all(h["p"] == 1.0 for h in world["heldout"].values())
    random = B.run(references.RandomTraining(64), "smoke", progress=False)
    assert random["overall"]["p"] < 0.5 and sum(random["failures"].values()) > 0


def test_retrieval_returns_the_image_of_the_same_caption_when_the_training_set_has_it():
    model = M.build(M.SIZES["smoke"])  # any model: a caption is at cosine 1 of itself
    captions, images = references.training_pool(32)
    got = references.Retrieval(model, 32)(list(captions[:4]), seed=0)
    for caption, image in zip(captions[:4], got):
        same = [k for k, c in enumerate(captions) if c == caption]
        assert any(np.array_equal(image, images[k]) for k in same)


class Counting:
    """A generator that counts its calls and returns the world's renders."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, seed):
        self.calls += 1
        return prompt_renders(prompts, seed)


def test_a_second_call_reads_the_cache_and_new_weights_recompute(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights one")
    gen = Counting()
    first = B.benchmark(gen, "smoke", tmp_path, {"steps": 1}, progress=False, frechet=False)
    n = gen.calls
    assert n == len(B.calls("smoke"))
    again = B.benchmark(gen, "smoke", tmp_path, {"steps": 1}, progress=False, frechet=False)
    assert gen.calls == n and again["categories"] == first["categories"]
    B.benchmark(gen, "smoke", tmp_path, {"steps": 2}, progress=False, frechet=False)  # other settings
    assert gen.calls == 2 * n
    (tmp_path / "model.safetensors").write_bytes(b"weights two")  # a retrained model
    B.benchmark(gen, "smoke", tmp_path, {"steps": 1}, progress=False, frechet=False)
    assert gen.calls == 3 * n


@pytest.mark.parametrize("bad, said", [
    (lambda prompts, seed: np.zeros((len(prompts), 32, 32, 3), np.float32), "float32 array of shape"),
    (lambda prompts, seed: np.zeros((len(prompts) - 1, 32, 32, 3), np.uint8), r"shape \(2, 32, 32, 3\)"),
    (lambda prompts, seed: np.zeros((len(prompts), 3, 32, 32), np.uint8), r"\(3, 3, 32, 32\)"),
    (lambda prompts, seed: [None] * len(prompts), "returned a list"),
])
def test_a_wrong_output_is_one_clear_error_and_nothing_is_cached(tmp_path, bad, said):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(B.GeneratorError, match=said) as error:
        B.benchmark(bad, "smoke", tmp_path, progress=False, frechet=False)
    assert "expected a uint8 array of shape (3, 32, 32, 3)" in str(error.value)
    assert not list(tmp_path.glob("benchmark-*.json"))


def test_an_unreadable_prompt_gets_the_tokenizers_error_before_any_generation(monkeypatch, tmp_path):
    monkeypatch.setattr(B, "prompt_set", lambda profile=None: {"single": ["a red dragon"]})
    gen = Counting()
    with pytest.raises(text.UnknownWordError, match="dragon"):
        B.benchmark(gen, "smoke", tmp_path, progress=False, frechet=False)
    assert gen.calls == 0 and not list(tmp_path.glob("benchmark-*.json"))


def _verdict(caption, objects):
    return verdicts.judge(caption, [Object(*o) for o in objects])


@pytest.mark.parametrize("caption, objects, kind", [
    ("a red circle to the left of a blue square",
     [("circle", "red", "small", 0.7, 0.5), ("square", "blue", "small", 0.3, 0.5)], "reversed"),
    ("a red circle to the left of a blue square",
     [("circle", "red", "small", 0.3, 0.3), ("square", "blue", "small", 0.35, 0.8)], "relation"),
    ("a red circle and a blue square",
     [("circle", "blue", "small", 0.3, 0.5), ("square", "blue", "small", 0.7, 0.5)], "leaked"),
    ("a red circle", [("circle", "green", "small", 0.5, 0.5)], "colour"),
    ("a red circle and a blue square", [("circle", "red", "small", 0.3, 0.5)], "missing"),
    ("two red circles", [("circle", "red", "small", 0.3, 0.5)], "too_few"),
    ("a red circle and a blue square",
     [("circle", "red", "small", 0.3, 0.5), ("square", "blue", "small", 0.7, 0.5)], None),
])
def test_failure_kinds(caption, objects, kind):
    assert B.failure(_verdict(caption, objects)) == kind


def test_frechet_distance_is_zero_on_the_same_images_and_grows_with_a_shift():
    features = frechet.Features(M.build(M.SIZES["smoke"]))
    a = prompt_renders(["a red circle", "a blue square", "two green crosses"] * 30, seed=1)
    b = prompt_renders(["a red circle", "a blue square", "two green crosses"] * 30, seed=2)
    same, near, far = (frechet.distance(features, a, x) for x in (a, b, np.zeros_like(a)))
    assert same == pytest.approx(0.0, abs=1e-4) and near < far


def test_the_benchmark_imports_torchmetrics_only_to_compute_a_distance():
    """torchmetrics took 2.3 s of the 9 s that every chapter importing the benchmark spent on imports."""
    code = "import sys, text2image.evaluate.benchmark, text2image.charts.benchmark; print('torchmetrics' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


def test_registered_references_and_an_unknown_name():
    B.generator("world", "smoke")
    assert {"world", "retrieval", "random"} <= set(B.GENERATORS)
    with pytest.raises(KeyError, match="known generators: .*random"):
        B.generator("nothing-here", "smoke")


def test_results_are_plain_json():
    result = B.run(prompt_renders, "smoke", progress=False)
    assert json.loads(json.dumps(result)) == result


def test_bench_generate_prints_the_table_and_caches_it(tmp_path, monkeypatch, capsys):
    from text2image.cli import main

    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))  # the smoke CLIP and the cache land here
    assert main(["bench", "generate", "world", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "world (profile smoke" in out and "position" in out and "100.0 % [" in out and "Fréchet" in out
    assert list((tmp_path / "build" / "smoke" / "checkpoints" / "clip").glob("benchmark-*.json"))
    assert main(["bench", "generate", "nothing-here", "--profile", "smoke"]) == 2
    assert "known generators" in capsys.readouterr().err


def test_a_new_version_of_the_set_recomputes(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    gen = Counting()
    B.benchmark(gen, "smoke", tmp_path, progress=False, frechet=False)
    n = gen.calls
    monkeypatch.setattr(B, "VERSION", B.VERSION + "-next")
    B.benchmark(gen, "smoke", tmp_path, progress=False, frechet=False)
    assert gen.calls == 2 * n
