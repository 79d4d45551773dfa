"""Issue 14.4: every recipe family, interrupted by Ctrl-C at a random step and resumed, ends with the very
weights of an uninterrupted run, byte for byte (the VAE's posterior sample, the dVAE's Gumbel noise, the
VQ-VAE's code restarts, the VQGAN's discriminator and CLIP's batches included)."""

import os
import random
import signal
from dataclasses import replace

import pytest

from text2image import paths, recipes
from text2image.train import Interrupted

FAMILIES = ("percept", "ae", "vae", "vqvae", "dvae", "vqgan", "clip", "clip-negatives")
CHOOSER = random.Random()  # a new random step at every run; the failure message names it


def use_root(root, monkeypatch):
    (root / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(root))
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)


def files_of(name):
    run = recipes.run_folder(name, "smoke") / "state" / "model.safetensors"
    shipped = sorted(recipes.checkpoint_folder(name, "smoke").glob("*.safetensors"))
    return run.read_bytes(), [p.read_bytes() for p in shipped]


def ctrl_c_at(recipe, stop_at):
    """The recipe, with a Ctrl-C sent from inside the loss of step ``stop_at``, once its random numbers are drawn."""
    def task(model, profile):
        loss_fn, batch_fn, eval_fn = recipe.task(model, profile)
        calls = []

        def loss(m, batch):
            out = loss_fn(m, batch)
            if len(calls) == stop_at:
                os.kill(os.getpid(), signal.SIGINT)
            calls.append(1)
            return out
        return loss, batch_fn, eval_fn
    return replace(recipe, task=task)


@pytest.mark.parametrize("name", FAMILIES)
def test_an_interrupted_recipe_resumes_to_the_same_bytes(name, tmp_path, monkeypatch):
    recipe = recipes.get(name)
    steps = recipe.config("smoke").steps
    stop_at = CHOOSER.randrange(0, steps - 1)
    (tmp_path / "straight").mkdir()
    use_root(tmp_path / "straight", monkeypatch)
    recipes.train(name, "smoke", progress=False)
    straight = files_of(name)

    (tmp_path / "interrupted").mkdir()
    use_root(tmp_path / "interrupted", monkeypatch)
    if recipe.base:  # the base is trained first, uninterrupted, as in the straight run
        recipes.load_or_train(recipe.base, "smoke", progress=False)
    monkeypatch.setitem(recipes.REGISTRY, name, ctrl_c_at(recipe, stop_at))
    with pytest.raises(Interrupted, match=f"interrupted at step {stop_at + 1} of {steps}"):
        recipes.train(name, "smoke", progress=False)
    monkeypatch.setitem(recipes.REGISTRY, name, recipe)
    recipes.train(name, "smoke", progress=False)
    resumed = files_of(name)
    assert resumed[0] == straight[0], f"{name}: interrupted after step {stop_at + 1} of {steps}: the weights differ"
    assert resumed[1] == straight[1], f"{name}: interrupted after step {stop_at + 1}: the checkpoints differ"
