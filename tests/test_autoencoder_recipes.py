"""Recipes of the autoencoders chapter: each trains, each is judged, and the shipped checkpoints still hold."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from text2image import checkpoints, recipes
from text2image.evaluate import reconstruction
from text2image.models import autoencoders as ae
from text2image.recipes import autoencoders as R
from text2image.train import Trainer, read_log
from text2image.world import tensors
from text2image.world.render import render
from text2image.world.scene import Object, Scene

TRAINED = ("percept", *R.MODELS, *R.LONG, R.sweep_name(16))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throwaway book root, so smoke runs never touch build/ or data/ of the repository."""
    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    return tmp_path


def test_batches_are_a_pure_function_of_the_step():
    a, b = tensors.world_batch(3, 4), tensors.world_batch(3, 4)
    assert torch.equal(a, b) and not torch.equal(a, tensors.world_batch(4, 4))
    assert a.shape == (4, 3, 32, 32) and a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("name", TRAINED)
def test_each_recipe_lowers_its_loss_on_a_fixed_batch(name, project):
    recipe = recipes.get(name)
    model = recipe.build("smoke")
    loss_fn, batch_fn, eval_fn = recipe.task(model, "smoke")
    first = batch_fn(0)
    steps = 8
    if isinstance(first, tuple) and len(first) == 2 and isinstance(first[1], int):
        fixed = lambda step: (first[0], step)  # noqa: E731  (keeps the step: schedules, restarts, GAN start)
    else:
        fixed = lambda step: first  # noqa: E731
    config = replace(recipe.config("smoke"), steps=steps, log_every=1, checkpoint_every=steps, warmup=1, lr=3e-3)
    trainer = Trainer(model, loss_fn, fixed, config, project / "run", eval_fn=None)
    trainer.fit(progress=False)
    rows = read_log(project / "run")
    key = next(k for k in ("mse", "l1", "loss") if k in rows[0])  # the reconstruction term (the GAN's adds noise)
    losses = [row[key] for row in rows]
    assert len(losses) == steps
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses


@pytest.mark.parametrize("name", list(R.LONG))
def test_long_recipes_go_on_from_the_comparison_weights_on_unseen_scenes(name, project):
    base = R.LONG[name]
    base_model, _ = recipes.load_or_train(base, "smoke", progress=False)
    start = recipes.get(name).build("smoke")
    for a, b in zip(ae.unwrap(base_model).state_dict().values(), ae.unwrap(start).state_dict().values()):
        torch.testing.assert_close(a, b)
    config, base_config = recipes.get(name).config("smoke"), recipes.get(base).config("smoke")
    assert config.extra["first_step"] == base_config.steps and config.lr < base_config.lr
    _, batch_fn, _ = recipes.get(name).task(start, "smoke")
    images, step = batch_fn(0)
    assert step == 0 and torch.equal(images, tensors.world_batch(base_config.steps, config.batch_size))


def test_eval_reports_psnr_oracle_agreement_and_codebook_use(project):
    vq = recipes.get("vqvae").build("smoke")
    metrics = reconstruction.evaluate(vq, n=8)
    assert {"psnr", "mse", "codebook_usage", "codebook_perplexity"} <= set(metrics)
    assert "oracle_agreement" in metrics or reconstruction._oracle_parse() is None
    plain = recipes.get("ae").build("smoke")
    assert "codebook_usage" not in reconstruction.evaluate(plain, n=8)


def test_the_oracle_agrees_with_itself_on_clean_images():
    scenes, images, _ = tensors.test_set(16)
    if reconstruction._oracle_parse() is None:
        pytest.skip("the world has no oracle yet")
    assert reconstruction.oracle_agreement(images, scenes) == 1.0
    assert reconstruction.oracle_agreement(torch.zeros_like(images), scenes) == 0.0


def test_same_scene_matches_objects_in_any_order_within_a_pixel():
    a = Object("circle", "red", "large", 0.3, 0.3)
    b = Object("square", "blue", "small", 0.7, 0.6)
    scene = Scene((a, b))
    assert reconstruction.same_scene([b, a], scene)
    assert reconstruction.same_scene([Object("circle", "red", "large", 0.3 + 0.5 / 32, 0.3), b], scene)
    assert not reconstruction.same_scene([Object("circle", "red", "large", 0.3 + 2 / 32, 0.3), b], scene)
    assert not reconstruction.same_scene([Object("circle", "green", "large", 0.3, 0.3), b], scene)
    assert not reconstruction.same_scene([a], scene)


def test_code_usage_is_part_of_the_resumable_state():
    model = recipes.get("vqvae").build("smoke")
    assert "usage" in model.state_dict()
    assert model.usage.sum().item() == pytest.approx(1.0)
    assert recipes.get("vqvae").export(model) is model.vq


def test_the_smoke_sweep_writes_its_results(project):
    results = R.rate_distortion("smoke", progress=False)
    assert [r["codebook_size"] for r in results] == list(R.SWEEP_SIZES["smoke"])
    assert results[0]["bits_per_image"] == 64 * 2
    saved = json.loads(R.sweep_file("smoke").read_text())
    assert saved[0]["recipe"]["extra"]["codebook_size"] == R.SWEEP_SIZES["smoke"][0]


# --------------------------------------------------------------------------- the shipped checkpoints

SHIPPED = [name for name in ("percept", *R.MODELS, *R.LONG) if (checkpoints.checkpoint_dir(name) / "manifest.json").is_file()]


