"""Issue 14.15: every gpu recipe, which no machine here can train, builds at full size and runs one step, one
evaluation and a save/load round trip on the CPU (the suite runs one recipe per signature, see check.CI_SUBSET)."""

from dataclasses import replace

import pytest

from text2image import paths, recipes
from text2image.cli import main
from text2image.recipes import check


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch):
    """A throwaway root: the check must neither read nor write checkpoints."""
    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    return tmp_path


def test_the_subset_has_one_recipe_of_every_signature():
    every = {check.signature(name) for name in recipes.load_all()}
    assert {check.signature(name) for name in (*check.CI_SUBSET, *check.CI_SMALL_BATCH)} == every


def test_one_gpu_recipe_of_each_signature_trains_evaluates_saves_and_loads(project):
    quiet = lambda line: None  # noqa: E731
    results = check.run(check.CI_SUBSET, report=quiet) + check.run(check.CI_SMALL_BATCH, quiet, check.CI_BATCH)
    assert [r.name for r in results] == [*check.CI_SUBSET, *check.CI_SMALL_BATCH]
    assert all(recipes.get(name).config("gpu").batch_size > check.CI_BATCH for name in check.CI_SMALL_BATCH)
    for result in results:
        with recipes.untrained():  # the cpu model's size, without training the bases of follow-ups
            cpu_size = sum(p.numel() for p in recipes.get(result.name).build("cpu").parameters())
        assert result.parameters > cpu_size, result.name  # the full (gpu) size, not the cpu one
        assert result.metrics, result.name
    assert not (project / "data").exists() and not (project / "build").exists()


def test_a_broken_gpu_recipe_is_caught(monkeypatch):
    recipe = recipes.get("ae")
    gpu = recipe.config("gpu")
    broken = replace(gpu, extra={**gpu.extra, "groups": 24})  # 24 groups cannot split 64 channels
    monkeypatch.setitem(recipes.REGISTRY, "ae", replace(recipe, configs={**recipe.configs, "gpu": broken}))
    with pytest.raises(ValueError, match="divisible"):
        check.run(["ae"], report=lambda line: None)


def test_the_command(capsys):
    assert main(["check", "gpu-recipes", "percept"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("percept: ok (") and "1 gpu recipes checked" in out
