"""Checkpoints: round trip, digests checked on load, manifests checked against their schema, crash-safe saves,
and clear one-line errors for every kind of bad file."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from text2image import checkpoints, paths


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        latent_channels=2, norm_num_groups=4, layers_per_block=1, sample_size=8,
    )


def manifest(**fields):
    """What a recipe writes (checkpoints.save adds the code commit, hardware, torch and digests)."""
    return {"name": "vae", "profile": "cpu", "recipe": {"steps": 3, "batch_size": 2, "lr": 0.1, "seed": 0},
            "steps": 3, "train_seconds": 1.5, "samples_per_second": 4.0, "data_seed": 0, "device": "cpu",
            "parameters": 10, "metrics": {"psnr": 12.5}, **fields}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throwaway book root whose data/checkpoints counts as shipped."""
    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    return tmp_path


def error_of(call, *args) -> str:
    with pytest.raises(checkpoints.CheckpointError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_round_trip_of_a_diffusers_model(tmp_path):
    model = tiny_vae()
    checkpoints.save(model, tmp_path / "vae", manifest())
    loaded = checkpoints.load(AutoencoderKL, tmp_path / "vae")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)  # fp16 storage
    saved = checkpoints.read_manifest(tmp_path / "vae")
    assert saved["metrics"] == {"psnr": 12.5}
    assert {"code_commit", "hardware", "torch", "recipe"} <= set(saved)
    assert saved["files"] == {p.name: checkpoints.file_digest(p) for p in (tmp_path / "vae").iterdir()
                              if p.name in ("config.json", "diffusion_pytorch_model.safetensors")}
    assert not list((tmp_path / "vae").glob("*.bin"))


def test_round_trip_of_a_plain_module(tmp_path):
    model = torch.nn.Linear(3, 2)
    checkpoints.save(model, tmp_path / "lin", manifest(), half=False)
    loaded = checkpoints.load(torch.nn.Linear, tmp_path / "lin", model=torch.nn.Linear(3, 2))
    assert torch.equal(loaded.weight, model.weight)
    assert list(checkpoints.read_manifest(tmp_path / "lin")["files"]) == ["model.safetensors"]


def test_pickle_files_are_refused(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({"weight": torch.zeros(2)}, folder / "pytorch_model.bin")
    with pytest.raises(checkpoints.CheckpointError, match="pickle files are never loaded.*retrain"):
        checkpoints.load(AutoencoderKL, folder)


def test_truncated_weights_name_the_file(tmp_path):
    checkpoints.save(tiny_vae(), tmp_path / "vae", manifest())
    weights = next((tmp_path / "vae").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:200])
    message = error_of(checkpoints.load, AutoencoderKL, tmp_path / "vae")
    assert weights.name in message and "corrupt or changed" in message
    assert "python -m text2image train vae" in message


def test_flipped_bytes_are_caught_and_a_shipped_checkpoint_is_restored_with_git(project):
    """Issue 14.1: 64 flipped bytes in the middle of the weights loaded silently and reached the figures."""
    folder = project / "data" / "checkpoints" / "vae"
    checkpoints.save(tiny_vae(), folder, manifest())
    weights = folder / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    weights.write_bytes(bytes(data))
    message = error_of(checkpoints.load, AutoencoderKL, folder)
    assert message.startswith(f"{weights}: corrupt or changed")
    restore, retrain = message.index("git checkout data/checkpoints/vae"), message.index("train vae")
    assert restore < retrain  # restoring comes first: the shipped file is in git


def test_a_changed_config_is_caught(tmp_path):
    checkpoints.save(tiny_vae(), tmp_path / "vae", manifest())
    config = tmp_path / "vae" / "config.json"
    config.write_text(config.read_text().replace('"latent_channels": 2', '"latent_channels": 3'))
    assert f"{config}: corrupt or changed" in error_of(checkpoints.load, AutoencoderKL, tmp_path / "vae")


def test_an_incomplete_folder_names_what_is_missing(project):
    folder = project / "data" / "checkpoints" / "vae"
    checkpoints.save(tiny_vae(), folder, manifest())
    (folder / "config.json").unlink()
    message = error_of(checkpoints.verify, folder)
    assert "incomplete checkpoint, config.json is missing" in message and "git checkout data/checkpoints/vae" in message
    (folder / checkpoints.MANIFEST).unlink()
    assert "manifest.json is missing" in error_of(checkpoints.verify, folder)


