"""Torch datasets: deterministic items, cache round trip, masks per token."""

import numpy as np
import pytest
import torch

from text2image.world import datasets as D
from text2image.world import splits


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    return tmp_path


def test_items_are_deterministic_and_cached(root):
    a = D.ShapesDataset("train", 40, 32, start=1010)  # crosses a chunk boundary
    item = a[20]
    a[0]  # example 1010 lives in the first chunk, 1030 in the second
    files = list((root / "data" / "world").glob("*.npz"))
    assert len(files) == 2
    b = D.ShapesDataset("train", 40, 32, start=1010)
    again = b[20]
    fresh = D.ShapesDataset("train", 40, 32, start=1010, cache=False)[20]
    for other in (again, fresh):
        for key, value in item.items():
            if torch.is_tensor(value):
                assert torch.equal(value, other[key]), key
            else:
                assert value == other[key]
    assert item["caption"] == splits.example("train", 1030).caption.text


def test_item_contents(root):
    ds = D.ShapesDataset("val", 16, 64)
    for i in range(len(ds)):
        item, e = ds[i], ds.example(i)
        assert item["image"].shape == (3, 64, 64) and 0 <= item["image"].min() and item["image"].max() <= 1
        assert item["n_objects"] == len(e.scene)
        assert item["masks"][:item["n_objects"]].flatten(1).any(1).all()
        assert not item["masks"][item["n_objects"]:].any()
        nouns = item["noun_tokens"].nonzero().flatten().tolist()
        assert nouns == [g.token_index for g in e.caption.nouns]
        for g in e.caption.nouns:
            union = item["masks"][list(g.objects)].any(0)
            assert torch.equal(item["token_masks"][g.token_index], union)
        assert not item["token_masks"][~item["noun_tokens"]].any()
        assert np.allclose(item["objects"][:item["n_objects"], 3].numpy(), [o.x for o in e.scene], atol=1e-6)


def test_loader_and_errors(root):
    ds = D.ShapesDataset("test", 10, 32)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and len(batch["caption"]) == 4
    assert ds.images().shape == (10, 32, 32, 3)
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(Exception, match="unknown split"):
        D.ShapesDataset("nope", 10)
    assert len(D.fixed("val", 32)) == D.FIXED_SIZES["val"]