@pytest.mark.parametrize("name", SHIPPED or [pytest.param("none", marks=pytest.mark.skip("no shipped checkpoint"))])
def test_shipped_checkpoints_reproduce_their_manifest(name):
    model, manifest = recipes.load_or_train(name, "cpu", progress=False)
    folder = checkpoints.checkpoint_dir(name)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 10 * 2**20
    assert manifest["profile"] == "cpu"
    expected = manifest["metrics"]
    if name == "percept":
        measured = recipes.get("percept").task(model, "cpu")[2](model)
        for key, value in expected.items():
            assert measured[key] == pytest.approx(value, abs=0.01), key
        return
    with torch.no_grad():  # a small sample of the manifest's test scenes, so the tolerances are loose
        measured = reconstruction.evaluate(model, n=128)
    assert measured["psnr"] == pytest.approx(expected["psnr"], abs=1.0)  # a broken checkpoint loses far more
    if "oracle_agreement" in expected:
        assert measured["oracle_agreement"] >= expected["oracle_agreement"] - 0.06
    if "codebook_usage" in expected:  # fewer images see fewer codes, never more
        assert expected["codebook_usage"] - 0.2 <= measured["codebook_usage"] <= expected["codebook_usage"] + 0.02

def test_the_shipped_sweep_matches_its_recipes():
    path = R.sweep_file("cpu")
    if not path.is_file():
        pytest.skip("no shipped rate-distortion sweep")
    cached = json.loads(path.read_text())
    assert [r["codebook_size"] for r in cached] == list(R.SWEEP_SIZES["cpu"])
    assert R.rate_distortion("cpu") == cached  # read back, not recomputed


def test_the_vae_ships_the_scaling_factor_that_gives_its_latents_unit_variance():
    vae = recipes.get("vae").build("smoke")
    R.with_scaling_factor(vae, n=256)
    latents = ae.encode(vae, tensors.world_batch(0, 256, seed=R.SCALE_SEED)) * vae.config.scaling_factor
    assert float(latents.std()) == pytest.approx(1.0, abs=1e-4)
    assert float((ae.encode(vae, tensors.world_batch(1, 256)) * vae.config.scaling_factor).std()) == pytest.approx(1.0, abs=0.1)


def test_chapter_measurements_are_cached_next_to_the_weights(project):
    model, _ = recipes.load_or_train("ae", "smoke", progress=False)
    first = reconstruction.measure("ae", model, "smoke")
    assert sum(first["errors"].values()) == pytest.approx(1.0)
    assert first["errors"]["exact"] == pytest.approx(first["oracle_agreement"], abs=0.2)
    for size, truth, read, count in first["shape_confusions"]:
        assert truth != read and count >= 1 and size in ("small", "large")
    folder = recipes.checkpoint_folder("ae", "smoke")
    assert (folder / f"measured-{tensors.TEST_IMAGES['smoke']}.json").is_file()
    assert reconstruction.measure("ae", None, "smoke") == first  # read back: the model is not even needed


def test_shape_confusions_name_the_misread_shape():
    class CrossesAsSquares(torch.nn.Module):
        """A 'model' whose reconstruction draws every cross as a square."""
        def forward(self, images):
            scenes = [Scene(tuple(Object("square" if o.shape == "cross" else o.shape, o.colour, o.size, o.x, o.y)
                                  for o in s)) for s in tensors.test_set(64, "smoke")[0]]
            return tensors.to_tensor(render(scenes, tensors.RESOLUTION)[0])

    confusions = reconstruction.shape_confusions(CrossesAsSquares(), 64, "smoke")
    assert confusions and all(truth == "cross" and read == "square" for _, truth, read, _ in confusions)


def test_gan_phase_reads_the_adversarial_part_of_the_logs(project):
    recipes.load_or_train("vqgan", "smoke", progress=False)
    phase = R.gan_phase("vqgan", "smoke")
    steps = recipes.get("vqgan").config("smoke").steps
    assert phase["start"] == int(R._extra("vqgan", "smoke")["gan_start"] * steps)
    assert phase["weight_median"] > 0 and phase["d_mean"] >= 0  # the discriminator ran after the start
    assert phase["psnr_end"] > 0


def test_count_confusions_filters_by_size_and_shapes():
    rows = [["small", "cross", "diamond", 5], ["large", "cross", "diamond", 2], ["small", "square", "circle", 1]]
    assert reconstruction.count_confusions(rows) == 8
    assert reconstruction.count_confusions(rows, "small", "cross", "diamond") == 5
    assert reconstruction.count_confusions(rows, truth="cross") == 7


def test_a_check_without_error_still_shows_on_the_log_scale_of_the_continued_curves():
    """A misread share of 0 has no place on a log axis: it is drawn on the bottom edge, not dropped."""
    import matplotlib.pyplot as plt

    from text2image.charts import autoencoders as charts

    def rows(agreements):
        return [{"step": 400 * (k + 1), "oracle_agreement": a, "psnr": 30.0 + k} for k, a in enumerate(agreements)]

    evals = {name: rows([0.9, 0.99]) for name in R.LONG.values()}
    evals.update({name: rows([0.995, 1.0]) for name in R.LONG})
    fig = charts.continued_curves(evals, {name: 800 for name in R.LONG})
    ax = fig.axes[0]
    bottom = ax.get_ylim()[0]
    edge = [line for line in ax.lines if line.get_marker() == "v"]
    assert len(edge) == len(R.LONG)  # one perfect check per continuation
    assert all(line.get_ydata()[0] == bottom and line.get_xdata()[0] == 800 + 800 for line in edge)
    plt.close(fig)
