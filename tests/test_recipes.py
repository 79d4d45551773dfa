"""load_or_train: train when missing, load when present, refuse a stale recipe."""

import json

import pytest
import torch

from text2image import checkpoints, recipes
from text2image.train import TrainConfig


def toy_recipe(name="toy", lr=0.05):
    def build(profile):
        torch.manual_seed(0)
        return torch.nn.Linear(2, 1)

    def task(model, profile):
        x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        y = x.sum(dim=1, keepdim=True)
        loss_fn = lambda m, batch: torch.nn.functional.mse_loss(m(batch[0]), batch[1])  # noqa: E731
        eval_fn = lambda m: {"mse": torch.nn.functional.mse_loss(m(x), y).item()}  # noqa: E731
        return loss_fn, (lambda step: (x, y)), eval_fn

    configs = {p: TrainConfig(steps=s, batch_size=3, lr=lr, checkpoint_every=10) for p, s in
               (("smoke", 5), ("cpu", 40), ("gpu", 80))}
    return recipes.Recipe(name, build, task, configs)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    monkeypatch.setitem(recipes.REGISTRY, "toy", toy_recipe())
    return tmp_path


def test_cpu_trains_once_then_loads(project, capsys):
    model, manifest = recipes.load_or_train("toy", "cpu", progress=False)
    assert "training it now" in capsys.readouterr().out
    assert manifest["steps"] == 40 and manifest["metrics"]["mse"] < 0.05
    assert (project / "data" / "checkpoints" / "toy" / "model.safetensors").is_file()
    assert (project / "data" / "checkpoints" / "toy" / "log.csv").is_file()  # curves ship with the weights
    again, _ = recipes.load_or_train("toy", "cpu", progress=False)
    assert "training" not in capsys.readouterr().out
    torch.testing.assert_close(again.weight, model.weight, atol=1e-3, rtol=1e-3)


def test_smoke_never_writes_the_shipped_folder(project):
    recipes.load_or_train("toy", "smoke", progress=False)
    assert not (project / "data" / "checkpoints").exists()
    assert (project / "build" / "smoke" / "checkpoints" / "toy" / "manifest.json").is_file()


def test_a_checkpoint_from_another_recipe_is_refused(project, monkeypatch):
    recipes.load_or_train("toy", "cpu", progress=False)
    monkeypatch.setitem(recipes.REGISTRY, "toy", toy_recipe(lr=0.01))
    with pytest.raises(checkpoints.CheckpointError, match="another recipe.*python -m text2image train toy"):
        recipes.load_or_train("toy", "cpu", progress=False)


def follow_up_recipe():
    """A toy recipe that goes on from the toy's shipped weights, as the fine-tunes of the book do."""
    toy = toy_recipe("toy-more")

    def build(profile):
        model, _ = recipes.load_or_train("toy", profile, progress=False)
        return model

    return recipes.Recipe("toy-more", build, toy.task, toy.configs, base="toy")


def test_a_follow_up_whose_base_was_retrained_is_refused(project, monkeypatch):
    monkeypatch.setitem(recipes.REGISTRY, "toy-more", follow_up_recipe())
    _, manifest = recipes.load_or_train("toy-more", "cpu", progress=False)
    toy_folder = project / "data" / "checkpoints" / "toy"
    assert manifest["base"] == {"name": "toy", "weights": checkpoints.weights_digest(toy_folder)}
    recipes.train("toy", "cpu", progress=False)  # the same recipe again (its finished run): same weights
    recipes.load_or_train("toy-more", "cpu", progress=False)
    monkeypatch.setitem(recipes.REGISTRY, "toy", toy_recipe(lr=0.01))
    recipes.train("toy", "cpu", progress=False)  # the base changes
    with pytest.raises(checkpoints.CheckpointError, match="trained on from toy.*python -m text2image train toy-more"):
        recipes.load_or_train("toy-more", "cpu", progress=False)


def test_smoke_retrains_a_follow_up_whose_base_changed(project, monkeypatch, capsys):
    monkeypatch.setitem(recipes.REGISTRY, "toy-more", follow_up_recipe())
    recipes.load_or_train("toy-more", "smoke", progress=False)
    monkeypatch.setitem(recipes.REGISTRY, "toy", toy_recipe(lr=0.01))
    recipes.train("toy", "smoke", progress=False)
    capsys.readouterr()
    _, manifest = recipes.load_or_train("toy-more", "smoke", progress=False)
    assert "toy-more: no usable checkpoint" in capsys.readouterr().out
    assert manifest["base"]["weights"] == checkpoints.weights_digest(project / "build/smoke/checkpoints/toy")


def test_unknown_recipe_lists_the_known_ones(project):
    with pytest.raises(recipes.UnknownRecipe, match="known recipes: .*toy"):
        recipes.get("nope")


def test_cli_train_writes_a_manifest(project):
    from text2image.cli import main

    assert main(["train", "toy", "--profile", "smoke"]) == 0
    manifest = json.loads((project / "build/smoke/checkpoints/toy/manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["recipe"]["steps"] == 5
    assert main(["train", "nope", "--profile", "smoke"]) == 2
