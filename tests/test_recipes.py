"""load_or_train: train when missing, load when present, refuse a stale recipe."""

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from text2image import checkpoints, paths, recipes
from text2image.train import TrainConfig, read_log


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
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    recipes.load_all()
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


# --------------------------------------------------------------------------- hardening (issue 14)

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


def ship(project, *names):
    """Copy shipped checkpoints into the throwaway root, where they count as shipped."""
    for name in names:
        if not (SHIPPED / name / checkpoints.MANIFEST).is_file():
            pytest.skip(f"no shipped checkpoint {name}")
        shutil.copytree(SHIPPED / name, project / "data" / "checkpoints" / name)
    return project / "data" / "checkpoints"


def flip_bytes(path, count=64):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(checkpoints.CheckpointError) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_flipped_bytes_in_shipped_weights_stop_the_load(project):
    """Issue 14.1: XOR of 64 bytes in ae's weights loaded silently (PSNR 38.8 -> 6.5 dB in the chapter)."""
    root = ship(project, "ae")
    weights = root / "ae" / "diffusion_pytorch_model.safetensors"
    flip_bytes(weights)
    message = one_line_error(recipes.load_or_train, "ae", "cpu", progress=False)
    assert message.startswith(f"{weights}: corrupt or changed")
    assert "git checkout data/checkpoints/ae" in message


def test_a_damaged_base_is_blamed_not_its_follow_up(project):
    """Issue 14.1: a flipped bit in clip made clip-negatives say "retrain clip-negatives"; restoring clip is the fix."""
    root = ship(project, "clip", "clip-negatives")
    recipes.load_or_train("clip-negatives", "cpu", progress=False)  # whole: it loads
    flip_bytes(root / "clip" / "model.safetensors", count=1)
    message = one_line_error(recipes.load_or_train, "clip-negatives", "cpu", progress=False)
    assert message.startswith(f"{root / 'clip' / 'model.safetensors'}: corrupt or changed")
    assert "git checkout data/checkpoints/clip " in message and "clip-negatives" not in message


def test_an_incomplete_shipped_folder_is_an_error_not_a_retrain(project, capsys):
    """Issue 14.2: deleting manifest.json started a 33-minute retrain over the intact shipped weights."""
    recipes.load_or_train("toy", "cpu", progress=False)
    folder = project / "data" / "checkpoints" / "toy"
    weights = (folder / "model.safetensors").read_bytes()
    (folder / checkpoints.MANIFEST).unlink()
    capsys.readouterr()
    message = one_line_error(recipes.load_or_train, "toy", "cpu", progress=False)
    assert "incomplete checkpoint, manifest.json is missing" in message
    assert "git checkout data/checkpoints/toy" in message
    assert "training" not in capsys.readouterr().out
    assert (folder / "model.safetensors").read_bytes() == weights and not (folder / checkpoints.MANIFEST).exists()
    recipes.train("toy", "cpu", progress=False)  # the explicit command may replace them
    recipes.load_or_train("toy", "cpu", progress=False)


def test_the_gpu_profile_never_trains_over_the_shipped_weights(project):
    recipes.load_or_train("toy", "cpu", progress=False)
    shipped = project / "data" / "checkpoints" / "toy"
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    _, manifest = recipes.load_or_train("toy", "gpu", progress=False)
    assert manifest["profile"] == "gpu" and manifest["steps"] == 80
    assert (project / "data" / "trained" / "gpu" / "toy" / "model.safetensors").is_file()
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    assert recipes.checkpoint_folder("toy", "gpu") == project / "data" / "trained" / "gpu" / "toy"


def test_a_manifest_edited_to_another_profile_is_refused(project):
    """Issue 14.6: a manifest edited to another profile loaded silently, with the wrong numbers."""
    recipes.load_or_train("toy", "cpu", progress=False)
    path = project / "data" / "checkpoints" / "toy" / checkpoints.MANIFEST
    path.write_text(path.read_text().replace('"profile": "cpu"', '"profile": "gpu"'))
    message = one_line_error(recipes.load_or_train, "toy", "cpu", progress=False)
    assert message.startswith(f"{path}: field 'profile' is 'gpu'") and "git checkout" in message


@pytest.mark.parametrize("content, field", [("{}", "field 'name' is missing"),
                                            ("[]", "the manifest is a JSON array, not an object")])
def test_an_empty_manifest_names_the_file_and_the_field(project, content, field):
    recipes.load_or_train("toy", "cpu", progress=False)
    path = project / "data" / "checkpoints" / "toy" / checkpoints.MANIFEST
    path.write_text(content)
    assert one_line_error(recipes.load_or_train, "toy", "cpu", progress=False).startswith(f"{path}: {field}")


@contextlib.contextmanager
def lock_held_by_another_process(path):
    """Another process holds the lock at ``path`` until the block ends (or ``release()`` is called)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    release = holder.stdin.close
    try:
        yield release
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=30)


def test_a_second_train_of_the_same_recipe_stops_or_waits(project, capsys):
    """Issue 14.3: two ``train`` of one recipe both trained in full, and log.csv had every row twice."""
    from text2image.cli import main

    with lock_held_by_another_process(recipes.run_folder("toy", "cpu").with_suffix(".lock")) as release:
        with pytest.raises(recipes.RunLocked, match="being trained by another process.*--wait"):
            recipes.train("toy", "cpu", progress=False)
        capsys.readouterr()
        assert main(["train", "toy", "--profile", "cpu"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "toy (cpu) is being trained by another process" in err
        assert not (project / "data" / "checkpoints" / "toy").exists()
        threading.Timer(1.0, release).start()
        started = time.perf_counter()
        assert main(["train", "toy", "--profile", "cpu", "--wait"]) == 0
        assert time.perf_counter() - started >= 0.9
        assert "waiting for it to finish" in capsys.readouterr().out
    steps = [r["step"] for r in read_log(project / "data" / "checkpoints" / "toy")]
    assert steps == sorted(set(steps))


def test_loading_a_shipped_checkpoint_takes_no_lock(project):
    recipes.load_or_train("toy", "cpu", progress=False)
    with lock_held_by_another_process(recipes.run_folder("toy", "cpu").with_suffix(".lock")):
        recipes.load_or_train("toy", "cpu", progress=False)  # someone retrains it: loading does not wait
