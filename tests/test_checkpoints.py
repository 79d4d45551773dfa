"""Checkpoints: round trip, manifest, and clear errors for every kind of bad file."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from text2image import checkpoints


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        latent_channels=2, norm_num_groups=4, layers_per_block=1, sample_size=8,
    )


def test_round_trip_of_a_diffusers_model(tmp_path):
    model = tiny_vae()
    checkpoints.save(model, tmp_path / "vae", {"recipe": {"steps": 3}, "metrics": {"psnr": 12.5}})
    loaded = checkpoints.load(AutoencoderKL, tmp_path / "vae")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)  # fp16 storage
    manifest = checkpoints.read_manifest(tmp_path / "vae")
    assert manifest["metrics"] == {"psnr": 12.5}
    assert {"code_commit", "hardware", "torch", "recipe"} <= set(manifest)
    assert not list((tmp_path / "vae").glob("*.bin"))


def test_round_trip_of_a_plain_module(tmp_path):
    model = torch.nn.Linear(3, 2)
    checkpoints.save(model, tmp_path / "lin", {}, half=False)
    loaded = checkpoints.load(torch.nn.Linear, tmp_path / "lin", model=torch.nn.Linear(3, 2))
    assert torch.equal(loaded.weight, model.weight)


def test_pickle_files_are_refused(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({"weight": torch.zeros(2)}, folder / "pytorch_model.bin")
    with pytest.raises(checkpoints.CheckpointError, match="pickle files are never loaded.*retrain"):
        checkpoints.load(AutoencoderKL, folder)


def test_truncated_weights_name_the_file(tmp_path):
    checkpoints.save(tiny_vae(), tmp_path / "vae", {})
    weights = next((tmp_path / "vae").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.load(AutoencoderKL, tmp_path / "vae")
    assert weights.name in str(error.value) and "corrupt or truncated" in str(error.value)
    assert "python -m text2image train vae" in str(error.value)


def test_incompatible_config_is_a_clear_error(tmp_path):
    checkpoints.save(torch.nn.Linear(3, 2), tmp_path / "lin", {})
    with pytest.raises(checkpoints.CheckpointError, match="does not fit"):
        checkpoints.load(torch.nn.Linear, tmp_path / "lin", model=torch.nn.Linear(4, 2))


def test_missing_checkpoint_and_bad_manifest(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint here"):
        checkpoints.load(AutoencoderKL, tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(checkpoints.CheckpointError, match="not valid JSON"):
        checkpoints.read_manifest(tmp_path / "bad")


def test_cached_results_live_until_the_weights_change(tmp_path):
    folder = tmp_path / "lin"
    checkpoints.save(torch.nn.Linear(3, 2), folder, {}, half=False)
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    assert checkpoints.cached_result(folder, "r.json", ["a", 1], compute) == {"value": 1}
    assert checkpoints.cached_result(folder, "r.json", ["a", 1], compute) == {"value": 1}  # read back
    assert checkpoints.cached_result(folder, "r.json", ["a", 2], compute) == {"value": 2}  # another key
    torch.manual_seed(1)
    checkpoints.save(torch.nn.Linear(3, 2), folder, {}, half=False)  # retrained: new weights
    assert checkpoints.cached_result(folder, "r.json", ["a", 2], compute) == {"value": 3}
    assert len(calls) == 3