def test_a_model_file_the_manifest_does_not_record_is_refused(tmp_path):
    checkpoints.save(torch.nn.Linear(3, 2), tmp_path / "lin", manifest(), half=False)
    (tmp_path / "lin" / "other.safetensors").write_bytes((tmp_path / "lin" / "model.safetensors").read_bytes())
    assert "other.safetensors: a model file the manifest does not record" in error_of(checkpoints.verify, tmp_path / "lin")


def test_incompatible_config_is_a_clear_error(tmp_path):
    checkpoints.save(torch.nn.Linear(3, 2), tmp_path / "lin", manifest())
    with pytest.raises(checkpoints.CheckpointError, match="does not fit"):
        checkpoints.load(torch.nn.Linear, tmp_path / "lin", model=torch.nn.Linear(4, 2))


def test_missing_checkpoint_and_bad_manifest(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint here"):
        checkpoints.load(AutoencoderKL, tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(checkpoints.CheckpointError, match="not valid JSON"):
        checkpoints.read_manifest(tmp_path / "bad")


@pytest.mark.parametrize("content, field", [
    ({}, "field 'name' is missing"),
    ([], "the manifest is a JSON array, not an object"),
    ("text", "the manifest is a JSON str, not an object"),
    ({"profile": "laptop"}, "field 'profile' is \"laptop\", not one of smoke, cpu, gpu"),
    ({"train_seconds": "slow"}, "field 'train_seconds' is \"slow\", not of type number"),
    ({"recipe": {"steps": 3}}, "field 'recipe.batch_size' is missing"),
    ({"files": {"model.safetensors": "abc"}}, "field 'files.model.safetensors' is \"abc\""),
    ({"metrics": []}, "field 'metrics' is [], not of type object"),
])
def test_manifests_are_checked_against_the_schema(tmp_path, content, field):
    """Issue 14.6: ``{}`` gave ``KeyError: 'train_seconds'`` at a chapter line, ``[]`` a raw AttributeError."""
    folder = tmp_path / "lin"
    checkpoints.save(torch.nn.Linear(3, 2), folder, manifest(), half=False)
    path = folder / checkpoints.MANIFEST
    if isinstance(content, dict) and content:
        content = {**json.loads(path.read_text()), **content}
    path.write_text(json.dumps(content))
    message = error_of(checkpoints.read_manifest, folder)
    assert message.startswith(f"{path}: {field}"), message


def test_stamp_records_digests_once_and_never_over_changed_weights(project):
    folder = project / "data" / "checkpoints" / "vae"
    checkpoints.save(tiny_vae(), folder, manifest())
    path = folder / checkpoints.MANIFEST
    stamped = path.read_text()
    old = json.loads(stamped)
    del old["files"]
    path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")  # as manifests were before digests
    assert "checkpoints stamp vae" in error_of(checkpoints.read_manifest, folder)
    weights = [(p, p.read_bytes()) for p in folder.glob("*.safetensors")]
    assert checkpoints.stamp(folder)
    assert path.read_text() == stamped
    assert not checkpoints.stamp(folder)  # idempotent
    assert path.read_text() == stamped
    assert all(p.read_bytes() == data for p, data in weights)  # the weights are never touched
    (folder / "config.json").write_text("{}")
    assert "config.json: changed since its digest was recorded" in error_of(checkpoints.stamp, folder)
    assert checkpoints.stamp(folder, force=True)
    checkpoints.verify(folder)


def test_every_shipped_checkpoint_records_and_matches_its_digests():
    folders = checkpoints.shipped_folders()
    if not folders:
        pytest.skip("no shipped checkpoint")
    digests = checkpoints.recorded_digests(paths.checkpoints_dir())
    for folder in folders:
        recorded = checkpoints.verify(folder)["files"]
        assert any(name.endswith(".safetensors") for name in recorded), folder
        assert {folder / name: sha for name, sha in recorded.items()}.items() <= digests.items()


def test_training_times_are_read_from_the_manifests(project):
    """What the preface and the chapters' rerun boxes quote: ``train_seconds`` of each manifest, by name."""
    root = paths.checkpoints_dir()
    for name, seconds in (("vae", 90.0), ("vq-sweep/k4", 30.0)):
        checkpoints.save(tiny_vae(), root / name, manifest(name=name, train_seconds=seconds))
    assert checkpoints.training_seconds() == {"vae": 90.0, "vq-sweep/k4": 30.0}
    assert checkpoints.training_seconds(["vq-sweep/k4"]) == {"vq-sweep/k4": 30.0}
    # a cache of safetensors inside a checkpoint (the DALL·E recipes' image tokens) is not a checkpoint
    (root / "vae" / "tokens").mkdir()
    (root / "vae" / "tokens" / "train-64-0123.safetensors").write_bytes(b"cached tokens")
    assert checkpoints.shipped_folders() == [root / "vae", root / "vq-sweep/k4"]
    assert checkpoints.training_seconds() == {"vae": 90.0, "vq-sweep/k4": 30.0}


def test_a_save_is_swapped_in_whole_and_leftovers_are_cleaned(tmp_path):
    """Issue 14.5: a kill during a save must leave the old checkpoint or the new one, never an unusable folder."""
    folder = tmp_path / "lin"
    first = torch.nn.Linear(3, 2)
    checkpoints.save(first, folder, manifest(), half=False)
    # killed between the two renames of a later save: the old folder is aside, the new one complete
    torch.manual_seed(5)
    second = torch.nn.Linear(3, 2)
    checkpoints.save(second, tmp_path / "staging", manifest(), half=False)
    folder.rename(tmp_path / ".lin.old")
    (tmp_path / "staging").rename(tmp_path / ".lin.new")
    paths.recover_dir(folder)
    assert torch.equal(checkpoints.load(torch.nn.Linear, folder, model=torch.nn.Linear(3, 2)).weight, second.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lin"]
    # killed while writing the new folder: the old one stands, the half-written one goes
    (tmp_path / ".lin.new").mkdir()
    (tmp_path / ".lin.new" / "model.safetensors").write_bytes(b"half")
    checkpoints.save(first, folder, manifest(), half=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lin"]
    assert torch.equal(checkpoints.load(torch.nn.Linear, folder, model=torch.nn.Linear(3, 2)).weight, first.weight)


def test_save_ships_the_logs_and_drops_stale_files(tmp_path):
    (tmp_path / "log.csv").write_text("step,loss\n1,0.5\n")
    folder = tmp_path / "lin"
    checkpoints.save(torch.nn.Linear(3, 2), folder, manifest(), half=False)
    (folder / "measured-8.json").write_text("{}")
    checkpoints.save(torch.nn.Linear(3, 2), folder, manifest(), half=False, extra_files=[tmp_path / "log.csv"])
    assert sorted(p.name for p in folder.iterdir()) == ["log.csv", "manifest.json", "model.safetensors"]


def test_cached_results_live_until_the_weights_change(tmp_path):
    folder = tmp_path / "lin"
    checkpoints.save(torch.nn.Linear(3, 2), folder, manifest(), half=False)
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    assert checkpoints.cached_result(folder, "r.json", ["a", 1], compute) == {"value": 1}
    assert checkpoints.cached_result(folder, "r.json", ["a", 1], compute) == {"value": 1}  # read back
    assert checkpoints.cached_result(folder, "r.json", ["a", 2], compute) == {"value": 2}  # another key
    torch.manual_seed(1)
    checkpoints.save(torch.nn.Linear(3, 2), folder, manifest(), half=False)  # retrained: new weights
    assert checkpoints.cached_result(folder, "r.json", ["a", 2], compute) == {"value": 3}
    assert len(calls) == 3


def test_results_of_read_only_weights_go_to_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "lin"
    checkpoints.save(torch.nn.Linear(3, 2), folder, manifest(), half=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(paths, "writable", lambda p: not str(p).startswith(str(folder)))
    calls = []
    compute = lambda: calls.append(1) or {"value": 7}  # noqa: E731
    assert checkpoints.cached_result(folder, "r.json", "k", compute) == {"value": 7}
    assert checkpoints.cached_result(folder, "r.json", "k", compute) == {"value": 7}
    assert len(calls) == 1 and not (folder / "r.json").exists()
    assert list((tmp_path / "cache" / "results").rglob("r.json"))
